//! Sessions to IoTDB on threads of their own.
//!
//! iotdb-client-rs is a blocking Thrift client, so it never runs on a timely worker or a
//! tokio thread: each session lives on its own thread and takes work from a shared queue;
//! [`SessionPool::run`] hands it a closure and awaits the answer. A session whose
//! connection failed is dropped and opened again for the next call.
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
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Work = Box<dyn FnOnce(&mut Connection) + Send>;

/// A pool of IoTDB sessions, each on a thread.
pub struct SessionPool {
    work: Mutex<Option<mpsc::Sender<Work>>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

/// One session, opened on first use and again after a failure.
pub struct Connection {
    config: Config,
    session: Option<RpcSession>,
}

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
            self.session = Some(session);
        }
        let session = self.session.as_mut().expect("opened above");
        match call(session) {
            Ok(v) => Ok(v),
            Err(e) => {
                let error = classify(&e.to_string());
                if status_codes(&e.to_string()).is_empty() {
                    self.session = None;
                }
                Err(error)
            }
        }
    }
}

impl SessionPool {
    /// `sessions` threads, each with a session to the server `config` names.
    pub fn new(config: Config, sessions: usize) -> Self {
        let (tx, rx) = mpsc::channel::<Work>();
        let rx = Arc::new(Mutex::new(rx));
        let threads = (0..sessions)
            .map(|i| {
                let rx = rx.clone();
                let config = config.clone();
                std::thread::Builder::new()
                    .name(format!("tsmig-iotdb-{i}"))
                    .spawn(move || {
                        let mut connection = Connection {
                            config,
                            session: None,
                        };
                        loop {
                            let work = match rx.lock() {
                                Ok(rx) => rx.recv(),
                                Err(_) => return,
                            };
                            match work {
                                Ok(work) => work(&mut connection),
                                Err(_) => break,
                            }
                        }
                        if let Some(mut s) = connection.session.take() {
                            let _ = s.close();
                        }
                    })
                    .expect("spawning an IoTDB session thread")
            })
            .collect();
        Self {
            work: Mutex::new(Some(tx)),
            threads: Mutex::new(threads),
        }
    }

    /// Runs `call` on one of the sessions and waits (asynchronously) for its answer.
    pub async fn run<T: Send + 'static>(
        &self,
        call: impl FnOnce(&mut Connection) -> Result<T, WriteError> + Send + 'static,
    ) -> Result<T, WriteError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let work: Work = Box::new(move |connection| {
            let _ = tx.send(call(connection));
        });
        {
            let sender = self.work.lock().unwrap_or_else(|p| p.into_inner());
            let Some(sender) = sender.as_ref() else {
                return Err(WriteError::Fatal {
                    message: "the IoTDB sessions are closed".into(),
                });
            };
            if sender.send(work).is_err() {
                return Err(WriteError::Fatal {
                    message: "the IoTDB sessions are gone".into(),
                });
            }
        }
        rx.await
            .unwrap_or_else(|_| Err(transient("an IoTDB session thread stopped".into())))
    }
}

impl Drop for SessionPool {
    fn drop(&mut self) {
        // Closing the queue ends the threads once they finish what they hold.
        self.work.lock().unwrap_or_else(|p| p.into_inner()).take();
        for t in self
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = t.join();
        }
    }
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
}
