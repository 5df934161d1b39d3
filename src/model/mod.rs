//! What flows through a job: source [`Row`]s, typed [`Value`]s and target [`Point`]s.
//!
//! A source emits rows (values in the order of the columns the job reads), the mapping
//! turns each row into a point, and the sinks write points. Names that repeat on every
//! point (measurement, tag and field keys) are [`Name`]s: shared, so a point costs no
//! allocation for them.

mod series;

pub use series::{series_hash, series_key, Series};

use serde::{Deserialize, Serialize};
use std::fmt;

/// A name repeated on many points: a measurement, a tag key or a field key. Short names
/// (up to 24 bytes) are stored inline, so copying one onto every point costs neither an
/// allocation nor an atomic reference count shared between worker threads.
pub type Name = compact_str::CompactString;

/// Text carried by a row or a point: a string value, a tag value. Up to 24 bytes (device
/// ids, sites, states) it is stored inline: a row costs no allocation per such value, and
/// the worker that writes the point frees none that another thread made.
pub type Text = compact_str::CompactString;

/// One typed value, as read from a source or written as a field.
///
/// Values are totally ordered and hashable (floats by their bits, in IEEE total order), so
/// points can be the data of a differential collection: CDC consolidates changes by them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Value {
    /// A signed integer (TINYINT..BIGINT).
    Int(i64),
    /// An unsigned integer (the UNSIGNED integer types).
    UInt(u64),
    /// A floating-point number (DOUBLE).
    Float(f64),
    /// A number kept as its exact decimal text, e.g. `1000.10` (DECIMAL, and FLOAT as MySQL
    /// shows it). Sinks store it as a float; keeping the text spares a parse and a format
    /// per value, and loses nothing on the way.
    Decimal(Name),
    /// A boolean (BIT(1), TINYINT(1)).
    Bool(bool),
    /// Text (CHAR, VARCHAR, TEXT, ENUM, SET).
    String(Text),
    /// An instant in nanoseconds since the Unix epoch, UTC (DATETIME, TIMESTAMP, DATE).
    Time(i64),
}

impl Value {
    /// The value as a float, for sinks that store numbers as floats.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Decimal(d) => d.parse().ok(),
            Value::Int(i) => Some(*i as f64),
            Value::UInt(u) => Some(*u as f64),
            _ => None,
        }
    }

    /// A single-precision float as the number its database shows, not its binary
    /// expansion: 12.3, not 12.300000190734863 (MySQL's and TDengine's FLOAT).
    pub fn from_f32(f: f32) -> Value {
        if !f.is_finite() {
            return Value::Float(f as f64);
        }
        let mut buffer = zmij::Buffer::new();
        let text = buffer.format_finite(f);
        let text = text.strip_suffix(".0").unwrap_or(text);
        // As ryu wrote it (and MySQL shows it): `1e16`, not zmij's `1e+16`. (A `char`
        // pattern: a `&str` one builds a substring searcher on every call.)
        match text.find('+') {
            None => Value::Decimal(Name::from(text)),
            Some(plus) => Value::Decimal(compact_str::format_compact!(
                "{}{}",
                &text[..plus],
                &text[plus + 1..]
            )),
        }
    }

    /// The value as it reads in a tag, in a dead letter or in an error message.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        match self {
            Value::Int(v) => out.push_str(itoa::Buffer::new().format(*v)),
            Value::UInt(v) => out.push_str(itoa::Buffer::new().format(*v)),
            Value::Float(v) => out.push_str(ryu::Buffer::new().format(*v)),
            Value::Decimal(v) => out.push_str(v),
            Value::Bool(v) => out.push_str(if *v { "true" } else { "false" }),
            Value::String(v) => out.push_str(v),
            Value::Time(ns) => {
                let _ = write!(out, "{}", format_time(*ns));
            }
        }
    }

    /// The value as JSON, for dead-letter records.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Int(v) => (*v).into(),
            Value::UInt(v) => (*v).into(),
            Value::Float(v) => serde_json::Number::from_f64(*v)
                .map(serde_json::Value::Number)
                .unwrap_or_else(|| serde_json::Value::String(v.to_string())),
            Value::Decimal(v) => match v.parse::<f64>().ok().and_then(serde_json::Number::from_f64)
            {
                Some(n) => serde_json::Value::Number(n),
                None => serde_json::Value::String(v.to_string()),
            },
            Value::Bool(v) => (*v).into(),
            Value::String(v) => v.as_str().into(),
            Value::Time(ns) => format_time(*ns).into(),
        }
    }
}

impl Value {
    /// The variant's rank and, for floats, their total-order bits: what equality, order and
    /// hashing compare before the payload.
    fn rank(&self) -> u8 {
        match self {
            Value::Int(_) => 0,
            Value::UInt(_) => 1,
            Value::Float(_) => 2,
            Value::Decimal(_) => 3,
            Value::Bool(_) => 4,
            Value::String(_) => 5,
            Value::Time(_) => 6,
        }
    }
}

