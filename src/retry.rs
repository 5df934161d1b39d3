//! Trying a request again: one policy and one function for every request tsmig sends — a
//! sink's writes and deletes, a source's queries and reads.
//!
//! ```text
//!  attempt ──ok──────────────▶ the result
//!     │
//!     ├─ definite or fatal ──▶ that error, at once: asking again cannot help
//!     │
//!     └─ transient ──▶ retries left? ──yes──▶ count it, log it, wait ──▶ attempt again
//!                            │                (full jitter under 2^n · initial_backoff,
//!                            │                 capped at max_backoff, ≥ Retry-After)
//!                            └─ no ──▶ Exhausted: a transient Failure naming the attempts
//!                                      and the last cause; the job's restart strategy
//!                                      (src/runner/restart.rs) takes over from there
//! ```
//!
//! The policy is three job-file keys, [`RetryPolicy::KEYS`], declared here once with their
//! defaults: every connector that retries splits them out of its section (a sink's beside
//! its batching keys, the MySQL, InfluxDB and TDengine sources' beside their own), so they
//! mean the same everywhere. What is transient is the connector's to say, through
//! [`Retryable`] on its error type; how to wait, count and log is said here only.
//!
//! A leaf: it imports only [`crate::error`], so sinks, sources and their connectors can
//! all build on it.

use crate::error::Failure;
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How transient failures are tried again: the job-file keys `max_retries`,
/// `initial_backoff` and `max_backoff`, in every section that takes them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Retries of a request that failed transiently (the network, a timeout, HTTP 429 or
    /// 5xx, a server's "try again") before the job gives up on it; the job then restarts
    /// from its last checkpoint as `restart:` says. 0: no retry.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// The longest wait before the first retry. Each wait is drawn at random below a
    /// ceiling (full jitter) that starts here and doubles with every retry, and it is never
    /// shorter than the server's Retry-After.
    #[serde(default = "default_initial_backoff", deserialize_with = "duration")]
    pub initial_backoff: Duration,
    /// The highest the ceiling of a wait grows to.
    #[serde(default = "default_max_backoff", deserialize_with = "duration")]
    pub max_backoff: Duration,
}

fn default_max_retries() -> u32 {
    10
}
fn default_initial_backoff() -> Duration {
    Duration::from_millis(200)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(10)
}

/// `"250ms"`, `"10s"` as a [`Duration`], with the job file's message for anything else
/// (the same as `crate::spec::duration`, which this leaf may not import).
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text)
        .map_err(|e| serde::de::Error::custom(format!("`{text}` is not a duration ({e})")))
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: default_max_retries(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

/// The longest wait a server's Retry-After can impose.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

impl RetryPolicy {
    /// The keys of a job-file section that belong here.
    pub const KEYS: &'static [&'static str] = &["max_retries", "initial_backoff", "max_backoff"];

    /// The same policy without retries: the first failure is the last.
    pub fn without_retries(&self) -> Self {
        Self {
            max_retries: 0,
            ..self.clone()
        }
    }

    /// The wait before retry number `retry` (0-based), with `jitter` drawn from `[0, 1]`:
    /// full jitter under an exponential ceiling, and never less than what the server asked
    /// for (itself capped at [`MAX_RETRY_AFTER`]).
    pub fn backoff(&self, retry: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
        let ceiling = self
            .initial_backoff
            .saturating_mul(1u32.checked_shl(retry.min(20)).unwrap_or(u32::MAX))
            .min(self.max_backoff);
        let jittered = ceiling.mul_f64(jitter.clamp(0.0, 1.0));
        match retry_after {
            Some(wish) => jittered.max(wish.min(MAX_RETRY_AFTER)),
            None => jittered,
        }
    }
}

/// What a failed attempt's error says about trying again. Its text is the cause, named
/// once, for the warning of each retry and the message of the last.
pub trait Retryable: fmt::Display {
    /// Whether another attempt may succeed (a transient failure). Anything else — a
    /// definite or fatal failure — is returned at once.
    fn is_transient(&self) -> bool;

    /// How long the server asked to wait before the next attempt (HTTP Retry-After).
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

impl Retryable for Failure {
    fn is_transient(&self) -> bool {
        Failure::is_transient(self)
    }
}

/// Why [`retry`] ended without a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryError<E> {
    /// An attempt failed for good (not transient): its error as it came.
    Final(E),
    /// Every attempt failed transiently and no retry was left.
    Exhausted(Exhausted<E>),
}

