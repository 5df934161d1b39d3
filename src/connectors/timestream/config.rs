//! The `sink:` section for Amazon Timestream (for LiveAnalytics); the batching keys beside
//! these are [`BatchConfig`](crate::sink::BatchConfig)'s.

use super::encoding::limits;
use crate::job::{duration, Job, JobError, TimeUnit};
use serde::Deserialize;
use std::time::Duration;

/// `sink: {type: timestream, ...}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimestreamSinkConfig {
    /// AWS region, e.g. `eu-west-1`; default: the standard chain (`AWS_REGION`, profile).
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint URL, e.g. `http://127.0.0.1:5000` for a local stand-in. When set, every
    /// request goes there and endpoint discovery is off; when absent (or empty), the SDK
    /// discovers the ingest endpoint with `DescribeEndpoints`, as Timestream requires.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The database to write to.
    pub database: String,
    /// One table for every point, the measurement becoming the dimension
    /// `measurement_dimension`; default: each measurement is a table of its own.
    #[serde(default)]
    pub table: Option<String>,
    /// Name of the dimension that carries the measurement when `table` is set.
    #[serde(default = "default_measurement_dimension")]
    pub measurement_dimension: String,
    /// The `MeasureName` of every multi-measure record (Timestream's `measure_name` column).
    pub measure_name: String,
    /// Unit of the records' time: `s`, `ms`, `us` or `ns`. A point with a finer time is
    /// dead-lettered rather than rounded onto another point's time.
    #[serde(default = "default_time_unit")]
    pub time_unit: TimeUnit,
    /// Create the database and missing tables (a table on its first write).
    #[serde(default = "default_true")]
    pub create: bool,
    /// Memory-store retention of the tables tsmig creates, and the oldest time a point may
    /// have (older points are dead-lettered: Timestream would refuse them). Set it to the
    /// retention of existing tables. Default 6h, what `CreateTable` gives by default.
    #[serde(default = "default_memory_retention", deserialize_with = "duration")]
    pub memory_retention: Duration,
    /// Magnetic-store retention of the tables tsmig creates (whole days). Default 73000d,
    /// what `CreateTable` gives by default.
    #[serde(default = "default_magnetic_retention", deserialize_with = "duration")]
    pub magnetic_retention: Duration,
    /// Put what the records of one request share (measure name, dimensions with equal
    /// values) in `CommonAttributes` once rather than in every record.
    #[serde(default = "default_true")]
    pub common_attributes: bool,
}

fn default_measurement_dimension() -> String {
    "measurement".into()
}
fn default_time_unit() -> TimeUnit {
    TimeUnit::Millis
}
fn default_true() -> bool {
    true
}
fn default_memory_retention() -> Duration {
    Duration::from_secs(6 * 3600)
}
fn default_magnetic_retention() -> Duration {
    Duration::from_secs(73_000 * 86_400)
}

impl TimestreamSinkConfig {
    /// The configured endpoint; an empty one (`${VAR:-}` unset) is none.
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref().filter(|e| !e.is_empty())
    }

    /// Memory-store retention in whole hours, as `CreateTable` takes it.
    pub fn memory_hours(&self) -> i64 {
        (self.memory_retention.as_secs() / 3600) as i64
    }

    /// Magnetic-store retention in whole days, as `CreateTable` takes it.
    pub fn magnetic_days(&self) -> i64 {
        (self.magnetic_retention.as_secs() / 86_400) as i64
    }

    /// Checks that need no server.
    pub fn check(&self, job: &Job) -> Result<(), JobError> {
        limits::check_resource_name("database", &self.database)
            .map_err(|e| job.error_at("sink.database", e))?;
        if let Some(table) = &self.table {
            limits::check_resource_name("table", table)
                .map_err(|e| job.error_at("sink.table", e))?;
            limits::check_dimension_name(&self.measurement_dimension)
                .map_err(|e| job.error_at("sink.measurement_dimension", e))?;
        }
        limits::check_measure_name("measure_name", &self.measure_name)
            .map_err(|e| job.error_at("sink.measure_name", e))?;
        let store = |key: &str, retention: Duration, unit: (u64, &str), max: i64, what: &str| {
            let units = (retention.as_secs() / unit.0) as i64;
            if retention.as_secs() % unit.0 != 0 || !(1..=max).contains(&units) {
                return Err(job.error_at(
                    key,
                    format!(
                        "must be whole {what}s from 1{u} to {max}{u} (Timestream's {key})",
                        u = unit.1,
                        key = key.trim_start_matches("sink.").replace('_', " "),
                    ),
                ));
            }
            Ok(())
        };
        store(
            "sink.memory_retention",
            self.memory_retention,
            (3600, "h"),
            limits::MAX_MEMORY_RETENTION_HOURS,
            "hour",
        )?;
        store(
            "sink.magnetic_retention",
            self.magnetic_retention,
            (86_400, "d"),
            limits::MAX_MAGNETIC_RETENTION_DAYS,
            "day",
        )?;
        if let Some(endpoint) = self.endpoint() {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(job.error_at(
                    "sink.endpoint",
                    "the endpoint must start with http:// or https://",
                ));
            }
        }
        Ok(())
    }
}

/// `sink: {type: timestream}` with its batching keys.
pub(super) struct TimestreamSinkSpec {
    pub config: TimestreamSinkConfig,
    pub batching: crate::sink::BatchConfig,
}

impl crate::sink::SinkSpec for TimestreamSinkSpec {
    fn kind(&self) -> &'static str {
        "timestream"
    }
    fn check(&self, job: &Job) -> Result<(), JobError> {
        self.config.check(job)?;
        crate::sink::refuse_path_keys(job, "timestream")
    }
    fn build(
        &self,
        _context: &crate::sink::SinkContext<'_>,
    ) -> Result<crate::sink::AnySink, String> {
        Ok(crate::sink::AnySink::new(super::TimestreamSink::new(
            &self.config,
            &self.batching,
        )))
    }
}
