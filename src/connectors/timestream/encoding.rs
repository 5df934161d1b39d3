//! Points → Timestream multi-measure records, with Timestream's limits checked offline.
//!
//! A point becomes one multi-measure record: its tags are the dimensions (in single-table
//! mode the measurement is one more dimension), its fields the measures, its time the
//! record's time in the sink's `time_unit`, and `measure_name` comes from the job file.
//! Every limit Timestream enforces on a record is checked here, before anything is sent,
//! so a point Timestream would refuse is dead-lettered with a precise reason instead of
//! costing a request (and instead of relying on a stand-in that checks nothing).
//!
//! Value types: BOOLEAN, BIGINT (signed and unsigned integers up to 2^63-1; a larger
//! unsigned value is refused, never wrapped), DOUBLE (floats and DECIMAL's exact text;
//! NaN and infinities are refused), VARCHAR (text). A time value (DATETIME, TIMESTAMP)
//! becomes a BIGINT of nanoseconds since the Unix epoch (`from_nanoseconds()` in a query
//! turns it back into a timestamp): exact at every precision, and free of any doubt about
//! the unit Timestream applies to TIMESTAMP measures.

use crate::job::TimeUnit;
use crate::model::{Name, Point, Text, Value};
use std::sync::atomic::{AtomicI64, Ordering};

/// Timestream's quotas on what one write may carry, with the checks that use them.
pub mod limits {
    use std::time::Duration;

    /// Records in one `WriteRecords` request.
    pub const MAX_RECORDS_PER_WRITE: usize = 100;
    /// Bytes of one record: dimension names and values, the measure name, the measures'
    /// names and values (as sent, UTF-8 text) and 8 bytes of time.
    pub const MAX_RECORD_BYTES: usize = 2048;
    /// Dimensions a record must carry at least (Timestream has no record without a series).
    pub const MIN_DIMENSIONS: usize = 1;
    /// Dimensions in one record (and in one table).
    pub const MAX_DIMENSIONS: usize = 128;
    /// Bytes of a dimension's name.
    pub const MAX_DIMENSION_NAME_BYTES: usize = 60;
    /// Bytes of a dimension's value.
    pub const MAX_DIMENSION_VALUE_BYTES: usize = 2048;
    /// Bytes of a database or table name, of the record's measure name and of a measure's name.
    pub const MAX_NAME_BYTES: usize = 256;
    /// Bytes of a database or table name, at least.
    pub const MIN_RESOURCE_NAME_BYTES: usize = 3;
    /// Measures in one multi-measure record.
    pub const MAX_MEASURES: usize = 256;
    /// Bytes of the measure values of one multi-measure record, together.
    pub const MAX_MEASURE_VALUE_BYTES: usize = 2048;
    /// How far ahead of the writer's clock a record's time may be.
    pub const MAX_FUTURE: Duration = Duration::from_secs(15 * 60);
    /// Longest memory-store retention a table can have, in hours (one year).
    pub const MAX_MEMORY_RETENTION_HOURS: i64 = 8766;
    /// Longest magnetic-store retention a table can have, in days (200 years).
    pub const MAX_MAGNETIC_RETENTION_DAYS: i64 = 73_000;

    /// A database or table name: 3 to 256 bytes of `a-z A-Z 0-9 _ . -`.
    pub fn check_resource_name(what: &str, name: &str) -> Result<(), String> {
        if name.len() < MIN_RESOURCE_NAME_BYTES || name.len() > MAX_NAME_BYTES {
            return Err(format!(
                "{what} name `{name}` is {} bytes; Timestream takes {MIN_RESOURCE_NAME_BYTES} to {MAX_NAME_BYTES}",
                name.len()
            ));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        {
            return Err(format!(
                "{what} name `{name}` has `{c}`; Timestream takes only a-z, A-Z, 0-9, `_`, `.` and `-`"
            ));
        }
        Ok(())
    }

    /// A dimension name: 1 to 60 bytes, not one of Timestream's reserved column names.
    pub fn check_dimension_name(name: &str) -> Result<(), String> {
        if name.is_empty() || name.len() > MAX_DIMENSION_NAME_BYTES {
            return Err(format!(
                "dimension name `{name}` is {} bytes; Timestream takes 1 to {MAX_DIMENSION_NAME_BYTES}",
                name.len()
            ));
        }
        check_not_reserved("dimension", name)
    }

    /// A measure name (the record's `measure_name` or one measure's): 1 to 256 bytes.
    pub fn check_measure_name(what: &str, name: &str) -> Result<(), String> {
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            return Err(format!(
                "{what} `{name}` is {} bytes; Timestream takes 1 to {MAX_NAME_BYTES}",
                name.len()
            ));
        }
        check_not_reserved(what, name)
    }

