//! The `sink:` section for Apache IoTDB; the batching keys beside these are
//! [`BatchConfig`](crate::sink::BatchConfig)'s.

use crate::job::{duration_opt, Job, JobError, TimeUnit};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// `sink: {type: iotdb, ...}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IotdbSinkConfig {
    /// Host of IoTDB's client RPC service.
    #[serde(default = "default_host")]
    pub host: String,
    /// Port of IoTDB's client RPC service.
    #[serde(default = "default_port")]
    pub port: u16,
    /// User name.
    #[serde(default = "default_user")]
    pub user: String,
    /// Password; use `${ENV}`.
    #[serde(default = "default_user")]
    pub password: String,
    /// The database (storage group) to create before the first write, e.g. `root.factory`;
    /// default: each mapping path's literal prefix.
    #[serde(default)]
    pub database: Option<String>,
    /// Several databases, when the mappings write to more than one.
    #[serde(default)]
    pub databases: Vec<String>,
    /// Time to live set on the databases (e.g. `90d`); none by default.
    #[serde(default, deserialize_with = "duration_opt")]
    pub ttl: Option<Duration>,
    /// The server's timestamp precision (`timestamp_precision` in its configuration).
    #[serde(default = "default_precision")]
    pub precision: TimeUnit,
    /// Encoding per data type for the series tsmig creates, e.g. `{DOUBLE: GORILLA}`;
    /// defaults: BOOLEAN RLE, INT32/INT64 TS_2DIFF, FLOAT/DOUBLE GORILLA, TEXT PLAIN. Each
    /// must be one IoTDB lets the type have: BOOLEAN PLAIN or RLE; INT32/INT64 PLAIN, RLE,
    /// TS_2DIFF or GORILLA; FLOAT/DOUBLE those or GORILLA_V1; TEXT PLAIN or DICTIONARY.
    #[serde(default)]
    pub encodings: BTreeMap<String, String>,
    /// Compression of the series tsmig creates: UNCOMPRESSED, SNAPPY, GZIP, LZ4.
    #[serde(default = "default_compressor")]
    pub compressor: String,
    /// Sessions (connections) per process: IoTDB calls at once, at most. The client is
    /// blocking; each call runs on the async runtime's blocking pool with a session no
    /// other call uses meanwhile.
    #[serde(default = "default_sessions")]
    pub sessions: usize,
    /// Write aligned time series. Not available yet: iotdb-client-rs 0.3 sends every tablet
    /// as not aligned.
    #[serde(default)]
    pub aligned: bool,
}

fn default_host() -> String {
    "127.0.0.1".into()
}
fn default_port() -> u16 {
    6667
}
fn default_user() -> String {
    "root".into()
}
fn default_precision() -> TimeUnit {
    TimeUnit::Millis
}
fn default_compressor() -> String {
    "LZ4".into()
}
fn default_sessions() -> usize {
    2
}

impl IotdbSinkConfig {
    /// The databases named by `database` and `databases`.
    pub fn named_databases(&self) -> Vec<String> {
        self.database
            .iter()
            .chain(&self.databases)
            .cloned()
            .collect()
    }

    /// Checks that need no server.
    pub fn check(&self, job: &Job) -> Result<(), JobError> {
        if self.aligned {
            return Err(job.error_at(
                "sink.aligned",
                "aligned series are not available yet: the IoTDB client tsmig uses (iotdb-client-rs 0.3) writes tablets as not aligned",
            ));
        }
        if self.sessions == 0 {
            return Err(job.error_at("sink.sessions", "must be at least 1"));
        }
        super::encoding::compressor(&self.compressor)
            .map_err(|e| job.error_at("sink.compressor", e))?;
        for (data_type, encoding) in &self.encodings {
            super::encoding::encoding_for_type(data_type, encoding)
                .map_err(|e| job.error_at(&format!("sink.encodings.{data_type}"), e))?;
        }
        for (i, db) in self.databases.iter().enumerate() {
            let nodes = super::path::split(db)
                .map_err(|e| job.error_at(&format!("sink.databases[{i}]"), e))?;
            if nodes[0] != "root"
                || nodes.len() < 2
                || !nodes.iter().all(|n| super::path::is_valid_node(n))
            {
                return Err(job.error_at(
                    &format!("sink.databases[{i}]"),
                    format!("`{db}` is not a database path like root.factory"),
                ));
            }
        }
        for (i, m) in job.file.mappings.iter().enumerate() {
            if m.path.is_none() {
                return Err(job.error_at(
                    &format!("mappings[{i}]"),
                    "an IoTDB sink needs `path:` in every mapping, e.g. path: root.factory.{device_id}",
                ));
            }
        }
        Ok(())
    }
}

/// `sink: {type: iotdb}` with its batching keys.
pub(super) struct IotdbSinkSpec {
    pub config: IotdbSinkConfig,
    pub batching: crate::sink::BatchConfig,
}

impl crate::sink::SinkSpec for IotdbSinkSpec {
    fn kind(&self) -> &'static str {
        "iotdb"
    }
    fn check(&self, job: &Job) -> Result<(), JobError> {
        self.config.check(job)
    }
    fn paths(&self) -> Option<std::sync::Arc<dyn crate::mapping::PathNames>> {
        Some(std::sync::Arc::new(super::path::IotdbPaths))
    }
    fn build(
        &self,
        context: &crate::sink::SinkContext<'_>,
    ) -> Result<crate::sink::AnySink, String> {
        let sink = super::IotdbSink::new(&self.config, &self.batching, context.mappings)?;
        Ok(crate::sink::AnySink::new(sink))
    }
}
