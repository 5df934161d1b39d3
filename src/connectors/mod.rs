//! Connectors: one folder per system, each holding what tsmig knows of that system — its
//! job-file sections, its client, its source and sink sides — and a registry that finds a
//! connector by the `type:` of a `source:` or `sink:` section.
//!
//! Each folder is split the same way: `mod.rs` (what the system is, which of its semantics
//! matter, the [`Connector`] entry), `config.rs` (the sections, `deny_unknown_fields`),
//! `client.rs` (talking to the server), `source.rs` / `sink.rs` (the [`BoundedSource`] and
//! [`Sink`] implementations), `encoding.rs` (values to and from the wire); extras where a
//! system needs them. Adding one is a folder, a line in [`CONNECTORS`] and a Cargo feature
//! (CONTRIBUTING.md).
//!
//! [`memory`] holds a database and a target in memory: what the engine's own tests run
//! against, with faults a test can script.
//!
//! [`BoundedSource`]: crate::source::BoundedSource
//! [`Sink`]: crate::sink::Sink

#[cfg(feature = "blackhole")]
pub mod blackhole;
#[cfg(feature = "file")]
pub mod file;
#[cfg(feature = "influxdb")]
pub mod influxdb;
#[cfg(feature = "ingest")]
pub mod ingest;
#[cfg(feature = "iotdb")]
pub mod iotdb;
pub mod memory;
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "tdengine")]
pub mod tdengine;
#[cfg(feature = "timestream")]
pub mod timestream;

use crate::job::{Job, JobError};
use crate::sink::SinkSpec;
use crate::source::SourceSpec;

/// A connector: its `type:` word, and how it parses a `source:` or `sink:` section of
/// that type (with the section's own checks), where it is one.
pub struct Connector {
    /// The `type:` word.
    pub kind: &'static str,
    /// Parses `job.file.source` as this connector's source section.
    pub source: Option<ParseSource>,
    /// Parses `job.file.sink` as this connector's sink section.
    pub sink: Option<ParseSink>,
}

/// Parses a job's `source:` section.
pub type ParseSource = fn(&Job) -> Result<Box<dyn SourceSpec>, JobError>;
/// Parses a job's `sink:` section.
pub type ParseSink = fn(&Job) -> Result<Box<dyn SinkSpec>, JobError>;

/// Every connector this build has, one line each.
pub const CONNECTORS: &[Connector] = &[
    #[cfg(feature = "mysql")]
    mysql::CONNECTOR,
    #[cfg(feature = "influxdb")]
    influxdb::CONNECTOR,
    #[cfg(feature = "tdengine")]
    tdengine::CONNECTOR,
    #[cfg(feature = "ingest")]
    ingest::CONNECTOR,
    #[cfg(feature = "iotdb")]
    iotdb::CONNECTOR,
    #[cfg(feature = "timestream")]
    timestream::CONNECTOR,
    #[cfg(feature = "blackhole")]
    blackhole::CONNECTOR,
    #[cfg(feature = "file")]
    file::CONNECTOR,
    memory::CONNECTOR,
];

/// The job's source, parsed and checked by its connector.
pub fn source(job: &Job) -> Result<Box<dyn SourceSpec>, JobError> {
    let kind = &job.file.source.kind;
    let parse = CONNECTORS
        .iter()
        .find(|c| c.kind == kind && c.source.is_some())
        .and_then(|c| c.source)
        .ok_or_else(|| unknown(job, "source", kind, |c| c.source.is_some()))?;
    let spec = parse(job)?;
    spec.check(job)?;
    Ok(spec)
}

/// The job's sink, parsed and checked by its connector.
pub fn sink(job: &Job) -> Result<Box<dyn SinkSpec>, JobError> {
    let kind = &job.file.sink.kind;
    let parse = CONNECTORS
        .iter()
        .find(|c| c.kind == kind && c.sink.is_some())
        .and_then(|c| c.sink)
        .ok_or_else(|| unknown(job, "sink", kind, |c| c.sink.is_some()))?;
    let spec = parse(job)?;
    spec.check(job)?;
    Ok(spec)
}

/// A job's connectors, parsed and checked.
pub struct Checked {
    /// The source section.
    pub source: Box<dyn SourceSpec>,
    /// The sink section.
    pub sink: Box<dyn SinkSpec>,
}