    /// `time`, `measure_name` and `measure_value::*` are the columns Timestream adds itself.
    fn check_not_reserved(what: &str, name: &str) -> Result<(), String> {
        if name == "time" || name == "measure_name" || name.starts_with("measure_value::") {
            return Err(format!(
                "{what} `{name}` is reserved by Timestream (time, measure_name, measure_value::*)"
            ));
        }
        Ok(())
    }
}

/// The type of one measure, as `MeasureValueType` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MeasureType {
    /// `BIGINT`.
    Bigint,
    /// `DOUBLE`.
    Double,
    /// `BOOLEAN`.
    Boolean,
    /// `VARCHAR`.
    Varchar,
}

impl MeasureType {
    /// The name Timestream gives the type.
    pub fn as_str(self) -> &'static str {
        match self {
            MeasureType::Bigint => "BIGINT",
            MeasureType::Double => "DOUBLE",
            MeasureType::Boolean => "BOOLEAN",
            MeasureType::Varchar => "VARCHAR",
        }
    }
}

/// One measure of a multi-measure record.
#[derive(Clone, Debug, PartialEq)]
pub struct Measure {
    /// The measure's name (the field key).
    pub name: Name,
    /// The value as Timestream takes it: text.
    pub value: String,
    /// Its type.
    pub kind: MeasureType,
}

/// One multi-measure record, checked against every limit and ready to send.
#[derive(Clone, Debug, PartialEq)]
pub struct TsRecord {
    /// Dimension names and values: the tags, sorted by name.
    pub dimensions: Vec<(Name, Text)>,
    /// The measures: the fields.
    pub measures: Vec<Measure>,
    /// The time in the sink's time unit.
    pub time: i64,
    /// The time in nanoseconds, for dead letters.
    pub time_ns: i64,
    /// The record's version: a rewrite of the same point with a higher version is an upsert.
    pub version: i64,
}

/// A measure from a field value.
pub fn measure(name: &Name, value: &Value) -> Result<Measure, String> {
    let (value, kind) = match value {
        Value::Bool(b) => (
            if *b { "true" } else { "false" }.to_string(),
            MeasureType::Boolean,
        ),
        Value::Int(i) => (itoa::Buffer::new().format(*i).to_string(), MeasureType::Bigint),
        Value::UInt(u) => match i64::try_from(*u) {
            Ok(i) => (itoa::Buffer::new().format(i).to_string(), MeasureType::Bigint),
            Err(_) => {
                return Err(format!(
                    "field `{name}`: unsigned value {u} is above BIGINT's maximum {} (Timestream has no unsigned type)",
                    i64::MAX
                ))
            }
        },
        Value::Float(f) if f.is_finite() => {
            (ryu::Buffer::new().format_finite(*f).to_string(), MeasureType::Double)
        }
        Value::Float(f) => {
            return Err(format!(
                "field `{name}`: {f} is not a finite number; Timestream's DOUBLE takes none"
            ))
        }
        Value::Decimal(d) => match d.parse::<f64>() {
            Ok(f) if f.is_finite() => (d.to_string(), MeasureType::Double),
            _ => {
                return Err(format!(
                    "field `{name}`: decimal `{d}` is not a finite DOUBLE"
                ))
            }
        },
        Value::String(s) => (s.to_string(), MeasureType::Varchar),
        Value::Time(ns) => (itoa::Buffer::new().format(*ns).to_string(), MeasureType::Bigint),
    };
    Ok(Measure {
        name: name.clone(),
        value,
        kind,
    })
}

/// How points become records: the sink's settings that every record shares.
#[derive(Clone, Debug)]
pub struct Encoder {
    /// The one table of single-table mode; `None`: each measurement is a table.
    pub single_table: Option<String>,
    /// The dimension that carries the measurement in single-table mode.
    pub measurement_dimension: Name,
    /// Every record's `MeasureName`.
    pub measure_name: String,
    /// The records' time unit.
    pub time_unit: TimeUnit,
    /// The oldest a point may be, in nanoseconds before now (the memory-store retention).
    pub retention_ns: i64,
}

impl Encoder {
    /// The table `point` goes to.
    pub fn table<'a>(&'a self, point: &'a Point) -> &'a str {
        self.single_table.as_deref().unwrap_or(&point.measurement)
    }

