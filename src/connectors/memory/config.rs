//! The `source:` and `sink:` sections of `type: memory`.

use crate::job::{Job, JobError};
use crate::sink::{AnySink, BatchConfig, SinkContext, SinkSpec};
use crate::source::{BoundedChangeSource, BoundedSource, SourceError, SourceSpec};
use serde::Deserialize;

/// `source: {type: memory}`: a database a test registered in this process.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemorySourceConfig {
    /// The name the database was registered under (`connectors::memory::register_database`).
    pub database: String,
}

impl MemorySourceConfig {
    /// Checks that need no server.
    pub fn check(&self, job: &Job) -> Result<(), JobError> {
        if self.database.is_empty() {
            return Err(job.error_at("source.database", "must name a registered database"));
        }
        Ok(())
    }

    fn open_memory(&self, job: &Job) -> Result<super::MemorySource, SourceError> {
        let db = super::database(&self.database).ok_or_else(|| {
            SourceError::Config(job.error_at(
                "source.database",
                format!(
                    "no memory database `{}` is registered in this process",
                    self.database
                ),
            ))
        })?;
        Ok(super::MemorySource::new(db))
    }
}

#[async_trait::async_trait]
impl SourceSpec for MemorySourceConfig {
    fn kind(&self) -> &'static str {
        "memory"
    }
    fn check(&self, job: &Job) -> Result<(), JobError> {
        MemorySourceConfig::check(self, job)
    }
    /// The table names of the registered database (none if it is not registered).
    fn table_names(&self) -> Vec<String> {
        super::database(&self.database)
            .map(|db| db.tables().iter().map(|t| t.schema.name.clone()).collect())
            .unwrap_or_default()
    }
    async fn open(&self, job: &Job) -> Result<Box<dyn BoundedSource>, SourceError> {
        Ok(Box::new(self.open_memory(job)?))
    }
    async fn open_changes(&self, job: &Job) -> Result<Box<dyn BoundedChangeSource>, SourceError> {
        Ok(Box::new(self.open_memory(job)?))
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// `sink: {type: memory}` with its batching keys.
pub(super) struct MemorySinkSpec {
    pub config: MemorySinkConfig,
    pub batching: BatchConfig,
}

impl SinkSpec for MemorySinkSpec {
    fn kind(&self) -> &'static str {
        "memory"
    }
    fn check(&self, job: &Job) -> Result<(), JobError> {
        self.config.check(job)?;
        crate::sink::refuse_path_keys(job, "memory")
    }
    fn build(&self, _context: &SinkContext<'_>) -> Result<AnySink, String> {
        Ok(AnySink::new(super::MemorySink::new(
            &self.config.target,
            self.config.deletes,
            self.batching.clone(),
        )))
    }
}

/// `sink: {type: memory}`: a target held in this process.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemorySinkConfig {
    /// The target's name; created empty on first use.
    pub target: String,
    /// What a delete removes: `point` (every field, as InfluxDB) or `fields` (only the
    /// fields the deleted point names, as IoTDB).
    #[serde(default)]
    pub deletes: DeleteMode,
}

impl MemorySinkConfig {
    /// Checks that need no server.
    pub fn check(&self, job: &Job) -> Result<(), JobError> {
        if self.target.is_empty() {
            return Err(job.error_at("sink.target", "must name the target"));
        }
        Ok(())
    }
}

/// What a delete of a memory target removes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeleteMode {
    /// The whole point (InfluxDB).
    #[default]
    Point,
    /// Only the fields the deleted point names (IoTDB).
    Fields,
}