/// -0.0 and 0.0 are one value (as `==` on floats says); every other float is itself.
fn zero(f: f64) -> f64 {
    if f == 0.0 {
        0.0
    } else {
        f
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for Value {}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Value {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        match (self, other) {
            (Value::Int(a), Value::Int(b)) => a.cmp(b),
            (Value::UInt(a), Value::UInt(b)) => a.cmp(b),
            (Value::Float(a), Value::Float(b)) => zero(*a).total_cmp(&zero(*b)),
            (Value::Decimal(a), Value::Decimal(b)) => a.cmp(b),
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (Value::String(a), Value::String(b)) => a.cmp(b),
            (Value::Time(a), Value::Time(b)) => a.cmp(b),
            (a, b) => a.rank().cmp(&b.rank()),
        }
    }
}

impl std::hash::Hash for Value {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u8(self.rank());
        match self {
            Value::Int(v) | Value::Time(v) => v.hash(state),
            Value::UInt(v) => v.hash(state),
            Value::Float(v) => zero(*v).to_bits().hash(state),
            Value::Decimal(v) => v.hash(state),
            Value::Bool(v) => v.hash(state),
            Value::String(v) => v.hash(state),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        self.render(&mut s);
        f.write_str(&s)
    }
}

/// RFC 3339 text of an instant in nanoseconds, UTC, with as many fraction digits as needed.
pub fn format_time(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000) as u32;
    match chrono::DateTime::from_timestamp(secs, nanos) {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
        None => format!("{ns}ns"),
    }
}

/// One source row: the values of the columns the job reads, `None` for SQL NULL.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Index of the source table (in the job file's order) the row comes from.
    pub table: u32,
    /// Column values in the order of the source's projection for that table.
    pub values: Vec<Option<Value>>,
}

/// One time-series point, ready for a sink. Ordered and hashable like [`Value`], so CDC
/// can consolidate changes of points.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Point {
    /// InfluxDB measurement; for IoTDB, the device path.
    pub measurement: Name,
    /// Tag set, sorted by key, no empty values.
    pub tags: Vec<(Name, Text)>,
    /// Field set, at least one field.
    pub fields: Vec<(Name, Value)>,
    /// Nanoseconds since the Unix epoch, UTC.
    pub time: i64,
    /// Fixed hash of the device key: the exchange routes on it, so one worker owns a device.
    pub device_hash: u64,
}

impl Point {
    /// The point's identity in the target: its series (measurement and tags) and time.
    /// Two points with the same key are one point: the later write replaces the earlier.
    pub fn key_hash(&self) -> u64 {
        series::point_hash(&self.measurement, &self.tags, self.time)
    }

    /// Asks the CPU to start loading the point's tag and field vectors, which a point that
    /// waited (for its epoch, in a channel from another thread) no longer has in cache: an
    /// operator walking a batch of points calls it a few points ahead of the one it works
    /// on, so that those loads overlap instead of each stalling in turn. A hint only:
    /// nothing is read, nothing changes, and elsewhere than on x86-64 it does nothing.
    #[inline]
    pub fn prefetch(&self) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            fn lines<T>(items: &[T]) {
                let start = items.as_ptr().cast::<i8>();
                let bytes = std::mem::size_of_val(items);
                for offset in (0..bytes).step_by(64) {
                    // SAFETY: a prefetch reads nothing and cannot fault; the address lies
                    // within `items` (`wrapping_add` would do as well).
                    unsafe { _mm_prefetch::<_MM_HINT_T0>(start.wrapping_add(offset)) };
                }
            }
            lines(&self.tags);
            lines(&self.fields);
        }
    }

    /// Whether `self` and `other` are the same point of the target (same series and time).
    pub fn same_key(&self, other: &Point) -> bool {
        self.time == other.time && self.measurement == other.measurement && self.tags == other.tags
    }

    /// The point as JSON, for dead-letter records and error messages.
    pub fn to_json(&self) -> serde_json::Value {
        let tags = tags_json(&self.tags);
        let fields: serde_json::Map<String, serde_json::Value> = self
            .fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_json()))
            .collect();
        serde_json::json!({
            "measurement": &*self.measurement,
            "tags": tags,
            "fields": fields,
            "time": format_time(self.time),
        })
    }
}

/// What a sink is asked to do with one point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Change {
    /// Write the point, replacing any point with the same series and time.
    Write(Point),
    /// Delete the point at this series and time (every field of it).
    Delete(Point),
}

impl Change {
    /// The point written or deleted.
    pub fn point(&self) -> &Point {
        match self {
            Change::Write(p) | Change::Delete(p) => p,
        }
    }
}