    /// The record for `point`, or why Timestream would refuse it. `now_ns` is the writer's
    /// clock (the future and retention bounds are relative to it).
    pub fn encode(&self, point: &Point, now_ns: i64, version: i64) -> Result<TsRecord, String> {
        let unit = self.time_unit.nanos();
        if point.time % unit != 0 {
            return Err(format!(
                "time {} is finer than the sink's time_unit `{}`",
                crate::model::format_time(point.time),
                self.time_unit.as_str()
            ));
        }
        let ahead = limits::MAX_FUTURE.as_nanos() as i64;
        if point.time > now_ns.saturating_add(ahead) {
            return Err(format!(
                "time {} is more than 15 minutes ahead of now ({}); Timestream refuses it",
                crate::model::format_time(point.time),
                crate::model::format_time(now_ns)
            ));
        }
        if point.time < now_ns.saturating_sub(self.retention_ns) {
            return Err(format!(
                "time {} is older than the memory store's retention ({} before now); Timestream refuses it (raise sink.memory_retention)",
                crate::model::format_time(point.time),
                humantime::format_duration(std::time::Duration::from_nanos(self.retention_ns as u64))
            ));
        }

        let mut dimensions: Vec<(Name, Text)> = Vec::with_capacity(point.tags.len() + 1);
        if self.single_table.is_some() {
            dimensions.push((
                self.measurement_dimension.clone(),
                point.measurement.clone(),
            ));
        }
        dimensions.extend(point.tags.iter().cloned());
        if dimensions.len() < limits::MIN_DIMENSIONS {
            return Err(
                "no dimension: Timestream needs at least one per record (give the mapping a tag or device_field)"
                    .into(),
            );
        }
        if dimensions.len() > limits::MAX_DIMENSIONS {
            return Err(format!(
                "{} dimensions; Timestream takes at most {}",
                dimensions.len(),
                limits::MAX_DIMENSIONS
            ));
        }
        let mut bytes = 8 + self.measure_name.len();
        for (name, value) in &dimensions {
            limits::check_dimension_name(name)?;
            if value.len() > limits::MAX_DIMENSION_VALUE_BYTES {
                return Err(format!(
                    "dimension `{name}`: value of {} bytes; Timestream takes at most {}",
                    value.len(),
                    limits::MAX_DIMENSION_VALUE_BYTES
                ));
            }
            bytes += name.len() + value.len();
        }

        if point.fields.len() > limits::MAX_MEASURES {
            return Err(format!(
                "{} measures; Timestream takes at most {} per record",
                point.fields.len(),
                limits::MAX_MEASURES
            ));
        }
        let mut measures = Vec::with_capacity(point.fields.len());
        let mut value_bytes = 0;
        for (name, value) in &point.fields {
            limits::check_measure_name("measure name", name)?;
            let m = measure(name, value)?;
            value_bytes += m.value.len();
            bytes += name.len() + m.value.len();
            measures.push(m);
        }
        if measures.is_empty() {
            return Err("no measure: the point has no field".into());
        }
        if value_bytes > limits::MAX_MEASURE_VALUE_BYTES {
            return Err(format!(
                "measure values of {value_bytes} bytes; Timestream takes at most {} per record",
                limits::MAX_MEASURE_VALUE_BYTES
            ));
        }
        if bytes > limits::MAX_RECORD_BYTES {
            return Err(format!(
                "record of {bytes} bytes; Timestream takes at most {} (2 KB)",
                limits::MAX_RECORD_BYTES
            ));
        }
        Ok(TsRecord {
            dimensions,
            measures,
            time: point.time / unit,
            time_ns: point.time,
            version,
        })
    }
}

/// A record as JSON, for the dead-letter file: everything that would have been sent.
pub fn record_json(table: &str, record: &TsRecord) -> serde_json::Value {
    let dimensions = crate::model::tags_json(&record.dimensions);
    let measures: serde_json::Map<String, serde_json::Value> = record
        .measures
        .iter()
        .map(|m| {
            (
                m.name.to_string(),
                serde_json::json!({"value": m.value, "type": m.kind.as_str()}),
            )
        })
        .collect();
    serde_json::json!({
        "table": table,
        "dimensions": dimensions,
        "measures": measures,
        "time": crate::model::format_time(record.time_ns),
        "version": record.version,
    })
}

/// The writer's clock in nanoseconds since the Unix epoch.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The last version handed out in this process.
static LAST_VERSION: AtomicI64 = AtomicI64::new(0);

