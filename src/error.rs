//! One vocabulary for what a failure means, shared by every source, sink and the engine.
//!
//! - **Transient**: worth trying again — the network, a timeout, an overloaded or
//!   restarting server (HTTP 429 and 5xx, IoTDB's "try again" codes, a binlog stream that
//!   ended). A request retries with backoff and jitter, at least as long as the server's
//!   Retry-After; when its retries run out, the job restarts from its last checkpoint as the
//!   restart strategy says.
//! - **Definite**: this record is bad (a value the target refuses, a row no point can be made
//!   of). It goes to the dead-letter file with the reason, and the job goes on. Never retried.
//! - **Fatal**: nothing can go on — configuration, authentication, a missing database, a
//!   disk that cannot be written, a schema change CDC cannot follow. The job fails with the
//!   message; a restart would meet the same wall, so none is tried.
//!
//! This module imports nothing of the project.

use std::fmt;

/// What a failure means (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Worth trying again.
    Transient,
    /// This record is bad; dead-letter it.
    Definite,
    /// The job cannot go on.
    Fatal,
}

/// A failure that ends a job (or, when transient, one attempt of it), with its cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What it means.
    pub class: Class,
    /// What happened, for the last line of stderr.
    pub message: String,
}

impl Failure {
    /// A failure a restart from the checkpoint may get past.
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            class: Class::Transient,
            message: message.into(),
        }
    }

    /// A failure no restart gets past.
    pub fn fatal(message: impl Into<String>) -> Self {
        Self {
            class: Class::Fatal,
            message: message.into(),
        }
    }

    /// Whether a restart may get past it.
    pub fn is_transient(&self) -> bool {
        self.class == Class::Transient
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
