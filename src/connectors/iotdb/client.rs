//! Sessions to IoTDB, run on the async runtime's blocking pool.
//!
//! iotdb-client-rs is a blocking Thrift client, so it never runs on a timely worker or an
//! async thread: [`SessionPool::run`] hands a closure and a session to
//! `tokio::task::spawn_blocking` and awaits the answer. A semaphore of `sessions` permits
//! bounds the calls at once, and so the sessions: a call holds a permit until its session is
//! idle again, and a session is made only when none is idle. A call owns its session while
//! it runs, so no session serves two calls at once. A session whose connection failed is
//! dropped and opened again by its next call.
//!
//! The client reports IoTDB's status as text (`code: N, message`; `Code: N, ...;` for each
//! failed part of a batch); [`classify`] turns it into a [`WriteError`]: a broken
//! connection or IoTDB's "try again" codes are transient, a type conflict with an existing
//! series, a missing database or a refused login fail the job (no row could be written),
//! an illegal path or rows older than the TTL refuse the points that carry them.
//!
//! iotdb-client-rs 0.3.12 knows IoTDB's pre-1.0 status numbers: it takes 707 for a
//! redirection and 506 for a multi-status, so IoTDB 1.x's 400 REDIRECTION_RECOMMEND — the
//! answer of a cluster's DataNode to a multi-device write that succeeded while other nodes
//! lead some of its devices — reaches tsmig as the error `code: 400`, its sub-statuses
//! dropped. IoTDB sends that code only for a write that succeeded (TreeModelPlanner.
//! setRedirectInfo sets it on a SUCCESS_STATUS alone, every sub-status a 200), so
//! [`is_redirection`] tells the sink to count it as written.

use crate::sink::WriteError;
use iotdb::client::remote::{Config, RpcSession};
use iotdb::client::Session;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Semaphore;

/// At most `sessions` IoTDB sessions, each used by one call at a time.
pub struct SessionPool {
    config: Config,
    /// One permit per session. A call holds one from before it takes a session until the
    /// session is idle again, so no more than `sessions` calls run at once and no more than
    /// `sessions` sessions exist, even when the task awaiting a call is dropped.
    permits: Arc<Semaphore>,
    /// Sessions no call holds (open, or to be opened by their next call), and how many
    /// were made.
    idle: Arc<Mutex<Idle>>,
}

struct Idle {
    sessions: Vec<Connection>,
    made: usize,
}

/// One session, opened on first use and again after a failure.
pub struct Connection {
    config: Config,
    session: Option<OpenSession>,
    /// Which of the pool's sessions this is: `0..sessions`.
    number: usize,
}

/// An open session, which may move to another thread between calls.
///
/// `RpcSession` is not `Send` only because it keeps its Thrift protocols as `Box<dyn
/// TInputProtocol>` and `Box<dyn TOutputProtocol>`, without a `Send` bound. What
/// `RpcSession::new`, its only constructor, puts there is the binary or the compact
/// protocol over framed transports over the two halves of one `TcpStream` (thrift's
/// `TTcpChannel`; the writing half behind the patch's `WholeFrames` buffer, see
/// vendor/iotdb-client-rs/TSMIG-PATCH.md), beside plain data (its config, ids): all
/// `Send`, as `tests::a_session_may_move_between_threads` checks against thrift 0.17, the
/// version of iotdb-client-rs 0.3.12 (pinned exactly in Cargo.toml). Nothing in it is
/// shared with another value or tied to its thread, and a session is used by one call at a
/// time.
struct OpenSession(RpcSession);

// SAFETY: see `OpenSession`: every part of an `RpcSession` is `Send`; only the erased type
// of its protocols hides it.
unsafe impl Send for OpenSession {}

/// What a call to IoTDB returns.
pub type Outcome<T> = Result<T, Box<dyn std::error::Error>>;