/// A record version: microseconds of the wall clock, and always above the previous one in
/// this process. A point written again — a retry after a restart, a CDC update — gets a
/// higher version than before, so Timestream updates it instead of rejecting the rewrite;
/// a retry of the same request resends the same version, which Timestream takes as the
/// same write.
pub fn next_version() -> i64 {
    let now = now_ns() / 1_000;
    let prev = LAST_VERSION
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |prev| {
            Some(now.max(prev + 1))
        })
        .unwrap_or(0);
    now.max(prev + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z
    const MINUTE: i64 = 60_000_000_000;

    fn encoder() -> Encoder {
        Encoder {
            single_table: None,
            measurement_dimension: "measurement".into(),
            measure_name: "metrics".into(),
            time_unit: TimeUnit::Millis,
            retention_ns: 6 * 60 * MINUTE,
        }
    }

    fn point(tags: Vec<(String, String)>, fields: Vec<(String, Value)>, time: i64) -> Point {
        Point {
            measurement: "sensors".into(),
            tags: tags
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            fields: fields.into_iter().map(|(k, v)| (k.into(), v)).collect(),
            time,
            device_hash: 0,
        }
    }

    fn simple(fields: Vec<(String, Value)>) -> Point {
        point(vec![("device".into(), "d1".into())], fields, NOW)
    }

    fn encode(p: &Point) -> Result<TsRecord, String> {
        encoder().encode(p, NOW, 7)
    }

    #[test]
    fn a_point_becomes_one_multi_measure_record() {
        let p = point(
            vec![("device".into(), "d1".into()), ("site".into(), "s".into())],
            vec![
                ("ok".into(), Value::Bool(true)),
                ("n".into(), Value::Int(-3)),
                ("u".into(), Value::UInt(i64::MAX as u64)),
                ("f".into(), Value::Float(1.5)),
                ("d".into(), Value::Decimal("1000.10".into())),
                ("s".into(), Value::String("hi".into())),
                ("t".into(), Value::Time(NOW + 123)),
            ],
            NOW + 5_000_000,
        );
        let r = encode(&p).unwrap();
        assert_eq!(
            r.dimensions,
            vec![("device".into(), "d1".into()), ("site".into(), "s".into())]
        );
        let measures: Vec<(&str, &str, &str)> = r
            .measures
            .iter()
            .map(|m| (m.name.as_str(), m.value.as_str(), m.kind.as_str()))
            .collect();
        assert_eq!(
            measures,
            vec![
                ("ok", "true", "BOOLEAN"),
                ("n", "-3", "BIGINT"),
                ("u", "9223372036854775807", "BIGINT"),
                ("f", "1.5", "DOUBLE"),
                ("d", "1000.10", "DOUBLE"),
                ("s", "hi", "VARCHAR"),
                ("t", "1767225600000000123", "BIGINT"),
            ]
        );
        assert_eq!(r.time, NOW / 1_000_000 + 5);
        assert_eq!(r.version, 7);
    }

    #[test]
    fn values_timestream_cannot_hold_are_refused_with_the_field() {
        let e = encode(&simple(vec![(
            "u".into(),
            Value::UInt(i64::MAX as u64 + 1),
        )]))
        .unwrap_err();
        assert!(
            e.contains("field `u`") && e.contains("9223372036854775808"),
            "{e}"
        );
        let e = encode(&simple(vec![("f".into(), Value::Float(f64::NAN))])).unwrap_err();
        assert!(e.contains("field `f`") && e.contains("finite"), "{e}");
    }

    #[test]
    fn single_table_mode_adds_the_measurement_as_a_dimension() {
        let mut enc = encoder();
        enc.single_table = Some("all_points".into());
        let p = simple(vec![("v".into(), Value::Int(1))]);
        assert_eq!(enc.table(&p), "all_points");
        let r = enc.encode(&p, NOW, 1).unwrap();
        assert_eq!(
            r.dimensions,
            vec![
                ("measurement".into(), "sensors".into()),
                ("device".into(), "d1".into())
            ]
        );
        assert_eq!(encoder().table(&p), "sensors");
    }

    #[test]
    fn at_least_one_dimension() {
        let p = point(vec![], vec![("v".into(), Value::Int(1))], NOW);
        let e = encode(&p).unwrap_err();
        assert!(e.contains("no dimension"), "{e}");
    }

    #[test]
    fn dimension_name_60_bytes_pass_61_fail() {
        let ok = point(
            vec![("a".repeat(60), "v".into())],
            vec![("v".into(), Value::Int(1))],
            NOW,
        );
        assert!(encode(&ok).is_ok());
        let bad = point(
            vec![("a".repeat(61), "v".into())],
            vec![("v".into(), Value::Int(1))],
            NOW,
        );
        let e = encode(&bad).unwrap_err();
        assert!(e.contains("is 61 bytes") && e.contains("1 to 60"), "{e}");
    }

    #[test]
    fn dimensions_128_pass_129_fail() {
        let tags = |n: usize| (0..n).map(|i| (format!("t{i}"), "v".to_string())).collect();
        assert!(encode(&point(tags(128), vec![("v".into(), Value::Int(1))], NOW)).is_ok());
        let e = encode(&point(tags(129), vec![("v".into(), Value::Int(1))], NOW)).unwrap_err();
        assert_eq!(e, "129 dimensions; Timestream takes at most 128");
    }

    #[test]
    fn measures_256_pass_257_fail() {
        let fields = |n: usize| {
            (0..n)
                .map(|i| (format!("f{i}"), Value::Bool(true)))
                .collect::<Vec<_>>()
        };
        let ok = encode(&simple(fields(256))).unwrap();
        assert_eq!(ok.measures.len(), 256);
        let e = encode(&simple(fields(257))).unwrap_err();
        assert_eq!(e, "257 measures; Timestream takes at most 256 per record");
    }

    #[test]
    fn names_256_bytes_pass_257_fail() {
        let ok = simple(vec![("m".repeat(256), Value::Int(1))]);
        assert!(encode(&ok).is_ok());
        let e = encode(&simple(vec![("m".repeat(257), Value::Int(1))])).unwrap_err();
        assert!(
            e.contains("measure name") && e.contains("is 257 bytes"),
            "{e}"
        );
        assert!(limits::check_resource_name("table", &"t".repeat(256)).is_ok());
        let e = limits::check_resource_name("table", &"t".repeat(257)).unwrap_err();
        assert!(e.contains("257 bytes"), "{e}");
        assert!(limits::check_measure_name("measure_name", &"n".repeat(256)).is_ok());
        assert!(limits::check_measure_name("measure_name", &"n".repeat(257)).is_err());
        let e = limits::check_resource_name("table", "a b").unwrap_err();
        assert!(e.contains("has ` `"), "{e}");
    }

    #[test]
    fn measure_values_2048_bytes_pass_the_value_limit_2049_fail() {
        // 2048 bytes of value pass the measure-value limit; such a record is then over 2 KB
        // as a whole, which is the next limit and says so.
        let at = encode(&simple(vec![(
            "s".into(),
            Value::String("x".repeat(2048).into()),
        )]))
        .unwrap_err();
        assert!(at.starts_with("record of"), "{at}");
        let past = encode(&simple(vec![(
            "s".into(),
            Value::String("x".repeat(2049).into()),
        )]))
        .unwrap_err();
        assert_eq!(
            past,
            "measure values of 2049 bytes; Timestream takes at most 2048 per record"
        );
    }

    #[test]
    fn record_2048_bytes_pass_2049_fail() {
        // 8 (time) + 7 ("metrics") + 6 + 2 ("device", "d1") + 1 ("s") = 24 bytes around the value.
        let fixed = 8 + 7 + 6 + 2 + 1;
        let ok = encode(&simple(vec![(
            "s".into(),
            Value::String("x".repeat(2048 - fixed).into()),
        )]));
        assert!(ok.is_ok(), "{ok:?}");
        let e = encode(&simple(vec![(
            "s".into(),
            Value::String("x".repeat(2049 - fixed).into()),
        )]))
        .unwrap_err();
        assert_eq!(
            e,
            "record of 2049 bytes; Timestream takes at most 2048 (2 KB)"
        );
    }

    #[test]
    fn times_15_minutes_ahead_pass_one_ms_more_fails_and_retention_bounds_the_past() {
        let at = |t| {
            point(
                vec![("d".into(), "1".into())],
                vec![("v".into(), Value::Int(1))],
                t,
            )
        };
        assert!(encode(&at(NOW + 15 * MINUTE)).is_ok());
        let e = encode(&at(NOW + 15 * MINUTE + 1_000_000)).unwrap_err();
        assert!(e.contains("more than 15 minutes ahead"), "{e}");
        assert!(encode(&at(NOW - 6 * 60 * MINUTE)).is_ok());
        let e = encode(&at(NOW - 6 * 60 * MINUTE - 1_000_000)).unwrap_err();
        assert!(
            e.contains("older than the memory store's retention (6h"),
            "{e}"
        );
        let e = encode(&at(NOW + 1)).unwrap_err();
        assert!(e.contains("finer than the sink's time_unit `ms`"), "{e}");
    }

    #[test]
    fn versions_only_grow() {
        let a = next_version();
        let b = next_version();
        assert!(b > a);
        assert!(a >= now_ns() / 1_000 - 60_000_000, "seeded from the clock");
    }
}