/// What the sink operator takes: plain points (backfill) or changes (CDC), or points of
/// a client's request that waits for them (ingest, `ack: durable`).
pub trait IntoChange {
    /// The request that waits for this point, if one does: a point the target refuses is
    /// then reported back to it (see [`Origin`]).
    fn origin(&self) -> Option<Origin> {
        None
    }
    /// As a change.
    fn into_change(self) -> Change;
    /// The point written or deleted.
    fn point(&self) -> &Point;
}

/// The request a point came in, for a client that waits until its points are durable:
/// the worker that took the request (and answers it) and the request's number there.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Origin {
    /// The worker (index across every process) that waits for the point.
    pub worker: u32,
    /// The request's number: the order the process's workers took requests in.
    pub request: u64,
}

/// A point of a request whose client waits (`origin`), or of one that does not.
impl IntoChange for (Option<Origin>, Point) {
    fn origin(&self) -> Option<Origin> {
        self.0
    }
    fn into_change(self) -> Change {
        Change::Write(self.1)
    }
    fn point(&self) -> &Point {
        &self.1
    }
}

impl IntoChange for Point {
    fn into_change(self) -> Change {
        Change::Write(self)
    }
    fn point(&self) -> &Point {
        self
    }
}

impl IntoChange for Change {
    fn into_change(self) -> Change {
        self
    }
    fn point(&self) -> &Point {
        Change::point(self)
    }
}

/// A tag set (or a set of dimensions) as a JSON object, for dead letters.
pub fn tags_json(tags: &[(Name, Text)]) -> serde_json::Map<String, serde_json::Value> {
    tags.iter()
        .map(|(k, v)| (k.to_string(), v.as_str().into()))
        .collect()
}

/// The fixed hash the exchange routes on. Never `RandomState`: every process must agree.
pub fn device_hash(device: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(device)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]
        /// A FLOAT's text is ryu's shortest digits less a trailing `.0`, exponents as ryu
        /// writes them (`1e16`): what it was before zmij wrote it.
        #[test]
        fn a_float32_reads_as_ryu_wrote_it(bits: u32) {
            let f = f32::from_bits(bits);
            let expected = match f.is_finite() {
                true => {
                    let mut buffer = ryu::Buffer::new();
                    let text = buffer.format_finite(f);
                    Value::Decimal(Name::from(text.strip_suffix(".0").unwrap_or(text)))
                }
                false => Value::Float(f as f64),
            };
            let got = Value::from_f32(f);
            // NaN is itself here (`Value`'s order compares floats by their bits).
            proptest::prop_assert_eq!(got, expected);
        }
    }

    #[test]
    fn a_float32_is_the_number_its_database_shows() {
        let text = |f: f32| Value::from_f32(f).to_string();
        assert_eq!(text(12.3), "12.3");
        assert_eq!(text(41.0), "41");
        assert_eq!(text(1e16), "1e16");
        assert_eq!(text(-2.5e-7), "-2.5e-7");
    }

    #[test]
    fn time_renders_as_rfc3339_utc() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_time(1_767_225_600_123_456_000),
            "2026-01-01T00:00:00.123456Z"
        );
        assert_eq!(format_time(-1), "1969-12-31T23:59:59.999999999Z");
    }

    #[test]
    fn values_are_totally_ordered_for_consolidation() {
        assert_eq!(Value::Float(-0.0), Value::Float(0.0));
        assert_eq!(Value::Float(f64::NAN), Value::Float(f64::NAN));
        assert!(Value::Float(1.0) < Value::Float(2.0));
        assert_ne!(Value::Int(1), Value::UInt(1));
        assert_ne!(Value::Float(1.0), Value::Decimal("1".into()));
        let hash = |v: &Value| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            v.hash(&mut h);
            h.finish()
        };
        assert_eq!(hash(&Value::Float(-0.0)), hash(&Value::Float(0.0)));
    }

    #[test]
    fn a_prefetch_changes_nothing() {
        let empty = Point {
            measurement: "m".into(),
            tags: vec![],
            fields: vec![],
            time: 0,
            device_hash: 0,
        };
        let full = Point {
            tags: vec![("site".into(), "north".into())],
            fields: (0..9)
                .map(|i| (Name::from(format!("f{i}")), Value::Int(i)))
                .collect(),
            ..empty.clone()
        };
        for point in [&empty, &full] {
            let before = point.clone();
            point.prefetch();
            assert_eq!(*point, before);
        }
    }

    #[test]
    fn device_hash_is_stable_across_runs() {
        // A changed hash would reroute devices between workers of one cluster.
        assert_eq!(device_hash(b"dev-0001"), device_hash(b"dev-0001"));
        assert_ne!(device_hash(b"dev-0001"), device_hash(b"dev-0002"));
        assert_eq!(device_hash(b""), 0x2d06800538d394c2);
    }
}