impl Connection {
    /// Runs `call` on an open session. A failure that is not IoTDB's answer (the
    /// connection broke) closes the session so the next call opens a fresh one.
    pub fn call<T>(
        &mut self,
        call: impl FnOnce(&mut RpcSession) -> Outcome<T>,
    ) -> Result<T, WriteError> {
        if self.session.is_none() {
            let mut session = RpcSession::new(self.config.clone())
                .map_err(|e| transient(format!("cannot connect to IoTDB: {e}")))?;
            session.open().map_err(|e| classify(&e.to_string()))?;
            tracing::debug!(session = self.number, "IoTDB session opened");
            self.session = Some(OpenSession(session));
        }
        let session = self.session.as_mut().expect("opened above");
        match call(&mut session.0) {
            Ok(v) => Ok(v),
            Err(e) => {
                let error = classify(&e.to_string());
                if status_codes(&e.to_string()).is_empty() {
                    tracing::debug!(session = self.number, "IoTDB session dropped: {e}");
                    self.session = None;
                }
                Err(error)
            }
        }
    }
}

impl SessionPool {
    /// Up to `sessions` sessions with the server `config` names, opened as calls need them.
    pub fn new(config: Config, sessions: usize) -> Self {
        Self {
            config,
            permits: Arc::new(Semaphore::new(sessions)),
            idle: Arc::new(Mutex::new(Idle {
                sessions: Vec::with_capacity(sessions),
                made: 0,
            })),
        }
    }

    /// Runs `call` on one of the sessions, on the runtime's blocking pool, and waits
    /// (asynchronously) for its answer; waits first while `sessions` calls run.
    pub async fn run<T: Send + 'static>(
        &self,
        call: impl FnOnce(&mut Connection) -> Result<T, WriteError> + Send + 'static,
    ) -> Result<T, WriteError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| WriteError::Fatal {
                message: "the IoTDB sessions are closed".into(),
            })?;
        let idle = self.idle.clone();
        let mut connection = {
            let mut idle = locked(&idle);
            match idle.sessions.pop() {
                Some(connection) => connection,
                None => {
                    idle.made += 1;
                    Connection {
                        config: self.config.clone(),
                        session: None,
                        number: idle.made - 1,
                    }
                }
            }
        };
        let task = tokio::task::spawn_blocking(move || {
            let result = call(&mut connection);
            // Idle again before the permit goes: the next call takes this session.
            locked(&idle).sessions.push(connection);
            drop(permit);
            result
        });
        task.await
            .unwrap_or_else(|e| Err(transient(format!("an IoTDB call failed: {e}"))))
    }
}

impl Drop for SessionPool {
    fn drop(&mut self) {
        // Closing a session is a request to the server: never on an async runtime's
        // thread. Calls still running put theirs back and close them when they end.
        let idle: Vec<Connection> = std::mem::take(&mut locked(&self.idle).sessions);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(move || drop(idle))),
            Err(_) => drop(idle),
        }
    }
}

fn locked(idle: &Mutex<Idle>) -> MutexGuard<'_, Idle> {
    idle.lock().unwrap_or_else(|p| p.into_inner())
}

fn transient(message: String) -> WriteError {
    WriteError::Transient {
        message,
        retry_after: None,
    }
}

