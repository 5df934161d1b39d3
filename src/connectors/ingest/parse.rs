//! Line protocol → [`Point`]s: the one parsing path of the ingest endpoint.
//!
//! [`parse_body`] is pure (bytes in, points and rejected lines out) so the conformance
//! test runs InfluxData's corpus through exactly what the server runs. Each line is parsed
//! by the `influxdb-line-protocol` crate (InfluxData's own Rust parser) — or, when it has
//! the common plain shape, read by [`plain`] exactly as the crate would read it, at a
//! fraction of the cost; around it this module adds what a write endpoint needs and the
//! crate leaves out:
//!
//! - line numbers: the body is cut into lines here (the crate's `split_lines` rule, on
//!   bytes, so a newline inside a quoted string field does not end a line) and each
//!   rejection names the 1-based line the bad line starts on;
//! - bytes that are not UTF-8 reject their line only, not the whole body;
//! - timestamps scaled by the request's precision (an overflow rejects the line rather
//!   than wrapping), and the server's time for a line without one;
//! - the checks the crate does not make and InfluxDB does: duplicate tag keys, duplicate
//!   field keys, infinite floats, NUL bytes in names and tag values
//!   ([`explain::nul_byte`]);
//! - a reason a writer can act on when a field value or timestamp is wrong
//!   ([`explain::bad_value`]) instead of the crate's "No fields were provided";
//! - the tag set sorted by key and the series' `device_hash`, so the exchange routes every
//!   point of a series to one worker.
//!
//! A bad line never poisons the request: the good lines become points, each bad line a
//! [`RejectedLine`] with its reason.
//!
//! [`parse_body_counted`] also reports the memory the points and rejected lines take as
//! it makes them, so the endpoint can count them in its memory budget.

use super::explain;
use super::plain::{self, Plain};
use crate::model::{Name, Point, Text, Value};
use influxdb_line_protocol::FieldValue;

/// The unit of the timestamps in a write request (`precision=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// Nanoseconds: v1 `n`/`ns`, v2 `ns`.
    Nanos,
    /// Microseconds: v1 `u`/`us`, v2 `us`.
    Micros,
    /// Milliseconds: `ms`.
    Millis,
    /// Seconds: `s`.
    Seconds,
    /// Minutes: v1 `m` only.
    Minutes,
    /// Hours: v1 `h` only.
    Hours,
}

impl Precision {
    /// Nanoseconds in one unit.
    pub fn nanos(self) -> i64 {
        match self {
            Precision::Nanos => 1,
            Precision::Micros => 1_000,
            Precision::Millis => 1_000_000,
            Precision::Seconds => 1_000_000_000,
            Precision::Minutes => 60_000_000_000,
            Precision::Hours => 3_600_000_000_000,
        }
    }

    /// A `precision=` of the v1 API (`/write`): `n u ms s m h` as InfluxDB 1.x documents
    /// them, and the spellings `ns`/`us` that 1.x clients send too.
    pub fn from_v1(name: &str) -> Option<Self> {
        Some(match name {
            "n" | "ns" => Precision::Nanos,
            "u" | "us" => Precision::Micros,
            "ms" => Precision::Millis,
            "s" => Precision::Seconds,
            "m" => Precision::Minutes,
            "h" => Precision::Hours,
            _ => return None,
        })
    }

    /// A `precision=` of the v2 API (`/api/v2/write`): `ns us ms s`.
    pub fn from_v2(name: &str) -> Option<Self> {
        Some(match name {
            "ns" => Precision::Nanos,
            "us" => Precision::Micros,
            "ms" => Precision::Millis,
            "s" => Precision::Seconds,
            _ => return None,
        })
    }

    /// The name InfluxDB 1.x gives the unit.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Nanos => "ns",
            Precision::Micros => "us",
            Precision::Millis => "ms",
            Precision::Seconds => "s",
            Precision::Minutes => "m",
            Precision::Hours => "h",
        }
    }
}

