//! What every sink shares: batch bounds, and [`deliver`], which takes one batch from
//! "encoded" to "written or dead-lettered".
//!
//! Error handling follows one rule. Transient failures (network, timeout, 429, 5xx) are
//! retried by [`crate::retry`] — exponential backoff and full jitter, at least as long as
//! the server's Retry-After — as the sink section's retry keys say; the batch's epoch
//! stays open meanwhile, so nothing is checkpointed past it. A batch that is too large is split in two. A batch the target rejects for good is
//! bisected until each rejected point stands alone; those points are dead-lettered with
//! the server's message and the rest are written (writes are idempotent per series and
//! time, so sending a good point twice is harmless). Fatal errors fail the job.

use super::{Batch, Sink, WriteError};
use crate::dead_letter::DeadLetters;
use crate::error::Failure;
use crate::job::{duration, Job, JobError};
use crate::metrics::Counters;
use crate::retry::{retry, RetryError, RetryPolicy};
use crate::spec::Section;
use serde::Deserialize;
use std::time::Duration;

/// Batching, concurrency and retries: the keys every sink section shares (`batch_size`,
/// `linger`, `max_retries`, ...). They sit directly under `sink:` beside the sink's own keys.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Points per write request.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Bytes per write request, at most (for sinks whose requests are text).
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: usize,
    /// How long a partly filled batch waits for more points before it is sent.
    #[serde(default = "default_linger", deserialize_with = "duration")]
    pub linger: Duration,
    /// Write requests in flight at once, per worker.
    #[serde(default = "default_in_flight")]
    pub in_flight: usize,
    /// Time limit of one request; a request that takes longer is retried.
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// How a write or delete that failed transiently is tried again: the retry keys
    /// (`max_retries`, `initial_backoff`, `max_backoff`), parsed beside these
    /// ([`BatchConfig::parse`]).
    #[serde(skip)]
    pub retry: RetryPolicy,
}

fn default_batch_size() -> usize {
    5_000
}
fn default_batch_bytes() -> usize {
    4 << 20
}
fn default_linger() -> Duration {
    Duration::from_millis(100)
}
fn default_in_flight() -> usize {
    2
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            batch_size: default_batch_size(),
            batch_bytes: default_batch_bytes(),
            linger: default_linger(),
            in_flight: default_in_flight(),
            timeout: default_timeout(),
            retry: RetryPolicy::default(),
        }
    }
}

impl BatchConfig {
    /// The keys of a sink section that belong here, besides the retry keys
    /// ([`RetryPolicy::KEYS`]).
    pub const KEYS: &'static [&'static str] = &[
        "batch_size",
        "batch_bytes",
        "linger",
        "in_flight",
        "timeout",
    ];

    /// The batching and retry keys of `section` (which holds no other), checked.
    pub fn parse(section: &Section, job: &Job) -> Result<Self, JobError> {
        let (batching, retry) = section.split(RetryPolicy::KEYS);
        let mut config: BatchConfig = batching.parse(job)?;
        config.retry = retry.parse(job)?;
        config.check(job)?;
        Ok(config)
    }

    /// Checks that need no server.
    pub fn check(&self, job: &Job) -> Result<(), JobError> {
        if self.batch_size == 0 {
            return Err(job.error_at("sink.batch_size", "must be at least 1"));
        }
        if self.batch_bytes < 1024 {
            return Err(job.error_at("sink.batch_bytes", "must be at least 1024"));
        }
        if self.in_flight == 0 {
            return Err(job.error_at("sink.in_flight", "must be at least 1"));
        }
        Ok(())
    }
}

/// reqwest's message (with its causes, each once) without the URL, which may carry
/// credentials: for every HTTP client in tsmig, sinks and sources alike.
#[cfg(any(feature = "influxdb", feature = "tdengine"))]
pub fn without_url(e: &reqwest::Error) -> String {
    let message = error_chain(e);
    match e.url() {
        Some(url) => message.replace(url.as_str(), "<url>"),
        None => message,
    }
}

/// An error and its causes as one line, each cause once. Many errors print their source
/// in their own message already (hyper's "error trying to connect: tcp connect error:
/// ..."), so a cause whose text the line holds is not appended again, and a part that
/// repeats the one before it (mysql_async's "Input/output error: Input/output error: ...")
/// is shown once.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in line.split(": ") {
        if parts.last() != Some(&part) {
            parts.push(part);
        }
    }
    parts.join(": ")
}

/// What became of one batch.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Points the target acknowledged.
    pub written: u64,
    /// Points dead-lettered because the target refused them.
    pub dead_lettered: u64,
    /// Of a traced delivery ([`deliver_traced`]), each refused point's push index in the
    /// batch ([`Batch::pushed_order`]) and the target's reason; empty otherwise.
    pub refused: Vec<(usize, String)>,
}

