//! The restart strategy: what a job does when a transient failure (a server down, the
//! network cut) outlives a request's retries.
//!
//! ```text
//!  attempt ──ok──▶ done
//!     │
//!     └─ transient failure ─▶ [ Restarts::next ] ─ give up ─▶ fail with the last cause
//!                                   │
//!                                   └─ after a delay ─▶ attempt again (from the checkpoint)
//! ```
//!
//! An attempt opens the source, builds and prepares the sink, loads the recorded state and
//! runs the dataflow; so a restart resumes from the last checkpoint, as a new process
//! would, with the connections made anew. Definite and fatal failures, usage errors and a
//! stop the operator asked for never restart. Restarts are logged with their cause,
//! counted (`restarts=` in the summary, `tsmig_restarts_total`), and every process of a
//! cluster restarts together: a transient failure in one is announced to all (see the
//! engine's failure watch), and each process's restart loop runs its own next attempt.

use super::{JobRun, RunError};
use crate::job::{Attempts, RestartConfig, RestartStrategy};
use std::time::{Duration, Instant};

/// Runs `attempt` until it succeeds, fails for good, or the strategy gives up.
pub(super) fn run(
    job_run: &JobRun,
    config: &RestartConfig,
    default_attempts: Attempts,
    mut attempt: impl FnMut() -> Result<(), RunError>,
) -> Result<(), RunError> {
    let mut restarts = Restarts::new(config, default_attempts);
    loop {
        let started = Instant::now();
        let cause = match attempt() {
            Err(RunError::Transient(cause)) => cause,
            other => return other,
        };
        if job_run.control.stop_requested() {
            return Err(RunError::Failed(cause));
        }
        let Some(delay) = restarts.next(started.elapsed()) else {
            return Err(RunError::Failed(match restarts.given_up() {
                0 => cause,
                n => format!("{cause} (gave up after {n} restarts; see `restart:`)"),
            }));
        };
        job_run.counters.restarts.add(1);
        job_run.status.restarting(&cause);
        tracing::warn!(
            restart = restarts.count,
            delay_ms = delay.as_millis() as u64,
            "the job failed ({cause}); restarting from the last checkpoint in {:.1} s",
            delay.as_secs_f64()
        );
        // A stop asked for while waiting ends the wait and the job.
        let until = Instant::now() + delay;
        while Instant::now() < until {
            if job_run.control.stop_requested() {
                return Err(RunError::Failed(cause));
            }
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
        }
        job_run.control.reset();
        job_run.status.phase(crate::status::Phase::Starting);
    }
}

/// When to restart: the strategy's delays and count (pure, unit-tested).
#[derive(Debug)]
pub(super) struct Restarts {
    strategy: RestartStrategy,
    initial: Duration,
    max: Duration,
    attempts: Attempts,
    reset_after: Duration,
    /// Restarts since the count was last reset.
    count: u32,
}

impl Restarts {
    pub fn new(config: &RestartConfig, default_attempts: Attempts) -> Self {
        Self {
            strategy: config.strategy,
            initial: config.initial,
            max: config.max,
            attempts: config.attempts.unwrap_or(default_attempts),
            reset_after: config.reset_after,
            count: 0,
        }
    }

    /// An attempt that ran for `ran` failed (transiently): the delay before the next one,
    /// or `None` to give up.
    pub fn next(&mut self, ran: Duration) -> Option<Duration> {
        if self.strategy == RestartStrategy::None {
            return None;
        }
        if ran >= self.reset_after {
            self.count = 0;
        }
        if let Attempts::AtMost(n) = self.attempts {
            if self.count >= n {
                return None;
            }
        }
        let delay = match self.strategy {
            RestartStrategy::Fixed => self.initial,
            _ => self
                .initial
                .saturating_mul(1u32.checked_shl(self.count.min(30)).unwrap_or(u32::MAX))
                .min(self.max),
        };
        self.count += 1;
        Some(delay)
    }

    /// How many restarts were made before giving up (0: the strategy makes none).
    pub fn given_up(&self) -> u32 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(strategy: RestartStrategy, attempts: Option<Attempts>) -> RestartConfig {
        RestartConfig {
            strategy,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            attempts,
            reset_after: Duration::from_secs(600),
        }
    }

    fn delays(r: &mut Restarts, ran: Duration, n: usize) -> Vec<Option<u64>> {
        (0..n).map(|_| r.next(ran).map(|d| d.as_secs())).collect()
    }

    #[test]
    fn exponential_doubles_to_the_max_and_gives_up_after_the_attempts() {
        let mut r = Restarts::new(
            &config(RestartStrategy::Exponential, None),
            Attempts::AtMost(8),
        );
        let short = Duration::from_secs(1);
        assert_eq!(
            delays(&mut r, short, 9),
            [1, 2, 4, 8, 16, 30, 30, 30]
                .map(Some)
                .into_iter()
                .chain([None])
                .collect::<Vec<_>>()
        );
        assert_eq!(r.given_up(), 8);
    }

    #[test]
    fn a_long_healthy_run_starts_the_count_over() {
        let mut r = Restarts::new(
            &config(RestartStrategy::Exponential, Some(Attempts::AtMost(2))),
            Attempts::Unlimited,
        );
        let short = Duration::from_secs(1);
        assert_eq!(delays(&mut r, short, 2), [Some(1), Some(2)]);
        assert_eq!(r.next(short), None);
        // An attempt that ran longer than reset_after failed: back to the first delay.
        assert_eq!(
            r.next(Duration::from_secs(601)),
            Some(Duration::from_secs(1))
        );
    }

    #[test]
    fn fixed_unlimited_and_none() {
        let mut fixed = Restarts::new(&config(RestartStrategy::Fixed, None), Attempts::Unlimited);
        assert_eq!(delays(&mut fixed, Duration::ZERO, 40), vec![Some(1); 40]);
        let mut none = Restarts::new(&config(RestartStrategy::None, None), Attempts::Unlimited);
        assert_eq!(none.next(Duration::ZERO), None);
        assert_eq!(none.given_up(), 0);
    }
}