impl<'de> serde::Deserialize<'de> for Precision {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Precision::from_v1(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{text}` is not a precision; one of ns, us, ms, s, m, h"
            ))
        })
    }
}

/// A line the endpoint refused, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedLine {
    /// 1-based number of the (first) physical line it occupies in the body.
    pub line: usize,
    /// The line as sent (invalid UTF-8 shown as U+FFFD).
    pub text: String,
    /// Why it was refused.
    pub reason: String,
}

/// What a request body held.
#[derive(Debug, Default)]
pub struct Parsed {
    /// The valid lines' points, in body order.
    pub points: Vec<Point>,
    /// The invalid lines, in body order.
    pub rejected: Vec<RejectedLine>,
}

/// Parses a line-protocol body. `default_time` (ns) is the time of lines without a
/// timestamp: the server reads its clock once per request, so such lines of one request
/// share it, as InfluxDB does.
pub fn parse_body(body: &[u8], precision: Precision, default_time: i64) -> Parsed {
    parse_body_checked(body, precision, default_time, &|_| Ok(()))
}

/// [`parse_body`], and a point `check` refuses (a limit of the job's sink) is a rejected
/// line too, with the reason: the client hears of it, as of any line the job cannot write.
pub fn parse_body_checked(
    body: &[u8],
    precision: Precision,
    default_time: i64,
    check: &dyn Fn(&Point) -> Result<(), String>,
) -> Parsed {
    parse_body_counted(body, precision, default_time, check, &mut |_| {})
}

/// The parsed output is reported in steps of at least this many bytes (one atomic
/// operation per step, not per point).
const COUNT_STEP: usize = 64 * 1024;

/// [`parse_body_checked`], calling `counted(bytes)` for the memory the points and rejected
/// lines take as they are made ([`point_bytes`]), in steps.
pub fn parse_body_counted(
    body: &[u8],
    precision: Precision,
    default_time: i64,
    check: &dyn Fn(&Point) -> Result<(), String>,
    counted: &mut dyn FnMut(usize),
) -> Parsed {
    parse(body, precision, default_time, check, counted, true)
}

/// [`parse_body_counted`] with every line through the crate, none read as a plain line
/// ([`plain`]): for the fuzz target that checks the two paths agree. Not an API.
#[doc(hidden)]
pub fn parse_body_by_the_crate(
    body: &[u8],
    precision: Precision,
    default_time: i64,
    check: &dyn Fn(&Point) -> Result<(), String>,
) -> Parsed {
    parse(body, precision, default_time, check, &mut |_| {}, false)
}

fn parse(
    body: &[u8],
    precision: Precision,
    default_time: i64,
    check: &dyn Fn(&Point) -> Result<(), String>,
    counted: &mut dyn FnMut(usize),
    plain_lines: bool,
) -> Parsed {
    // InfluxDB truncates the server's time to the request's precision, so a line without
    // a timestamp lands where one with a timestamp of that precision could.
    let default_time = default_time - default_time.rem_euclid(precision.nanos());
    // Room for a point a line, grown at most once; bounded by the text (a body of blank
    // lines reserves little), well inside the room the endpoint's budget made for them.
    let lines = memchr::memchr_iter(b'\n', body).count() + 1;
    let mut parsed = Parsed {
        points: Vec::with_capacity(lines.min(body.len() / 32)),
        rejected: Vec::new(),
    };
    let mut line_number = 1;
    let mut unpaid = 0usize;
    let (mut points_seen, mut rejected_seen) = (0, 0);
    let mut plain = Plain::default();
    for (chunk, one_line) in split_lines(body) {
        for point in &parsed.points[points_seen..] {
            unpaid += point_bytes(point);
        }
        for rejected in &parsed.rejected[rejected_seen..] {
            unpaid += rejected_bytes(rejected);
        }
        (points_seen, rejected_seen) = (parsed.points.len(), parsed.rejected.len());
        if unpaid >= COUNT_STEP {
            counted(unpaid);
            unpaid = 0;
        }
        let first_line = line_number;
        line_number += 1 + if one_line {
            0
        } else {
            memchr::memchr_iter(b'\n', chunk).count()
        };
        let text = match std::str::from_utf8(chunk) {
            Ok(text) => text,
            Err(e) => {
                parsed.rejected.push(RejectedLine {
                    line: first_line,
                    text: String::from_utf8_lossy(chunk).into_owned(),
                    reason: format!("not valid UTF-8 (at byte {})", e.valid_up_to() + 1),
                });
                continue;
            }
        };
        // Trailing spaces and a `\r` (a CRLF line end) are not part of the line, as in
        // InfluxDB; the crate would call them trailing content.
        let text = text.trim_end_matches([' ', '\r']);
        let reject = |parsed: &mut Parsed, reason: String| {
            parsed.rejected.push(RejectedLine {
                line: first_line,
                text: text.to_string(),
                reason,
            })
        };
        // A plain line holds no NUL and no control character: the checks below pass it.
        if plain_lines && plain::read(text, &mut plain) {
            let tags = plain.tags.iter().copied();
            let fields = plain.fields.iter().map(|(k, v)| (*k, v));
            match to_point(
                plain.measurement,
                tags,
                fields,
                plain.timestamp,
                precision,
                default_time,
            )
            .and_then(|point| check(&point).map(|()| point))
            {
                Ok(point) => parsed.points.push(point),
                Err(reason) => reject(&mut parsed, reason),
            }
            continue;
        }
        if let Some(reason) = explain::nul_byte(text) {
            reject(&mut parsed, reason);
            continue;
        }
        // The crate skips a leading tab as blank; InfluxDB refuses it, and any other
        // control character, at the start of a measurement.
        if let Some(c) = text.trim_start_matches(' ').chars().next() {
            if c.is_ascii_control() {
                reject(
                    &mut parsed,
                    format!("invalid character {c:?} at the start of the measurement"),
                );
                continue;
            }
        }
        // Blank lines and comments yield nothing; a chunk is one line, so at most one.
        for result in influxdb_line_protocol::parse_lines(text) {
            match result
                .map_err(|e| explain::bad_value(text, &e).unwrap_or_else(|| e.to_string()))
                .and_then(|line| {
                    let tags = line.series.tag_set.as_deref().unwrap_or_default().iter();
                    to_point(
                        line.series.measurement.as_str(),
                        tags.map(|(k, v)| (k.as_str(), v.as_str())),
                        line.field_set.iter().map(|(k, v)| (k.as_str(), v)),
                        line.timestamp,
                        precision,
                        default_time,
                    )
                })
                .and_then(|point| check(&point).map(|()| point))
            {
                Ok(point) => parsed.points.push(point),
                Err(reason) => reject(&mut parsed, reason),
            }
        }
    }
    for point in &parsed.points[points_seen..] {
        unpaid += point_bytes(point);
    }
    for rejected in &parsed.rejected[rejected_seen..] {
        unpaid += rejected_bytes(rejected);
    }
    if unpaid > 0 {
        counted(unpaid);
    }
    parsed
}

/// About the memory a point takes: the struct, its tag and field vectors and the text they
/// hold outside them (a name or text of up to 24 bytes is stored inline).
pub fn point_bytes(point: &Point) -> usize {
    use std::mem::size_of;
    let name = |n: &Name| if n.is_heap_allocated() { n.len() } else { 0 };
    let tags: usize = point.tags.iter().map(|(k, v)| name(k) + name(v)).sum();
    let fields: usize = point
        .fields
        .iter()
        .map(|(k, v)| {
            name(k)
                + match v {
                    Value::String(s) => name(s),
                    _ => 0,
                }
        })
        .sum();
    size_of::<Point>()
        + name(&point.measurement)
        + point.tags.capacity() * size_of::<(Name, Text)>()
        + tags
        + point.fields.capacity() * size_of::<(Name, Value)>()
        + fields
}

/// About the memory a rejected line takes.
fn rejected_bytes(rejected: &RejectedLine) -> usize {
    std::mem::size_of::<RejectedLine>() + rejected.text.capacity() + rejected.reason.capacity()
}

/// Cuts a body into lines where a newline is not inside a quoted string field value and
/// not escaped. This is the `influxdb-line-protocol` crate's `split_lines` (a port of the
/// Go reference's `scanLine`) on bytes: every byte it looks at is ASCII, and no byte of a
/// multi-byte UTF-8 character is, so the cuts are the same, and a line that is not UTF-8
/// is cut out whole and rejected alone. A line with neither a quote nor a backslash before
/// its newline ends there whatever the rule says, so only the others are scanned by it.
/// Each line comes with whether it is known to hold no newline (else it may span several).
fn split_lines(body: &[u8]) -> impl Iterator<Item = (&[u8], bool)> {
    let mut rest = Some(body);
    std::iter::from_fn(move || {
        let text = rest?;
        let (end, one_line) = match memchr::memchr3(b'\n', b'"', b'\\', text) {
            Some(at) if text[at] == b'\n' => (Some(at), true),
            Some(_) => (line_end(text), false),
            None => (None, true),
        };
        Some(match end {
            Some(at) => {
                rest = Some(&text[at + 1..]);
                (&text[..at], one_line)
            }
            None => {
                rest = None;
                (text, one_line)
            }
        })
    })
}

/// Where the line starting at `text` ends: its first newline outside a quoted string field
/// value and not escaped (the crate's rule, see [`split_lines`]).
fn line_end(text: &[u8]) -> Option<usize> {
    let mut quoted = false;
    let mut fields = false;
    // '=' and ',' seen in the fields part: a quote opens a string only in a field value.
    let mut equals = 0usize;
    let mut commas = 0usize;
    let mut in_escape = false;
    text.iter().position(|&b| {
        if in_escape {
            in_escape = false;
            return false;
        }
        match b {
            b'\\' => in_escape = true,
            b' ' => fields = true,
            b'=' if fields && !quoted => equals += 1,
            b',' if fields && !quoted => commas += 1,
            b'"' if fields && equals > commas => quoted = !quoted,
            b'\n' if !quoted => return true,
            _ => {}
        }
        false
    })
}

/// The point of one line, from its parts as parsed (tags as sent, fields in order), with
/// the checks the crate does not make.
fn to_point<'t, 'v: 't>(
    measurement: &str,
    tags: impl ExactSizeIterator<Item = (&'t str, &'t str)>,
    fields: impl ExactSizeIterator<Item = (&'t str, &'t FieldValue<'v>)>,
    timestamp: Option<i64>,
    precision: Precision,
    default_time: i64,
) -> Result<Point, String> {
    // Names with control characters cannot be queried back; InfluxDB refuses them (tag
    // values may hold any character but NUL, refused before: `explain::nul_byte`; string
    // fields any). A control character is ASCII, so a byte of a longer character never is.
    let control = |what: &str, name: &str| match name.bytes().find(u8::is_ascii_control) {
        Some(b) => Err(format!(
            "{what} `{name}` holds the control character {:?}",
            char::from(b)
        )),
        None => Ok(()),
    };
    control("measurement", measurement)?;
    let measurement = Name::from(measurement);

    let mut sorted: Vec<(Name, Text)> = Vec::with_capacity(tags.len());
    for (key, value) in tags {
        control("tag key", key)?;
        sorted.push((Name::from(key), Text::from(value)));
    }
    let mut tags = sorted;
    // Tag keys mostly differ in their first byte: compared there first (no memcmp call).
    let by_key = |a: &(Name, Text), b: &(Name, Text)| {
        let (a, b) = (a.0.as_bytes(), b.0.as_bytes());
        a.first().cmp(&b.first()).then_with(|| a.cmp(b))
    };
    if !tags.is_sorted_by(|a, b| by_key(a, b).is_le()) {
        tags.sort_by(by_key);
    }
    if let Some(pair) = tags.windows(2).find(|w| by_key(&w[0], &w[1]).is_eq()) {
        return Err(format!("duplicate tag key `{}`", pair[0].0));
    }
    // InfluxDB has no empty tag values: an empty value is an absent tag.
    tags.retain(|(_, v)| !v.is_empty());

    let mut point_fields: Vec<(Name, Value)> = Vec::with_capacity(fields.len());
    for (key, value) in fields {
        control("field key", key)?;
        let key = Name::from(key);
        if point_fields
            .iter()
            .any(|(k, _)| k.len() == key.len() && *k == key)
        {
            return Err(format!("duplicate field key `{key}`"));
        }
        let value = match value {
            FieldValue::I64(v) => Value::Int(*v),
            FieldValue::U64(v) => Value::UInt(*v),
            FieldValue::F64(v) if v.is_finite() => Value::Float(*v),
            FieldValue::F64(_) => return Err(format!("field `{key}`: the float is out of range")),
            FieldValue::String(v) => Value::String(v.as_str().into()),
            FieldValue::Boolean(v) => Value::Bool(*v),
        };
        point_fields.push((key, value));
    }

    let time = match timestamp {
        None => default_time,
        Some(t) => t.checked_mul(precision.nanos()).ok_or_else(|| {
            format!(
                "timestamp {t} with precision {} is out of range",
                precision.as_str()
            )
        })?,
    };

    let device_hash = crate::model::series_hash(&measurement, &tags);
    Ok(Point {
        measurement,
        tags,
        fields: point_fields,
        time,
        device_hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_numbered_and_bad_ones_rejected_alone() {
        let body =
            b"m,b=2,a=1 f=1i 10\n\n# comment\nm f= 11\nm s=\"two\nlines\" 12\nbad\nm u=3u,x=T";
        let p = parse_body(body, Precision::Seconds, 5_500_000_000);
        assert_eq!(p.points.len(), 3);
        assert_eq!(
            p.points[0].tags,
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        assert_eq!(p.points[0].fields, vec![("f".into(), Value::Int(1))]);
        assert_eq!(p.points[0].time, 10_000_000_000);
        assert_eq!(
            p.points[1].fields,
            vec![("s".into(), Value::String("two\nlines".into()))]
        );
        assert_eq!(p.points[1].time, 12_000_000_000);
        assert_eq!(
            p.points[2].fields,
            vec![
                ("u".into(), Value::UInt(3)),
                ("x".into(), Value::Bool(true))
            ]
        );
        assert_eq!(
            p.points[2].time, 5_000_000_000,
            "no timestamp: the server's time, truncated to the precision"
        );
        let lines: Vec<usize> = p.rejected.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![4, 7]);
        assert_eq!(p.rejected[0].text, "m f= 11");
        assert_eq!(p.rejected[1].text, "bad");
    }

    #[test]
    fn invalid_utf8_rejects_its_line_only() {
        let p = parse_body(b"m f=1 1\nm,t=\xff f=2 2\nm f=3 3\n", Precision::Nanos, 0);
        assert_eq!(p.points.iter().map(|p| p.time).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(p.rejected.len(), 1);
        assert_eq!(p.rejected[0].line, 2);
        assert!(p.rejected[0].reason.contains("UTF-8"), "{:?}", p.rejected);
    }

    #[test]
    fn duplicates_overflow_and_series_hash() {
        let p = parse_body(
            b"m,a=1,a=2 f=1 1\nm f=1,f=2 1\nm f=1 9223372036854775807\nm f=1e999 1",
            Precision::Millis,
            0,
        );
        assert!(p.points.is_empty());
        let reasons: Vec<&str> = p.rejected.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(reasons[0], "duplicate tag key `a`");
        assert_eq!(reasons[1], "duplicate field key `f`");
        assert!(reasons[2].contains("out of range"), "{reasons:?}");
        assert!(reasons[3].contains("out of range"), "{reasons:?}");

        // One series, one hash, whatever the tag order; another series, another hash.
        let p = parse_body(
            b"m,a=1,b=2 f=1 1\nm,b=2,a=1 g=2 2\nm,a=1 f=1 3",
            Precision::Nanos,
            0,
        );
        assert_eq!(p.points[0].device_hash, p.points[1].device_hash);
        assert_ne!(p.points[0].device_hash, p.points[2].device_hash);
    }

    #[test]
    fn parsed_output_is_counted_as_it_is_made() {
        let line = "cpu,cpu=cpu0,host=web1 usage_user=12.5,usage_system=3.25 1\nbad\n";
        let body = line.repeat(2000);
        let mut steps = Vec::new();
        let parsed = parse_body_counted(
            body.as_bytes(),
            Precision::Nanos,
            0,
            &|_| Ok(()),
            &mut |n| steps.push(n),
        );
        let expected: usize = parsed.points.iter().map(point_bytes).sum::<usize>()
            + parsed.rejected.iter().map(rejected_bytes).sum::<usize>();
        assert_eq!(steps.iter().sum::<usize>(), expected);
        assert!(steps.len() > 1 && steps[..steps.len() - 1].iter().all(|n| *n >= COUNT_STEP));
        assert!(
            expected > 3 * body.len(),
            "points take more than their text: {expected} for {} bytes",
            body.len()
        );
    }

    #[test]
    fn nul_bytes_and_bad_values_get_their_own_reasons() {
        let p = parse_body(
            b"m,host=we\0b v=1 1\nm temp=abc 2\nm s=\"a\0b\" 3",
            Precision::Nanos,
            0,
        );
        let reasons: Vec<&str> = p.rejected.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                r#"tag "host" value "we\0b": NUL bytes are not allowed in measurements, tag keys, tag values or field keys"#,
                r#"field "temp": "abc" is not a number (floats: 1.5, integers: 1i, unsigned: 1u, strings in double quotes, booleans: t/true/f/false)"#,
            ]
        );
        assert_eq!(
            p.points[0].fields,
            vec![("s".into(), Value::String("a\0b".into()))],
            "a NUL in a string value is data"
        );
    }

    #[test]
    fn plain_lines_come_out_as_the_crate_reads_them() {
        let body = "sensors,site=b,device=d1 t=21.5,h=40i,u=3u,ok=true 1767225600000000000\n\
                    m v=1\n\
                    m,a=1,a=2 v=1 1\n\
                    m v=1,v=2 1\n\
                    m,t=x v=1,w=-0.25,x=F 9223372036854775807\n\
                    m v=1 -9223372036854775808\n\
                    m v=1.5 99999999999999999999\n\
                    m v=1e3,w=\"s\" 5\n\
                    m\\ x,t=a\\,b v=1 5\n\
                    refused v=1 5\n\
                    m v=99999999999999999999i 5\n\
                    m,t= v=1 5\r\n\
                    m v=1 5   \n";
        let check = |p: &Point| match p.measurement.as_str() {
            "refused" => Err("the sink refuses it".to_string()),
            _ => Ok(()),
        };
        // In seconds three timestamps overflow.
        for (precision, points) in [(Precision::Nanos, 7), (Precision::Seconds, 4)] {
            let ours = parse_body_checked(body.as_bytes(), precision, 7, &check);
            let crate_only = parse_body_by_the_crate(body.as_bytes(), precision, 7, &check);
            assert_eq!(ours.points, crate_only.points);
            assert_eq!(ours.rejected, crate_only.rejected);
            assert_eq!(ours.points.len(), points, "{:?}", ours.rejected);
        }
    }

    #[test]
    fn lines_end_at_newlines_outside_strings_and_escapes() {
        let cut = |body: &str| -> Vec<String> {
            split_lines(body.as_bytes())
                .map(|(l, _)| String::from_utf8_lossy(l).into_owned())
                .collect()
        };
        assert_eq!(cut(""), [""]);
        assert_eq!(cut("a\n"), ["a", ""]);
        assert_eq!(cut("a\nb"), ["a", "b"]);
        assert_eq!(cut("m s=\"x\ny\" 1\nm v=1"), ["m s=\"x\ny\" 1", "m v=1"]);
        assert_eq!(cut("m\\\nx v=1\nn v=2"), ["m\\\nx v=1", "n v=2"]);
        // A quote in a tag value opens no string.
        assert_eq!(cut("m,t=\" v=1\nn v=2"), ["m,t=\" v=1", "n v=2"]);
    }

    #[test]
    fn precisions_by_api() {
        assert_eq!(Precision::from_v1("n"), Some(Precision::Nanos));
        assert_eq!(Precision::from_v1("h"), Some(Precision::Hours));
        assert_eq!(Precision::from_v2("h"), None);
        assert_eq!(Precision::from_v2("u"), None);
        assert_eq!(Precision::from_v1("sec"), None);
    }
}