/// Sends `batch` until every point is written or dead-lettered. `Err` means the job must
/// fail (fatal error, or transient errors beyond the retry limit). A batch written whole
/// is handed back, emptied, for reuse.
pub async fn deliver<S: Sink>(
    sink: &S,
    batch: S::Batch,
    dead_letters: &DeadLetters,
    counters: &Counters,
) -> Result<(Delivery, Option<S::Batch>), Failure> {
    deliver_batch(sink, batch, dead_letters, counters, false).await
}

/// [`deliver`], and say which points the target refused ([`Delivery::refused`]): for
/// points whose client waits to hear of them.
pub async fn deliver_traced<S: Sink>(
    sink: &S,
    batch: S::Batch,
    dead_letters: &DeadLetters,
    counters: &Counters,
) -> Result<(Delivery, Option<S::Batch>), Failure> {
    deliver_batch(sink, batch, dead_letters, counters, true).await
}

async fn deliver_batch<S: Sink>(
    sink: &S,
    batch: S::Batch,
    dead_letters: &DeadLetters,
    counters: &Counters,
    traced: bool,
) -> Result<(Delivery, Option<S::Batch>), Failure> {
    let policy = &sink.batching().retry;
    let mut delivery = Delivery::default();
    // Record i of the whole batch is push pushed[i]; a half's record j is record base + j.
    let pushed = if traced {
        batch.pushed_order()
    } else {
        Vec::new()
    };
    let mut refuse = |record: usize, reason: &str| {
        if let Some(&push) = pushed.get(record) {
            delivery.refused.push((push, reason.to_string()));
        }
    };
    let mut written = 0;
    let mut dead_lettered = 0;
    let mut queue = vec![(batch, 0usize)];
    let mut whole = true;
    let mut reusable = None;
    while let Some((mut batch, base)) = queue.pop() {
        let refused = match send(policy, counters, "write", || sink.write(&batch)).await? {
            Outcome::Done => {
                written += batch.len() as u64;
                counters.written(batch.len() as u64);
                None
            }
            Outcome::Partial(rejected) => {
                let records = batch.records();
                let mut refused = vec![false; records.len()];
                for (index, reason) in &rejected {
                    match records.get(*index) {
                        Some(record) => {
                            refused[*index] = true;
                            dead_letters.record("sink", reason, record.clone());
                            refuse(base + index, reason);
                        }
                        None => {
                            return Err(Failure::fatal(format!(
                                "the target rejected point {index} of a batch of {}: {reason}",
                                records.len()
                            )))
                        }
                    }
                }
                let refused = refused.iter().filter(|r| **r).count() as u64;
                dead_lettered += refused;
                written += batch.len() as u64 - refused;
                counters.written(batch.len() as u64 - refused);
                None
            }
            Outcome::Refused(message) => Some(message),
        };
        let Some(message) = refused else {
            if whole {
                batch.clear();
                reusable = Some(batch);
            }
            continue;
        };
        whole = false;
        if batch.len() <= 1 {
            for (j, record) in batch.records().into_iter().enumerate() {
                dead_letters.record("sink", &message, record);
                refuse(base + j, &message);
                dead_lettered += 1;
            }
        } else {
            let size = batch.len();
            let (left, right) = batch.split().ok_or_else(|| {
                Failure::fatal(format!(
                    "the sink could not split a refused batch of {size} points"
                ))
            })?;
            let right_base = base + left.len();
            // Left last onto the stack, so it is sent first and points keep their order.
            queue.push((right, right_base));
            queue.push((left, base));
        }
    }
    delivery.written = written;
    delivery.dead_lettered = dead_lettered;
    Ok((delivery, reusable))
}

/// How a request ended, once transient failures are retried away.
enum Outcome {
    /// It succeeded.
    Done,
    /// The target refused it (too large, or rejected): the caller splits or dead-letters.
    Refused(String),
    /// The target took all but these records (index, reason).
    Partial(Vec<(usize, String)>),
}

