//! The `source:` and `sink:` sections of `type: memory`.

use crate::job::{Job, JobError};
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

    /// The table names of the registered database (none if it is not registered).
    pub fn table_names(&self) -> Vec<String> {
        super::database(&self.database)
            .map(|db| db.tables().iter().map(|t| t.schema.name.clone()).collect())
            .unwrap_or_default()
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
