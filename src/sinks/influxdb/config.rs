//! The `sink:` section for InfluxDB.

use crate::job::{duration, Job, JobError, TimeUnit};
use crate::sinks::util::{BatchConfig, RetryPolicy};
use serde::Deserialize;
use std::time::Duration;

/// `sink: {type: influxdb, ...}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfluxSinkConfig {
    /// API version: 1 writes to `/write?db=&rp=`, 2 to `/api/v2/write` with org, bucket and token.
    #[serde(default = "default_version")]
    pub version: u8,
    /// Base URL of the server, e.g. `http://127.0.0.1:8086`.
    pub url: String,
    /// Database to write to (version 1).
    #[serde(default)]
    pub database: Option<String>,
    /// Retention policy (version 1); default: the database's default policy.
    #[serde(default)]
    pub retention_policy: Option<String>,
    /// User name for basic authentication (version 1), if the server requires it.
    #[serde(default)]
    pub username: Option<String>,
    /// Password for basic authentication (version 1); use `${ENV}`.
    #[serde(default)]
    pub password: Option<String>,
    /// Organization (version 2).
    #[serde(default)]
    pub org: Option<String>,
    /// Bucket (version 2).
    #[serde(default)]
    pub bucket: Option<String>,
    /// API token (version 2); use `${ENV}`, never the token itself.
    #[serde(default)]
    pub token: Option<String>,
    /// Timestamp precision written: `s`, `ms`, `us` or `ns`. A point with a finer time is
    /// dead-lettered rather than truncated onto another point's timestamp.
    #[serde(default = "default_precision")]
    pub precision: TimeUnit,
    /// Create the database on start if it does not exist (version 1).
    #[serde(default = "default_true")]
    pub create_database: bool,
    /// Points per write request.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Bytes per write request, at most.
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
    /// Retries of a transient failure (network, timeout, 429, 5xx) before the job fails.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Backoff before the first retry; it doubles up to `max_backoff`, with jitter.
    #[serde(default = "default_initial_backoff", deserialize_with = "duration")]
    pub initial_backoff: Duration,
    /// Longest backoff between two attempts.
    #[serde(default = "default_max_backoff", deserialize_with = "duration")]
    pub max_backoff: Duration,
}

fn default_version() -> u8 {
    1
}
fn default_precision() -> TimeUnit {
    TimeUnit::Nanos
}
fn default_true() -> bool {
    true
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
fn default_max_retries() -> u32 {
    10
}
fn default_initial_backoff() -> Duration {
    Duration::from_millis(100)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(10)
}

impl InfluxSinkConfig {
    /// Checks that need no server.
    pub fn check(&self, job: &Job) -> Result<(), JobError> {
        let need = |key: &str, value: &Option<String>, why: &str| match value {
            Some(v) if !v.is_empty() => Ok(()),
            _ => Err(job.error_at(&format!("sink.{key}"), format!("missing: {why}"))),
        };
        match self.version {
            1 => need("database", &self.database, "version 1 writes to a database")?,
            2 => {
                need("org", &self.org, "version 2 writes to an org's bucket")?;
                need("bucket", &self.bucket, "version 2 writes to a bucket")?;
                need(
                    "token",
                    &self.token,
                    "version 2 needs an API token (use ${ENV})",
                )?;
            }
            v => return Err(job.error_at("sink.version", format!("version {v} is not 1 or 2"))),
        }
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(job.error_at("sink.url", "the URL must start with http:// or https://"));
        }
        if self.url.starts_with("https://") {
            return Err(job.error_at(
                "sink.url",
                "https is not built into this tsmig yet; use http:// (or a TLS-terminating proxy)",
            ));
        }
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

    /// The shared batching policy these settings describe.
    pub fn batching(&self) -> BatchConfig {
        BatchConfig {
            max_rows: self.batch_size,
            max_bytes: self.batch_bytes,
            linger: self.linger,
            in_flight: self.in_flight,
            retry: RetryPolicy {
                max_retries: self.max_retries,
                initial_backoff: self.initial_backoff,
                max_backoff: self.max_backoff,
            },
        }
    }
}