/// Sends one request until it succeeds, retrying transient failures as `policy` says
/// ([`retry`], each retry counted in `retries=`). A refused or partly taken request is a
/// definite outcome, never retried: the caller splits the batch or dead-letters. `Err` is
/// fatal, or transient past the last retry.
async fn send<F, Fut>(
    policy: &RetryPolicy,
    counters: &Counters,
    what: &str,
    request: F,
) -> Result<Outcome, Failure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), WriteError>>,
{
    match retry(policy, what, counters.retries.as_atomic(), request).await {
        Ok(()) => Ok(Outcome::Done),
        Err(RetryError::Final(WriteError::TooLarge { message }))
        | Err(RetryError::Final(WriteError::Rejected { message })) => Ok(Outcome::Refused(message)),
        Err(RetryError::Final(WriteError::Partial { rejected })) => Ok(Outcome::Partial(rejected)),
        Err(RetryError::Final(WriteError::Fatal { message })) => Err(Failure::fatal(message)),
        Err(RetryError::Final(transient @ WriteError::Transient { .. })) => {
            Err(Failure::transient(transient.to_string()))
        }
        // The job may restart from its checkpoint and try again.
        Err(RetryError::Exhausted(exhausted)) => Err(exhausted.into()),
    }
}

/// Deletes `points` (CDC deletes: each point of the target at its series and time), with
/// the same retries as writes. Deletes the target refuses are dead-lettered one by one
/// with its reason; the job fails only on a fatal error.
pub async fn deliver_deletes<S: Sink>(
    sink: &S,
    points: &[crate::model::Point],
    dead_letters: &DeadLetters,
    counters: &Counters,
) -> Result<(), Failure> {
    if points.is_empty() {
        return Ok(());
    }
    let policy = &sink.batching().retry;
    let outcome = send(policy, counters, "delete", || sink.delete(points)).await?;
    if !matches!(outcome, Outcome::Done) {
        // Find the refused ones: one request each.
        for point in points {
            let one = std::slice::from_ref(point);
            let outcome = send(policy, counters, "delete", || sink.delete(one)).await?;
            if let Outcome::Refused(message) = outcome {
                let mut record = point.to_json();
                record["operation"] = "delete".into();
                dead_letters.record("sink", &message, record);
            }
        }
        tracing::debug!("a delete batch was refused; retried point by point");
    }
    counters.points_deleted.add(points.len() as u64);
    Ok(())
}