/// The status codes in a client error's text (`code: N` / `Code: N`), in order.
pub fn status_codes(text: &str) -> Vec<i32> {
    let lower = text.to_ascii_lowercase();
    lower
        .match_indices("code: ")
        .filter_map(|(at, m)| {
            let digits: String = lower[at + m.len()..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            digits.parse().ok()
        })
        .collect()
}

/// Codes that mean "this already exists": harmless when creating.
pub const ALREADY_EXISTS: [i32; 3] = [501, 503, 506];

/// Whether a client error only says that what was to be created exists already: the
/// status itself, or a multi-status (302) whose every part (`503: Path [...] already
/// exist; ...`) does.
pub fn only_already_exists(text: &str) -> bool {
    let codes = status_codes(text);
    match codes.as_slice() {
        [] => false,
        [302] => {
            let parts = text
                .split_once("302, ")
                .map(|(_, rest)| rest)
                .unwrap_or_default();
            let parts: Vec<&str> = parts
                .split(';')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .collect();
            !parts.is_empty()
                && parts.iter().all(|p| {
                    let code: String = p.chars().take_while(|c| c.is_ascii_digit()).collect();
                    code.parse().is_ok_and(|c: i32| ALREADY_EXISTS.contains(&c))
                })
        }
        codes => codes.iter().all(|c| ALREADY_EXISTS.contains(c)),
    }
}

/// IoTDB 1.x's REDIRECTION_RECOMMEND: a write that succeeded, answered by a DataNode that
/// does not lead every device's region.
pub const REDIRECTION_RECOMMEND: i32 = 400;

/// IoTDB's OUT_OF_TTL: rows older than the database's TTL, which IoTDB never writes (the
/// other rows of the call are written).
pub const OUT_OF_TTL: i32 = 607;

/// Whether a client error is IoTDB's 400 REDIRECTION_RECOMMEND alone: the write succeeded
/// (see the module doc). Any other code beside it is a failure.
pub fn is_redirection(text: &str) -> bool {
    status_codes(text) == [REDIRECTION_RECOMMEND]
}

/// What a client error means for the write.
pub fn classify(text: &str) -> WriteError {
    let message = format!("IoTDB: {text}");
    let codes = status_codes(text);
    let Some(&code) = codes.first() else {
        // No status: the connection or the transport failed.
        return transient(message);
    };
    match code {
        // Older than the TTL: IoTDB will never take these rows, however often they are
        // sent. The batch is bisected until each refused point stands alone and is
        // dead-lettered with IoTDB's message; the others are written (again: harmless).
        OUT_OF_TTL => WriteError::Rejected { message },
        // Write process rejected, system not ready or read-only for now, timeouts.
        600..=608 | 712 | 713 | 714 => transient(message),
        // Partial insert because of a type conflict: the series exists with another type.
        507 if text.contains("not consistent") || text.contains("data type") => {
            WriteError::Fatal { message }
        }
        // An illegal path: only the points that carry it are wrong.
        509 => WriteError::Rejected { message },
        // Database not set, path not exist, wrong login, not logged in, anything unknown.
        _ => WriteError::Fatal { message },
    }
}

/// Session settings for `host:port`, with a request timeout.
pub fn config(host: &str, port: u16, user: &str, password: &str, timeout: Duration) -> Config {
    Config {
        host: host.to_string(),
        port: port as i32,
        username: user.to_string(),
        password: password.to_string(),
        timeout_ms: Some(timeout.as_millis() as i64),
        timezone: Some("UTC".into()),
        ..Config::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified() {
        assert!(matches!(
            classify("failed to connect to 127.0.0.1:1, Io"),
            WriteError::Transient { .. }
        ));
        assert!(matches!(
            classify("code: 606, write process rejected"),
            WriteError::Transient { .. }
        ));
        assert!(matches!(
            classify("Code: 507, Fail to insert measurements [t] caused by [data type of root.a.b.t is not consistent, registered type INT64, inserting type DOUBLE];"),
            WriteError::Fatal { message } if message.contains("root.a.b.t")
        ));
        assert!(matches!(
            classify("code: 509, root.a.b-c is not a legal path"),
            WriteError::Rejected { .. }
        ));
        assert!(matches!(
            classify("code: 801, wrong password"),
            WriteError::Fatal { .. }
        ));
        assert!(matches!(
            classify("code: 607, Insertion time [2026-01-01T00:00:00.000Z] is less than ttl time bound [2026-11-01T00:00:00.000Z]"),
            WriteError::Rejected { message } if message.contains("ttl time bound")
        ));
        assert!(is_redirection("code: 400"));
        assert!(!is_redirection("code: 400; Code: 507, type mismatch;"));
        assert!(!is_redirection("code: 607, Insertion time"));
        assert_eq!(status_codes("Code: 503, x;Code: 503, y;"), vec![503, 503]);
        assert!(only_already_exists("Code: 503, x;Code: 506, y;"));
        assert!(only_already_exists(
            "code: 302, 503: Path [a] already exist; 503: Path [b] already exist"
        ));
        assert!(!only_already_exists(
            "code: 302, 503: Path [a] already exist; 509: bad path"
        ));
        assert!(!only_already_exists("broken pipe"));
    }

    #[test]
    fn a_session_may_move_between_threads() {
        // What `RpcSession::new` puts behind its `Box<dyn TInputProtocol>` and
        // `Box<dyn TOutputProtocol>` (see `OpenSession`), all `Send`.
        use iotdb::client::remote::WholeFrames;
        use thrift::protocol::{
            TBinaryInputProtocol, TBinaryOutputProtocol, TCompactInputProtocol,
            TCompactOutputProtocol,
        };
        use thrift::transport::{
            ReadHalf, TFramedReadTransport, TFramedWriteTransport, TTcpChannel, WriteHalf,
        };
        fn send<T: Send>() {}
        type In = TFramedReadTransport<ReadHalf<TTcpChannel>>;
        type Out = TFramedWriteTransport<WholeFrames<WriteHalf<TTcpChannel>>>;
        send::<TBinaryInputProtocol<In>>();
        send::<TBinaryOutputProtocol<Out>>();
        send::<TCompactInputProtocol<In>>();
        send::<TCompactOutputProtocol<Out>>();
        send::<Config>();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn never_more_calls_at_once_than_sessions_and_each_session_serves_one_call_at_a_time() {
        use std::collections::HashSet;
        use std::sync::atomic::{AtomicUsize, Ordering};
        const SESSIONS: usize = 3;
        // No server: the calls never open their sessions, they only hold them a while.
        let pool = Arc::new(SessionPool::new(
            config("127.0.0.1", 1, "root", "root", Duration::from_secs(1)),
            SESSIONS,
        ));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let in_use = Arc::new(Mutex::new(HashSet::new()));
        let mut calls = Vec::new();
        for i in 0..24 {
            let (pool, running, most, in_use) =
                (pool.clone(), running.clone(), most.clone(), in_use.clone());
            calls.push(tokio::spawn(async move {
                let call = pool.run(move |connection| {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    let number = connection.number;
                    assert!(
                        in_use.lock().unwrap().insert(number),
                        "session {number} serves two calls at once"
                    );
                    std::thread::sleep(Duration::from_millis(20));
                    in_use.lock().unwrap().remove(&number);
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok(number)
                });
                // Every third caller stops waiting: its call still runs to its end,
                // holding its session, and the bound still holds.
                if i % 3 == 0 {
                    let _ = tokio::time::timeout(Duration::from_millis(5), call).await;
                    None
                } else {
                    Some(call.await.unwrap())
                }
            }));
        }
        let mut numbers = HashSet::new();
        for call in calls {
            numbers.extend(call.await.unwrap());
        }
        // The calls whose callers stopped waiting end too.
        while running.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(most.load(Ordering::SeqCst), SESSIONS);
        assert!(numbers.iter().all(|n| *n < SESSIONS), "{numbers:?}");
        assert_eq!(locked(&pool.idle).made, SESSIONS);
    }

    #[tokio::test]
    async fn a_session_that_cannot_connect_is_retried_by_the_next_call() {
        // Port 1 on loopback: nothing listens.
        let pool = SessionPool::new(
            config("127.0.0.1", 1, "root", "root", Duration::from_secs(1)),
            1,
        );
        for _ in 0..2 {
            let error = pool
                .run(|connection| connection.call(|s| s.set_storage_group("root.x")))
                .await
                .unwrap_err();
            assert!(
                matches!(&error, WriteError::Transient { message, .. } if message.contains("cannot connect to IoTDB")),
                "{error:?}"
            );
        }
        let idle = locked(&pool.idle);
        assert_eq!((idle.made, idle.sessions.len()), (1, 1));
        assert!(idle.sessions[0].session.is_none());
    }
}
