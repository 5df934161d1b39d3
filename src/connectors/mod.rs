//! Connectors: one folder per system, each holding what tsmig knows of that system (its
//! job-file section, its client, its source and sink sides).
//!
//! [`memory`] holds a database and a target in memory: what the engine's own tests run
//! against, with faults a test can script.

pub mod blackhole;
pub mod influxdb;
pub mod ingest;
pub mod iotdb;
pub mod memory;
pub mod mysql;
pub mod tdengine;
pub mod timestream;
