//! tsmig: a dataflow engine that migrates and replicates time-series data between
//! databases, on timely dataflow.
//!
//! The pieces, in the order data meets them: [`job`] (the job file), [`source`] (rows from
//! a database), [`mapping`] (rows → [`model::Point`]s), [`sink`] (points into a database),
//! [`engine`] (the timely dataflow that runs them, the only module that knows timely) and
//! [`checkpoint`] (what is durably done, where a restart resumes). [`config`] is the process
//! configuration (`config/tsmig.yaml`): what a process runs with, whatever the job.

pub mod checkpoint;
pub mod config;
pub mod connectors;
pub mod dead_letter;
pub mod engine;
pub mod error;
pub mod job;
pub mod mapping;
pub mod metrics;
pub mod model;
pub mod retry;
pub mod runner;
pub mod sink;
pub mod source;
pub mod spec;
pub mod status;
pub mod verify;