/// Parses and checks the job's source and sink sections, and what depends on both: the
/// mappings a source needs (none for points that arrive whole; `auto` only where the
/// source offers its own).
pub fn check(job: &Job) -> Result<Checked, JobError> {
    let source = source(job)?;
    let sink = sink(job)?;
    if source.arrives_as_points() {
        if !job.file.mappings.is_empty() {
            return Err(job.error_at(
                "mappings",
                "an ingest job has no source tables to map: line protocol arrives as points (measurement, tags, fields, time) and is written as it is; remove `mappings:`",
            ));
        }
    } else if job.file.mappings.is_empty() && !source.offers_mappings() {
        return Err(job.error_at(
            "mappings",
            "a job needs at least one mapping (`mappings: auto` is for sources that offer their own schema as one, e.g. InfluxDB)",
        ));
    }
    Ok(Checked { source, sink })
}

fn unknown(job: &Job, what: &str, kind: &str, has: fn(&Connector) -> bool) -> JobError {
    let known: Vec<&str> = CONNECTORS
        .iter()
        .filter(|c| has(c))
        .map(|c| c.kind)
        .collect();
    job.error_at(
        &format!("{what}.type"),
        format!(
            "unknown {what} type `{kind}`, expected one of {}",
            known.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn job(source: &str, mappings: &str) -> Result<Checked, JobError> {
        let text = format!("name: t\nsource:\n{source}sink:\n  type: blackhole\n{mappings}");
        let job = Job::parse(Path::new("job.yaml"), &text, |_| None)?;
        check(&job)
    }

    #[test]
    fn mappings_auto_only_where_the_source_offers_its_own_and_none_for_points() {
        let mysql = "  type: mysql\n  url: mysql://u@h/db\n  tables:\n    - name: t\n";
        let err = job(mysql, "").err().unwrap();
        assert_eq!(err.key.as_deref(), Some("mappings"));
        let influx = "  type: influxdb\n  url: http://h:8086\n  database: d\n";
        assert!(job(influx, "mappings: auto\n").is_ok());
        let ingest = "  type: ingest\n";
        assert!(job(ingest, "").is_ok());
        let err = job(
            ingest,
            "mappings:\n  - table: x\n    timestamp_field: t\n    fields: [f]\n",
        )
        .err()
        .unwrap();
        assert!(
            err.message.contains("an ingest job has no source tables"),
            "{err}"
        );
    }

    #[test]
    fn sources_and_sinks_take_the_same_retry_keys_with_the_same_defaults() {
        use crate::retry::RetryPolicy;
        use std::time::Duration;
        let keys = "  max_retries: 3\n  initial_backoff: 50ms\n  max_backoff: 2s\n";
        let given = RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
        };
        let sections = [
            "  type: mysql\n  url: mysql://u@h/db\n  tables:\n    - name: t\n",
            "  type: influxdb\n  url: http://h:8086\n  database: d\n",
            "  type: tdengine\n  url: http://h:6041\n  password: p\n  database: d\n  tables:\n    - name: t\n",
        ];
        let retry_of = |checked: &Checked| -> RetryPolicy {
            let any = checked.source.as_any();
            #[cfg(feature = "mysql")]
            if let Some(c) = any.downcast_ref::<mysql::config::MysqlSourceConfig>() {
                return c.retry.clone();
            }
            #[cfg(feature = "influxdb")]
            if let Some(c) = any.downcast_ref::<influxdb::source_config::InfluxSourceConfig>() {
                return c.retry.clone();
            }
            #[cfg(feature = "tdengine")]
            if let Some(c) = any.downcast_ref::<tdengine::config::TdengineSourceConfig>() {
                return c.retry.clone();
            }
            panic!("not a source that retries")
        };
        let mappings = "mappings:\n  - table: t\n    timestamp_field: ts\n    fields: [f]\n";
        for section in sections {
            let defaults = job(section, mappings).unwrap();
            assert_eq!(retry_of(&defaults), RetryPolicy::default(), "{section}");
            let set = job(&format!("{section}{keys}"), mappings).unwrap();
            assert_eq!(retry_of(&set), given, "{section}");
            let err = job(&format!("{section}  max_backoff: soon\n"), mappings)
                .err()
                .unwrap();
            assert_eq!(err.key.as_deref(), Some("source.max_backoff"), "{err}");
        }
        let text = format!("name: t\nsource:\n  type: ingest\nsink:\n  type: memory\n{keys}");
        let job = Job::parse(Path::new("job.yaml"), &text, |_| None).unwrap();
        #[derive(serde::Deserialize)]
        struct NoKeys {}
        let (_, batching) = crate::sink::parse_section::<NoKeys>(&job).unwrap();
        assert_eq!(batching.retry, given);
    }

    #[test]
    fn an_unknown_type_names_the_key_and_the_types_there_are() {
        let err = job("  type: oracle\n", "").err().unwrap();
        assert_eq!(err.key.as_deref(), Some("source.type"));
        assert!(
            err.message
                .starts_with("unknown source type `oracle`, expected one of mysql"),
            "{err}"
        );
        assert_eq!(err.place, Some((3, 3)));
    }
}