/// A request that failed transiently as often as the policy allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exhausted<E> {
    /// What the request was for ("write", "reading chunk 3 of table t").
    pub what: String,
    /// Attempts made: the first and every retry.
    pub attempts: u32,
    /// The last attempt's error.
    pub last: E,
}

impl<E: fmt::Display> fmt::Display for Exhausted<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.attempts {
            1 => write!(f, "{}: {}", self.what, self.last),
            n => write!(
                f,
                "{}: failed {n} times, giving up: {}",
                self.what, self.last
            ),
        }
    }
}

/// Transient: the restart strategy may get past what the retries did not.
impl<E: fmt::Display> From<Exhausted<E>> for Failure {
    fn from(e: Exhausted<E>) -> Self {
        Failure::transient(e.to_string())
    }
}

impl<E: fmt::Display> fmt::Display for RetryError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetryError::Final(e) => e.fmt(f),
            RetryError::Exhausted(e) => e.fmt(f),
        }
    }
}

impl From<RetryError<Failure>> for Failure {
    fn from(e: RetryError<Failure>) -> Self {
        match e {
            RetryError::Final(failure) => failure,
            RetryError::Exhausted(e) => e.into(),
        }
    }
}

/// Runs `attempt` until it succeeds, fails for good, or has failed transiently
/// `policy.max_retries + 1` times. Before each retry it adds one to `retries` and logs one
/// warning naming `what` and the cause, then waits as [`RetryPolicy::backoff`] says.
///
/// An attempt that fails half-way through is the caller's to make safe to repeat (a split
/// re-read from its start, a batch written again: writes are idempotent).
pub async fn retry<T, E, F, Fut>(
    policy: &RetryPolicy,
    what: &str,
    retries: &AtomicU64,
    mut attempt: F,
) -> Result<T, RetryError<E>>
where
    E: Retryable,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut retried = 0;
    loop {
        let error = match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        if !error.is_transient() {
            return Err(RetryError::Final(error));
        }
        if retried >= policy.max_retries {
            return Err(RetryError::Exhausted(Exhausted {
                what: what.to_string(),
                attempts: retried + 1,
                last: error,
            }));
        }
        let wait = policy.backoff(retried, error.retry_after(), fastrand::f64());
        retried += 1;
        retries.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            retry = retried,
            max_retries = policy.max_retries,
            wait_ms = wait.as_millis() as u64,
            "{what}: {error}; retrying"
        );
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Class;
    use std::sync::Mutex;
    use std::time::Instant;

    fn policy(max_retries: u32) -> RetryPolicy {
        RetryPolicy {
            max_retries,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
        }
    }

    #[test]
    fn the_ceiling_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            max_retries: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        };
        assert_eq!(p.backoff(0, None, 1.0), Duration::from_millis(100));
        assert_eq!(p.backoff(1, None, 1.0), Duration::from_millis(200));
        assert_eq!(p.backoff(3, None, 1.0), Duration::from_millis(800));
        assert_eq!(p.backoff(4, None, 1.0), Duration::from_secs(1));
        // Far past any shift: still the cap, no overflow.
        assert_eq!(p.backoff(u32::MAX, None, 1.0), Duration::from_secs(1));
    }

    #[test]
    fn full_jitter_spans_zero_to_the_ceiling() {
        let p = RetryPolicy {
            max_retries: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        };
        assert_eq!(p.backoff(40, None, 0.5), Duration::from_millis(500));
        assert_eq!(p.backoff(2, None, 0.0), Duration::ZERO);
        assert_eq!(p.backoff(2, None, 0.25), Duration::from_millis(100));
        // A draw out of [0, 1] is held to it.
        assert_eq!(p.backoff(2, None, 7.0), Duration::from_millis(400));
        assert_eq!(p.backoff(2, None, -1.0), Duration::ZERO);
        for _ in 0..1000 {
            let wait = p.backoff(3, None, fastrand::f64());
            assert!(wait <= Duration::from_millis(800), "{wait:?}");
        }
    }

    #[test]
    fn retry_after_is_a_floor_capped_at_five_minutes() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.backoff(0, Some(Duration::from_secs(3)), 0.0),
            Duration::from_secs(3)
        );
        // A longer jittered wait stands.
        assert_eq!(
            p.backoff(9, Some(Duration::from_millis(1)), 1.0),
            Duration::from_secs(10)
        );
        assert_eq!(
            p.backoff(0, Some(Duration::from_secs(9999)), 0.0),
            MAX_RETRY_AFTER
        );
    }

    #[test]
    fn one_set_of_keys_and_defaults() {
        let p = RetryPolicy::default();
        assert_eq!(
            (p.max_retries, p.initial_backoff, p.max_backoff),
            (10, Duration::from_millis(200), Duration::from_secs(10))
        );
        let parsed: RetryPolicy = serde_yaml::from_str("initial_backoff: 50ms").unwrap();
        assert_eq!(parsed.initial_backoff, Duration::from_millis(50));
        assert_eq!(parsed.max_retries, 10);
        let err = serde_yaml::from_str::<RetryPolicy>("max_backoff: soon")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`soon` is not a duration"), "{err}");
        let mut keys = RetryPolicy::KEYS.to_vec();
        keys.sort();
        assert_eq!(keys, ["initial_backoff", "max_backoff", "max_retries"]);
        assert_eq!(p.without_retries().max_retries, 0);
    }

    /// Fails with each of `script` in turn, then succeeds with the number of attempts.
    struct Script(Mutex<Vec<Failure>>, AtomicU64);
    impl Script {
        fn new(mut failures: Vec<Failure>) -> Self {
            failures.reverse();
            Script(Mutex::new(failures), AtomicU64::new(0))
        }
        async fn attempt(&self) -> Result<u64, Failure> {
            let n = self.1.fetch_add(1, Ordering::Relaxed) + 1;
            match self.0.lock().unwrap().pop() {
                Some(failure) => Err(failure),
                None => Ok(n),
            }
        }
    }

    #[tokio::test]
    async fn a_transient_failure_is_retried_then_succeeds_and_each_retry_is_counted() {
        let script = Script::new(vec![
            Failure::transient("503"),
            Failure::transient("connection reset"),
        ]);
        let retries = AtomicU64::new(0);
        let got = retry(&policy(5), "write", &retries, || script.attempt()).await;
        assert_eq!(got, Ok(3));
        assert_eq!(retries.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn definite_and_fatal_failures_are_returned_at_once() {
        for failure in [
            Failure {
                class: Class::Definite,
                message: "bad point".into(),
            },
            Failure::fatal("401 unauthorized"),
        ] {
            let script = Script::new(vec![failure.clone(), Failure::transient("unused")]);
            let retries = AtomicU64::new(0);
            let got = retry(&policy(5), "write", &retries, || script.attempt()).await;
            assert_eq!(got, Err(RetryError::Final(failure.clone())));
            assert_eq!(retries.load(Ordering::Relaxed), 0);
            assert_eq!(script.1.load(Ordering::Relaxed), 1, "one attempt only");
            assert_eq!(Failure::from(got.unwrap_err()), failure);
        }
    }

    #[tokio::test]
    async fn spent_retries_end_in_a_transient_failure_naming_the_attempts_and_the_last_cause() {
        let script = Script::new(
            (0..10)
                .map(|i| Failure::transient(format!("503 number {i}")))
                .collect(),
        );
        let retries = AtomicU64::new(0);
        let got = retry(&policy(3), "write", &retries, || script.attempt()).await;
        let failure = Failure::from(got.unwrap_err());
        assert!(failure.is_transient(), "the restart strategy takes over");
        assert_eq!(
            failure.message,
            "write: failed 4 times, giving up: 503 number 3"
        );
        assert_eq!(retries.load(Ordering::Relaxed), 3);

        // No retries: the first failure, named as it is.
        let script = Script::new(vec![Failure::transient("refused")]);
        let got = retry(&policy(0), "query", &retries, || script.attempt()).await;
        let failure = Failure::from(got.unwrap_err());
        assert_eq!(failure, Failure::transient("query: refused"));
    }

    /// A transient failure with the server's Retry-After.
    struct Busy(Duration);
    impl fmt::Display for Busy {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("429")
        }
    }
    impl Retryable for Busy {
        fn is_transient(&self) -> bool {
            true
        }
        fn retry_after(&self) -> Option<Duration> {
            Some(self.0)
        }
    }

    #[tokio::test]
    async fn retry_after_is_waited_for_even_under_a_short_backoff() {
        let started = Instant::now();
        let mut first = true;
        let retries = AtomicU64::new(0);
        let got = retry(&policy(3), "write", &retries, || {
            let busy = std::mem::take(&mut first);
            async move {
                if busy {
                    Err(Busy(Duration::from_millis(150)))
                } else {
                    Ok(())
                }
            }
        })
        .await;
        assert!(got.is_ok());
        assert!(
            started.elapsed() >= Duration::from_millis(150),
            "retried after {:?}",
            started.elapsed()
        );
    }
}
