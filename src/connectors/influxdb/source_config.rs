//! The `source:` section for InfluxDB 1.x.

use crate::job::{duration, Job, JobError};
use crate::retry::RetryPolicy;
use serde::Deserialize;
use std::time::Duration;

/// `source: {type: influxdb, ...}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfluxSourceConfig {
    /// Base URL of the server, e.g. `http://127.0.0.1:8086`.
    pub url: String,
    /// Database to read.
    pub database: String,
    /// Retention policy to read; default: the database's default policy.
    #[serde(default)]
    pub retention_policy: Option<String>,
    /// User name for basic authentication, if the server requires it.
    #[serde(default)]
    pub username: Option<String>,
    /// Password for basic authentication; use `${ENV}`.
    #[serde(default)]
    pub password: Option<String>,
    /// Measurements to read, in this order. Default: those the mappings name, or with
    /// `mappings: auto` every measurement of the database (`SHOW MEASUREMENTS`).
    #[serde(default)]
    pub measurements: Option<Vec<String>>,
    /// Width of the time buckets each measurement is cut into (aligned to the Unix epoch,
    /// as InfluxQL's `GROUP BY time()` aligns them).
    #[serde(default = "default_bucket", deserialize_with = "duration")]
    pub bucket: Duration,
    /// The most points one query may return. A bucket counted above it is halved in time,
    /// then divided by series, until every query is under it.
    #[serde(default = "default_max_points_per_query")]
    pub max_points_per_query: u64,
    /// Queries in flight at once across the whole process (every worker shares them);
    /// with several processes, per process.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Rows per second read at most, across the whole process (at most one chunk, or a
    /// second's rows, ahead of that pace); default: no limit.
    #[serde(default)]
    pub rate_limit: Option<u64>,
    /// Rows per chunk of a chunked answer (`chunk_size`).
    #[serde(default = "default_chunk_size")]
    pub chunk_size: usize,
    /// Longest wait for the server's next bytes; a query that stalls longer is retried.
    /// A count answers only once computed: raise this where counting one bucket takes
    /// the server longer.
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// Time limit of one whole query, answer included — and so the time the target takes
    /// to write what it answers; a query that takes longer is retried.
    #[serde(default = "default_query_timeout", deserialize_with = "duration")]
    pub query_timeout: Duration,
    /// How a query that failed transiently (network, timeout, 429, 5xx) is sent again (a
    /// split is re-read from its start): the retry keys, parsed beside these
    /// ([`crate::source::parse_section`]).
    #[serde(skip)]
    pub retry: RetryPolicy,
}

fn default_bucket() -> Duration {
    Duration::from_secs(3600)
}
fn default_max_points_per_query() -> u64 {
    50_000
}
fn default_concurrency() -> usize {
    1
}
fn default_chunk_size() -> usize {
    10_000
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_query_timeout() -> Duration {
    Duration::from_secs(30 * 60)
}

impl InfluxSourceConfig {
    /// Checks that need no server.
    pub fn check(&self, job: &Job) -> Result<(), JobError> {
        if !self.url.starts_with("http://") {
            return Err(job.error_at(
                "source.url",
                "the URL must start with http:// (https is not built into this tsmig yet)",
            ));
        }
        reqwest::Url::parse(&self.url)
            .map_err(|e| job.error_at("source.url", format!("not a URL: {e}")))?;
        if self.database.is_empty() {
            return Err(job.error_at("source.database", "must not be empty"));
        }
        if self.bucket < Duration::from_secs(1) {
            return Err(job.error_at("source.bucket", "must be at least 1s"));
        }
        if self.max_points_per_query == 0 {
            return Err(job.error_at("source.max_points_per_query", "must be at least 1"));
        }
        if self.concurrency == 0 {
            return Err(job.error_at("source.concurrency", "must be at least 1"));
        }
        if self.rate_limit == Some(0) {
            return Err(job.error_at(
                "source.rate_limit",
                "must be at least 1 row per second (leave it out for no limit)",
            ));
        }
        if self.rate_limit.is_some_and(|r| r > u32::MAX as u64) {
            return Err(job.error_at(
                "source.rate_limit",
                format!(
                    "must be at most {} rows per second (leave it out for no limit)",
                    u32::MAX
                ),
            ));
        }
        if self.chunk_size == 0 {
            return Err(job.error_at("source.chunk_size", "must be at least 1"));
        }
        if let Some(list) = &self.measurements {
            if list.is_empty() {
                return Err(job.error_at(
                    "source.measurements",
                    "list at least one measurement, or leave the key out for all",
                ));
            }
            for (i, m) in list.iter().enumerate() {
                if list[..i].contains(m) {
                    return Err(job.error_at(
                        &format!("source.measurements[{i}]"),
                        format!("measurement `{m}` is listed twice"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The bucket width in nanoseconds.
    pub fn bucket_ns(&self) -> i64 {
        self.bucket.as_nanos().min(i64::MAX as u128) as i64
    }
}

#[async_trait::async_trait]
impl crate::source::SourceSpec for InfluxSourceConfig {
    fn kind(&self) -> &'static str {
        "influxdb"
    }
    fn check(&self, job: &Job) -> Result<(), JobError> {
        InfluxSourceConfig::check(self, job)
    }
    fn table_names(&self) -> Vec<String> {
        self.measurements.clone().unwrap_or_default()
    }
    fn offers_mappings(&self) -> bool {
        true
    }
    async fn open(
        &self,
        job: &Job,
    ) -> Result<Box<dyn crate::source::BoundedSource>, crate::source::SourceError> {
        Ok(Box::new(super::InfluxSource::open(job, self).await?))
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
