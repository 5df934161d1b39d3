//! The `sink:` section for InfluxDB.

use crate::job::{Job, JobError, TimeUnit};
use serde::Deserialize;

/// `sink: {type: influxdb, ...}`; the batching keys beside these are
/// [`BatchConfig`](crate::sink::BatchConfig)'s.
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
    /// Send write bodies gzipped (`Content-Encoding: gzip`; version 2). Line protocol
    /// shrinks several times; turn it off only for a proxy that cannot pass it on.
    #[serde(default = "default_true")]
    pub gzip: bool,
    /// Create the database on start if it does not exist (version 1).
    #[serde(default = "default_true")]
    pub create_database: bool,
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
        Ok(())
    }
}

/// `sink: {type: influxdb}` with its batching keys.
pub(super) struct InfluxSinkSpec {
    pub config: InfluxSinkConfig,
    pub batching: crate::sink::BatchConfig,
}

impl crate::sink::SinkSpec for InfluxSinkSpec {
    fn kind(&self) -> &'static str {
        "influxdb"
    }
    fn check(&self, job: &Job) -> Result<(), JobError> {
        self.config.check(job)?;
        crate::sink::refuse_path_keys(job, "influxdb")
    }
    fn build(
        &self,
        context: &crate::sink::SinkContext<'_>,
    ) -> Result<crate::sink::AnySink, String> {
        let sink = super::InfluxSink::new(
            &self.config,
            &self.batching,
            context.mappings.measurements(),
        )?
        // Deletes (CDC, verify --repair) name every tag key of the measurement.
        .with_tag_keys(context.mappings.tag_keys());
        Ok(crate::sink::AnySink::new(sink))
    }
}