/// Deletes `windows` (verify --repair: each series' points in a time range), with the same
/// retries as writes. A delete the target refuses fails the repair: a window cannot be
/// dead-lettered, and writing over what it still holds would be no repair.
pub async fn delete_windows<S: Sink>(
    sink: &S,
    windows: &[super::SeriesWindow],
    counters: &Counters,
) -> Result<(), Failure> {
    if windows.is_empty() {
        return Ok(());
    }
    let policy = &sink.batching().retry;
    match send(policy, counters, "delete", || sink.delete_range(windows)).await? {
        Outcome::Done => Ok(()),
        Outcome::Refused(message) => Err(Failure::fatal(message)),
        Outcome::Partial(_) => Err(Failure::fatal("the target deleted part of the windows")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Name, Point, Value};
    use std::sync::Mutex;

    /// A batch of point times.
    struct Times(Vec<i64>);
    impl Batch for Times {
        fn push(&mut self, p: &Point) -> Result<(), String> {
            self.0.push(p.time);
            Ok(())
        }
        fn len(&self) -> usize {
            self.0.len()
        }
        fn bytes(&self) -> usize {
            self.0.len() * 8
        }
        fn split(mut self) -> Option<(Self, Self)> {
            (self.0.len() > 1).then(|| {
                let right = self.0.split_off(self.0.len() / 2);
                (self, Times(right))
            })
        }
        fn records(&self) -> Vec<serde_json::Value> {
            self.0.iter().map(|t| (*t).into()).collect()
        }
        fn clear(&mut self) {
            self.0.clear();
        }
    }

    /// Refuses any batch holding a bad time, fails transiently `flaky` times first, and
    /// keeps what it accepted.
    struct Picky {
        bad: Vec<i64>,
        flaky: Mutex<u32>,
        stored: Mutex<Vec<i64>>,
        config: BatchConfig,
    }

    #[async_trait::async_trait]
    impl Sink for Picky {
        type Batch = Times;
        fn new_batch(&self) -> Times {
            Times(Vec::new())
        }
        fn batching(&self) -> &BatchConfig {
            &self.config
        }
        async fn write(&self, batch: &Times) -> Result<(), WriteError> {
            {
                let mut flaky = self.flaky.lock().unwrap();
                if *flaky > 0 {
                    *flaky -= 1;
                    return Err(WriteError::Transient {
                        message: "503".into(),
                        retry_after: None,
                    });
                }
            }
            if batch.0.iter().any(|t| self.bad.contains(t)) {
                return Err(WriteError::Rejected {
                    message: "bad point".into(),
                });
            }
            self.stored.lock().unwrap().extend(&batch.0);
            Ok(())
        }
        fn describe(&self) -> String {
            String::new()
        }
    }

    fn picky(bad: Vec<i64>, flaky: u32, max_retries: u32) -> Picky {
        let config = BatchConfig {
            retry: RetryPolicy {
                max_retries,
                initial_backoff: Duration::from_millis(1),
                max_backoff: Duration::from_millis(2),
            },
            ..BatchConfig::default()
        };
        Picky {
            bad,
            flaky: Mutex::new(flaky),
            stored: Mutex::new(Vec::new()),
            config,
        }
    }

    fn batch(sink: &Picky, n: i64) -> Times {
        let mut b = sink.new_batch();
        for t in 0..n {
            let p = Point {
                measurement: Name::from("m"),
                tags: vec![],
                fields: vec![(Name::from("f"), Value::Int(t))],
                time: t,
                device_hash: 0,
            };
            b.push(&p).unwrap();
        }
        b
    }

    fn dead_letter_file(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("tsmig-deliver-{name}-{}.jsonl", std::process::id()))
    }

    #[tokio::test]
    async fn a_traced_delivery_names_each_refused_point_by_its_push() {
        let sink = picky(vec![0, 41, 42, 99], 0, 5);
        let path = dead_letter_file("traced");
        let dl = DeadLetters::new("t", &path);
        let (d, _) = deliver_traced(&sink, batch(&sink, 100), &dl, &Counters::default())
            .await
            .unwrap();
        let refused: Vec<usize> = d.refused.iter().map(|(i, _)| *i).collect();
        assert_eq!(refused, vec![0, 41, 42, 99], "found through the halves");
        assert!(d.refused.iter().all(|(_, r)| r == "bad point"));
        assert_eq!((d.written, d.dead_lettered), (96, 4));
        std::fs::remove_file(path).ok();
    }

    #[tokio::test]
    async fn rejected_points_are_isolated_and_dead_lettered_the_rest_written() {
        let sink = picky(vec![3, 77, 78], 2, 5);
        let path = dead_letter_file("isolate");
        let dl = DeadLetters::new("t", &path);
        let counters = Counters::default();
        let b = batch(&sink, 100);
        let (d, reusable) = deliver(&sink, b, &dl, &counters).await.unwrap();
        assert!(
            reusable.is_none(),
            "a batch that was cut is not handed back"
        );
        let whole = batch(&sink, 3);
        let (d3, back) = deliver(&sink, whole, &dl, &counters).await.unwrap();
        assert_eq!(
            d3,
            Delivery {
                written: 3,
                dead_lettered: 0,
                refused: vec![]
            }
        );
        assert_eq!(
            back.map(|b| b.len()),
            Some(0),
            "a batch written whole comes back, empty"
        );
        assert_eq!(
            d,
            Delivery {
                written: 97,
                dead_lettered: 3,
                refused: vec![]
            }
        );
        let mut stored = sink.stored.lock().unwrap().clone();
        stored.sort();
        stored.dedup();
        let expected: Vec<i64> = (0..100).filter(|t| ![3, 77, 78].contains(t)).collect();
        assert_eq!(stored, expected);
        dl.sync().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let rejected: Vec<i64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["record"]
                    .as_i64()
                    .unwrap()
            })
            .collect();
        assert_eq!(rejected, vec![3, 77, 78]);
        assert!(text.contains("bad point"));
        assert_eq!(counters.retries.get(), 2);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_cause_chain_shows_each_cause_once() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let refused = E("Connection refused (os error 111)", None);
        let connect = E(
            "tcp connect error: Connection refused (os error 111)",
            Some(Box::new(refused)),
        );
        let hyper = E(
            "error trying to connect: tcp connect error: Connection refused (os error 111)",
            Some(Box::new(connect)),
        );
        let request = E("error sending request", Some(Box::new(hyper)));
        assert_eq!(
            error_chain(&request),
            "error sending request: error trying to connect: tcp connect error: Connection refused (os error 111)"
        );
        let io = E(
            "Input/output error: Input/output error: Connection refused (os error 111)",
            None,
        );
        assert_eq!(
            error_chain(&io),
            "Input/output error: Connection refused (os error 111)"
        );
    }

    #[tokio::test]
    async fn transient_failures_beyond_the_limit_fail_the_job() {
        let sink = picky(vec![], 10, 3);
        let dl = DeadLetters::new("t", &dead_letter_file("limit"));
        let counters = Counters::default();
        let b = batch(&sink, 10);
        let Err(err) = deliver(&sink, b, &dl, &counters).await else {
            panic!("the job must fail")
        };
        assert_eq!(err.message, "write: failed 4 times, giving up: 503");
        assert!(err.is_transient(), "a restart may get past it");
        assert!(sink.stored.lock().unwrap().is_empty());
        assert_eq!(dl.count(), 0);
    }
}
