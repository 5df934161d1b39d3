//! Points → InfluxDB line protocol, written straight into a buffer. A format, not a
//! connector: every sink that writes it shares this one encoder and its batch,
//! [`LineBatch`] (the InfluxDB sink's request bodies, the file sink's appends); the ingest
//! source reads it with InfluxData's own parser.
//!
//! Escaping follows InfluxDB: in a measurement `,` and space take a backslash; in tag keys,
//! tag values and field keys `,`, `=` and space do; string field values escape `"` and
//! `\`. Floats are written as Go's `strconv.FormatFloat(f, 'g', -1, 64)` writes them (the
//! shortest text that reads back to the same number), so output matches InfluxData's own
//! encoder byte for byte; integers take `i`, unsigned integers `u` (InfluxDB 2) or `i`
//! (1.x, which has no unsigned type). What line protocol cannot carry — an empty tag value,
//! a newline in a name, a trailing backslash, NaN, a time finer than the precision — is
//! refused with the reason, never written wrongly.

use crate::job::TimeUnit;
use crate::model::{format_time, Point, Value};
use crate::sink::Batch;
use std::sync::Arc;

/// How points are written: timestamp precision and the dialect of the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    /// Unit of the written timestamps.
    pub precision: TimeUnit,
    /// Whether the target has unsigned integers (InfluxDB 2); 1.x gets `i` when they fit.
    pub unsigned: bool,
}

/// Lines of line protocol for one write (an HTTP request body, an append to a file), one
/// point a line, encoded straight into one buffer; with [`LineBatch::with_times`] also each
/// line's point time.
///
/// The body is shared with the write ([`LineBatch::shared_body`]) rather than copied into
/// it; once the write is done the batch is the only owner again, and the buffer is reused
/// for the next one.
pub struct LineBatch {
    encoding: Encoding,
    body: Arc<Vec<u8>>,
    /// Offset just past each line's newline.
    ends: Vec<usize>,
    /// Each line's point time, ns, when the sink asked for them.
    times: Option<Vec<i64>>,
}

/// How large a sink's request bodies grow, learned from those it wrote, so that its next
/// batches start with room for that much. A body that grows while it fills is copied each
/// time and may end with half its memory unused: with lines longer than guessed, every
/// batch of a backfill into InfluxDB held twice the memory its lines needed.
#[derive(Debug, Default)]
pub struct BodySize(std::sync::atomic::AtomicUsize);

impl BodySize {
    /// Notes a body of `bytes` bytes that was written.
    pub fn saw(&self, bytes: usize) {
        self.0
            .fetch_max(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// Room for a new body of up to `points` lines: the largest body written so far and a
    /// sixteenth more, or 128 bytes a line before any was written.
    pub fn room(&self, points: usize) -> usize {
        match self.0.load(std::sync::atomic::Ordering::Relaxed) {
            0 => points.min(100_000) * 128,
            seen => seen + seen / 16,
        }
    }
}

/// A [`LineBatch`]'s body, borrowed by a write without copying (an HTTP request's body
/// through `Bytes::from_owner`, a file append on a blocking thread).
pub struct SharedBody(Arc<Vec<u8>>);

impl AsRef<[u8]> for SharedBody {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl LineBatch {
    /// An empty batch of lines written with `encoding`, with room for about `capacity`
    /// points.
    pub fn new(encoding: Encoding, capacity: usize) -> Self {
        let capacity = capacity.min(100_000);
        Self {
            encoding,
            body: Arc::new(Vec::with_capacity(capacity * 96)),
            ends: Vec::with_capacity(capacity),
            times: None,
        }
    }

    /// An empty batch with room for `points` lines in `bytes` bytes (see [`BodySize`]).
    pub fn sized(encoding: Encoding, points: usize, bytes: usize) -> Self {
        let points = points.min(100_000);
        Self {
            encoding,
            body: Arc::new(Vec::with_capacity(bytes)),
            ends: Vec::with_capacity(points),
            times: None,
        }
    }

    /// An empty batch that also keeps each line's point time ([`LineBatch::first_time`]).
    pub fn with_times(encoding: Encoding, capacity: usize) -> Self {
        Self {
            times: Some(Vec::with_capacity(capacity.min(100_000))),
            ..Self::new(encoding, capacity)
        }
    }

    /// The earliest point time in the batch, ns; `None` when empty or not keeping times.
    pub fn first_time(&self) -> Option<i64> {
        self.times.iter().flatten().copied().min()
    }

    /// The lines, each with its newline.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The body for a write to borrow. Nothing is pushed or cut while it is out.
    pub fn shared_body(&self) -> SharedBody {
        SharedBody(self.body.clone())
    }

    fn body_mut(&mut self) -> &mut Vec<u8> {
        // Unique except while a write is out, when nothing is pushed or cut.
        Arc::make_mut(&mut self.body)
    }
}

impl Batch for LineBatch {
    fn push(&mut self, point: &Point) -> Result<(), String> {
        let encoding = self.encoding;
        let body = self.body_mut();
        encode_point(body, point, encoding)?;
        let end = body.len();
        self.ends.push(end);
        if let Some(times) = &mut self.times {
            times.push(point.time);
        }
        Ok(())
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn bytes(&self) -> usize {
        self.body.len()
    }

    fn split(mut self) -> Option<(Self, Self)> {
        if self.ends.len() < 2 {
            return None;
        }
        let half = self.ends.len() / 2;
        let cut = self.ends[half - 1];
        let right = LineBatch {
            encoding: self.encoding,
            body: Arc::new(self.body[cut..].to_vec()),
            ends: self.ends[half..].iter().map(|e| e - cut).collect(),
            times: self.times.as_mut().map(|times| times.split_off(half)),
        };
        self.body_mut().truncate(cut);
        self.ends.truncate(half);
        Some((self, right))
    }

    fn records(&self) -> Vec<serde_json::Value> {
        let mut start = 0;
        self.ends
            .iter()
            .map(|&end| {
                let line = String::from_utf8_lossy(&self.body[start..end - 1]).into_owned();
                start = end;
                serde_json::Value::String(line)
            })
            .collect()
    }

    fn clear(&mut self) {
        self.body_mut().clear();
        self.ends.clear();
        if let Some(times) = &mut self.times {
            times.clear();
        }
    }
}

/// Appends `point` as one line (with its newline) to `out`. On error `out` is unchanged.
pub fn encode_point(out: &mut Vec<u8>, point: &Point, enc: Encoding) -> Result<(), String> {
    let start = out.len();
    let result = write_point(out, point, enc);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn write_point(out: &mut Vec<u8>, point: &Point, enc: Encoding) -> Result<(), String> {
    if point.measurement.is_empty() {
        return Err("the measurement name is empty".into());
    }
    write_name(out, &point.measurement, IN_MEASUREMENT, "measurement")?;
    for (key, value) in &point.tags {
        if key.is_empty() {
            return Err("a tag key is empty".into());
        }
        if value.is_empty() {
            return Err(format!(
                "invalid tag value {key}=\"\": tag values cannot be empty"
            ));
        }
        out.push(b',');
        write_name(out, key, IN_KEY, "tag key")?;
        out.push(b'=');
        write_name(out, value, IN_KEY, "tag value")?;
    }
    if point.fields.is_empty() {
        return Err("a point needs at least one field".into());
    }
    for (i, (key, value)) in point.fields.iter().enumerate() {
        if key.is_empty() {
            return Err("a field key is empty".into());
        }
        out.push(if i == 0 { b' ' } else { b',' });
        write_name(out, key, IN_KEY, "field key")?;
        out.push(b'=');
        write_value(out, key, value, enc)?;
    }
    // Divided by each unit as a constant: a division by a unit read at run time costs
    // tens of cycles, twice a point.
    let (whole, rest) = match enc.precision {
        TimeUnit::Seconds => (point.time / 1_000_000_000, point.time % 1_000_000_000),
        TimeUnit::Millis => (point.time / 1_000_000, point.time % 1_000_000),
        TimeUnit::Micros => (point.time / 1_000, point.time % 1_000),
        TimeUnit::Nanos => (point.time, 0),
    };
    if rest != 0 {
        return Err(format!(
            "time {} is finer than the sink's precision ({}); set precision to a finer unit",
            format_time(point.time),
            enc.precision.as_str()
        ));
    }
    out.push(b' ');
    put(out, itoa::Buffer::new().format(whole).as_bytes());
    out.push(b'\n');
    Ok(())
}

/// Appends `bytes` to `out`. The texts of a line are short (names, numbers), and a copy of
/// a length known only at run time is a call to `memcpy` each; up to 16 bytes it is done
/// here as two overlapping fixed-size copies instead.
#[inline(always)]
fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    let n = bytes.len();
    if n < 4 {
        for &b in bytes {
            out.push(b);
        }
        return;
    }
    if n > 16 {
        out.extend_from_slice(bytes);
        return;
    }
    out.reserve(16);
    let len = out.len();
    // SAFETY: `reserve` left at least 16 bytes of room after `len`, and 4 <= n <= 16: each
    // copy reads within `bytes` and writes within that room; together they cover
    // `bytes[..n]`, which is written to `out[len..len + n]` before the length counts it.
    unsafe {
        let src = bytes.as_ptr();
        let dst = out.as_mut_ptr().add(len);
        if n >= 8 {
            std::ptr::copy_nonoverlapping(src, dst, 8);
            std::ptr::copy_nonoverlapping(src.add(n - 8), dst.add(n - 8), 8);
        } else {
            std::ptr::copy_nonoverlapping(src, dst, 4);
            std::ptr::copy_nonoverlapping(src.add(n - 4), dst.add(n - 4), 4);
        }
        out.set_len(len + n);
    }
}

/// Byte classes for escaping, looked up once per byte.
const IN_MEASUREMENT: u8 = 1; // `,` and space take a backslash in a measurement
const IN_KEY: u8 = 2; // `,`, `=` and space take one in tag keys, tag values, field keys
const LINE_BREAK: u8 = 4; // cannot be carried at all

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b',' as usize] = IN_MEASUREMENT | IN_KEY;
    t[b' ' as usize] = IN_MEASUREMENT | IN_KEY;
    t[b'=' as usize] = IN_KEY;
    t[b'\n' as usize] = LINE_BREAK;
    t[b'\r' as usize] = LINE_BREAK;
    t
};

/// Writes a measurement (`escape` = [`IN_MEASUREMENT`]) or a tag or field key or tag value
/// ([`IN_KEY`]), escaping as needed; one pass over the bytes in the usual case. Inlined
/// into each of its four calls (each with its own `escape`), with everything but that pass
/// and the copy in [`write_name_escaped`]: a call apiece was a fifth of a line's time.
#[inline(always)]
fn write_name(out: &mut Vec<u8>, name: &str, escape: u8, what: &str) -> Result<(), String> {
    let bytes = name.as_bytes();
    let classes = bytes.iter().fold(0, |acc, &b| acc | CLASS[b as usize]);
    if classes == 0 && bytes.last() != Some(&b'\\') {
        put(out, bytes);
        return Ok(());
    }
    write_name_escaped(out, name, classes, escape, what)
}

/// [`write_name`] for a name with a byte to escape or refuse; `classes` are its bytes'
/// classes together.
#[cold]
#[inline(never)]
fn write_name_escaped(
    out: &mut Vec<u8>,
    name: &str,
    classes: u8,
    escape: u8,
    what: &str,
) -> Result<(), String> {
    let bytes = name.as_bytes();
    if classes & LINE_BREAK != 0 {
        return Err(format!(
            "{what} {name:?} contains a line break, which line protocol cannot carry"
        ));
    }
    if bytes.last() == Some(&b'\\') {
        return Err(format!(
            "{what} {name:?} ends with a backslash, which line protocol cannot carry"
        ));
    }
    if classes & escape == 0 {
        put(out, bytes);
        return Ok(());
    }
    for &b in bytes {
        if CLASS[b as usize] & escape != 0 {
            out.push(b'\\');
        }
        out.push(b);
    }
    Ok(())
}

fn write_value(out: &mut Vec<u8>, key: &str, value: &Value, enc: Encoding) -> Result<(), String> {
    match value {
        Value::Float(f) => {
            if !f.is_finite() {
                return Err(format!("field {key} is {f}, which InfluxDB cannot store"));
            }
            write_float(out, *f);
        }
        Value::Decimal(d) => {
            // Line protocol reads a number without a suffix as a float: the exact text
            // needs no conversion. Anything else in it would corrupt the line.
            if d.is_empty()
                || !d
                    .bytes()
                    .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'+' | b'e' | b'E'))
            {
                return Err(format!("field {key} is {d:?}, not a number"));
            }
            put(out, d.as_bytes());
        }
        Value::Int(i) => {
            put(out, itoa::Buffer::new().format(*i).as_bytes());
            out.push(b'i');
        }
        Value::UInt(u) if enc.unsigned => {
            out.extend_from_slice(itoa::Buffer::new().format(*u).as_bytes());
            out.push(b'u');
        }
        Value::UInt(u) => {
            if *u > i64::MAX as u64 {
                return Err(format!(
                    "field {key} is {u}, beyond InfluxDB 1.x's signed 64-bit integers"
                ));
            }
            out.extend_from_slice(itoa::Buffer::new().format(*u).as_bytes());
            out.push(b'i');
        }
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::String(s) => write_string(out, s),
        Value::Time(ns) => write_string(out, &format_time(*ns)),
    }
    Ok(())
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for &b in s.as_bytes() {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// Writes `f` as Go's `strconv.FormatFloat(f, 'g', -1, 64)`: shortest round-trip digits,
/// exponent form when the decimal exponent is below -4 or at least 6.
pub fn write_float(out: &mut Vec<u8>, f: f64) {
    if f == 0.0 {
        out.extend_from_slice(if f.is_sign_negative() { b"-0" } else { b"0" });
        return;
    }
    // zmij writes ryu's digits (and `e+` where ryu writes `e`, which is parsed below).
    let mut buffer = zmij::Buffer::new();
    let text = buffer.format_finite(f);
    // Between 1e-4 and 1e6 Go writes what ryu writes, less a trailing ".0".
    let magnitude = f.abs();
    // (A byte loop: `contains('e')` is a call to memchr for a few bytes.)
    if (1e-4..1e6).contains(&magnitude) && !text.bytes().any(|b| b == b'e') {
        put(out, text.strip_suffix(".0").unwrap_or(text).as_bytes());
        return;
    }
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exp10) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (text, 0),
    };
    // Digits without the point, and where the point goes (digits before it).
    let mut digits = [0u8; 40];
    let mut n = 0;
    let mut point = None;
    for &b in mantissa.as_bytes() {
        if b == b'.' {
            point = Some(n);
        } else {
            digits[n] = b;
            n += 1;
        }
    }
    let mut dp = point.unwrap_or(n) as i32 + exp10;
    let mut first = 0;
    while first < n && digits[first] == b'0' {
        first += 1;
        dp -= 1;
    }
    while n > first && digits[n - 1] == b'0' {
        n -= 1;
    }
    let digits = &digits[first..n];
    if negative {
        out.push(b'-');
    }
    let exp = dp - 1;
    if !(-4..6).contains(&exp) {
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        out.push(if exp < 0 { b'-' } else { b'+' });
        let e = exp.unsigned_abs();
        if e < 10 {
            out.push(b'0');
        }
        out.extend_from_slice(itoa::Buffer::new().format(e).as_bytes());
    } else if dp <= 0 {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', (-dp) as usize));
        out.extend_from_slice(digits);
    } else if dp as usize >= digits.len() {
        out.extend_from_slice(digits);
        out.extend(std::iter::repeat_n(b'0', dp as usize - digits.len()));
    } else {
        out.extend_from_slice(&digits[..dp as usize]);
        out.push(b'.');
        out.extend_from_slice(&digits[dp as usize..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Name, Text};

    fn float(f: f64) -> String {
        let mut out = Vec::new();
        write_float(&mut out, f);
        String::from_utf8(out).unwrap()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]
        /// zmij (which writes floats now) gives ryu's text for every float, but for the
        /// `+` of a positive exponent: the texts the sinks and `Value::from_f32` write are
        /// unchanged.
        #[test]
        fn zmij_writes_what_ryu_wrote(bits: u64, small: u32) {
            let f = f64::from_bits(bits);
            if f.is_finite() {
                let ryu = ryu::Buffer::new().format_finite(f).to_string();
                let zmij = zmij::Buffer::new().format_finite(f).replace("e+", "e");
                proptest::prop_assert_eq!(ryu, zmij);
            }
            let g = f32::from_bits(small);
            if g.is_finite() {
                let ryu = ryu::Buffer::new().format_finite(g).to_string();
                let zmij = zmij::Buffer::new().format_finite(g).replace("e+", "e");
                proptest::prop_assert_eq!(ryu, zmij);
            }
        }
    }

    /// `put` appends exactly the bytes given, for every length around its cases (0-3, 4-7,
    /// 8-16, longer) and whatever the buffer held or had room for.
    #[test]
    fn put_appends_exactly_the_bytes() {
        let text: Vec<u8> = (0..40u8).map(|i| b'a' + i % 26).collect();
        for n in 0..=40 {
            for before in [0, 3, 17] {
                for room in [0, 1, 16, 64] {
                    let mut out = Vec::with_capacity(before + room);
                    out.extend(std::iter::repeat_n(b'-', before));
                    put(&mut out, &text[..n]);
                    let mut expected = vec![b'-'; before];
                    expected.extend_from_slice(&text[..n]);
                    assert_eq!(out, expected, "{n} bytes after {before}, room {room}");
                }
            }
        }
    }

    #[test]
    fn a_new_body_has_room_for_the_largest_written() {
        let size = BodySize::default();
        assert_eq!(
            size.room(5_000),
            640_000,
            "128 bytes a line before any write"
        );
        size.saw(550_000);
        size.saw(120_000);
        assert_eq!(size.room(5_000), 550_000 + 34_375);
        let batch = LineBatch::sized(V1_MS, 5_000, size.room(5_000));
        assert!(batch.body().is_empty() && Arc::strong_count(&batch.body) == 1);
        assert!(batch.body.capacity() >= 584_375);
    }

    #[test]
    fn floats_read_as_go_writes_them() {
        for (f, text) in [
            (1.0, "1"),
            (42.0, "42"),
            (-0.64, "-0.64"),
            (12.123, "12.123"),
            (6632243.0, "6.632243e+06"),
            (999999.0, "999999"),
            (1e6, "1e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (123456.789, "123456.789"),
            (0.1 + 0.2, "0.30000000000000004"),
            (-0.0, "-0"),
            (1e21, "1e+21"),
            (100.0, "100"),
        ] {
            assert_eq!(float(f), text, "{f:e}");
            assert_eq!(float(f).parse::<f64>().unwrap().to_bits(), f.to_bits());
        }
    }

    fn point(tags: &[(&str, &str)], fields: Vec<(&str, Value)>, time: i64) -> Point {
        let name = |s: &str| -> Name { Name::from(s) };
        Point {
            measurement: name("m"),
            tags: tags
                .iter()
                .map(|(k, v)| (name(k), Text::from(*v)))
                .collect(),
            fields: fields.into_iter().map(|(k, v)| (name(k), v)).collect(),
            time,
            device_hash: 0,
        }
    }

    fn line(p: &Point, enc: Encoding) -> Result<String, String> {
        let mut out = b"keep".to_vec();
        let r = encode_point(&mut out, p, enc);
        match r {
            Ok(()) => Ok(String::from_utf8(out[4..].to_vec()).unwrap()),
            Err(e) => {
                assert_eq!(out, b"keep", "a refused point leaves the buffer as it was");
                Err(e)
            }
        }
    }

    const V1_MS: Encoding = Encoding {
        precision: TimeUnit::Millis,
        unsigned: false,
    };
    const V2_NS: Encoding = Encoding {
        precision: TimeUnit::Nanos,
        unsigned: true,
    };

    #[test]
    fn typed_fields_and_precision() {
        let p = point(
            &[("d", "a b"), ("s", "x,y=z")],
            vec![
                ("i", Value::Int(-3)),
                ("u", Value::UInt(7)),
                ("b", Value::Bool(true)),
                ("s", Value::String("say \"hi\" \\o/".into())),
                ("d", Value::Decimal("-1000.10".into())),
            ],
            1_500_000_000,
        );
        assert_eq!(
            line(&p, V1_MS).unwrap(),
            "m,d=a\\ b,s=x\\,y\\=z i=-3i,u=7i,b=true,s=\"say \\\"hi\\\" \\\\o/\",d=-1000.10 1500\n"
        );
        assert!(line(&p, V2_NS).unwrap().contains("u=7u"));
    }

    // Names (measurement, tag keys and values, field keys) of plain and special bytes —
    // `,`, space and `=`, which take a backslash where line protocol says — read back by
    // InfluxData's parser (the one the file sink and ingest endpoint use) as they were
    // written: the one-pass fast path and the escaping path agree on every name.
    #[cfg(any(feature = "file", feature = "ingest"))]
    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2_000))]
        #[test]
        fn names_read_back_as_they_were_written(
            names in proptest::collection::vec("[ab, =é-]{1,6}", 5),
        ) {
            let p = Point {
                measurement: Name::from(names[0].as_str()),
                tags: vec![(Name::from(names[1].as_str()), Text::from(names[2].as_str()))],
                fields: vec![
                    (Name::from(names[3].as_str()), Value::Int(1)),
                    (Name::from(names[4].as_str()), Value::Float(2.5)),
                ],
                time: 7_000_000,
                device_hash: 0,
            };
            let text = line(&p, V1_MS).unwrap();
            let parsed: Vec<_> = influxdb_line_protocol::parse_lines(text.trim_end()).collect();
            proptest::prop_assert_eq!(parsed.len(), 1, "{}", text);
            let read = parsed[0].as_ref().map_err(|e| format!("{e}: {text}")).unwrap();
            proptest::prop_assert_eq!(read.series.measurement.to_string(), names[0].clone());
            let tags: Vec<(String, String)> = read
                .series
                .tag_set
                .iter()
                .flatten()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            proptest::prop_assert_eq!(tags, vec![(names[1].clone(), names[2].clone())]);
            let keys: Vec<String> = read.field_set.iter().map(|(k, _)| k.to_string()).collect();
            proptest::prop_assert_eq!(keys, vec![names[3].clone(), names[4].clone()]);
            proptest::prop_assert_eq!(read.timestamp, Some(7));
        }
    }

    #[test]
    fn what_line_protocol_cannot_carry_is_refused() {
        let refused = [
            (
                point(&[("t", "")], vec![("f", Value::Int(1))], 0),
                "cannot be empty",
            ),
            (
                point(&[("t", "a\nb")], vec![("f", Value::Int(1))], 0),
                "line break",
            ),
            (
                point(&[("t", "a\\")], vec![("f", Value::Int(1))], 0),
                "backslash",
            ),
            (
                point(&[], vec![("f", Value::Float(f64::NAN))], 0),
                "cannot store",
            ),
            (
                point(&[], vec![("f", Value::UInt(u64::MAX))], 0),
                "signed 64-bit",
            ),
            (
                point(&[], vec![("f", Value::Int(1))], 1_500_000_001),
                "finer than",
            ),
            (point(&[], vec![], 0), "at least one field"),
        ];
        for (p, reason) in refused {
            let err = line(&p, V1_MS).unwrap_err();
            assert!(err.contains(reason), "{err}");
        }
        let big = point(&[], vec![("f", Value::UInt(u64::MAX))], 0);
        assert_eq!(line(&big, V2_NS).unwrap(), "m f=18446744073709551615u 0\n");
    }

    #[test]
    fn a_batch_splits_into_halves_at_line_boundaries() {
        let mut b = LineBatch::new(
            Encoding {
                precision: TimeUnit::Nanos,
                unsigned: false,
            },
            0,
        );
        for t in 0..5 {
            b.push(&point(&[], vec![("f", Value::Int(t))], t)).unwrap();
        }
        assert_eq!(b.first_time(), None, "times are kept only when asked for");
        let (left, right) = b.split().unwrap();
        assert_eq!(left.records(), vec!["m f=0i 0", "m f=1i 1"]);
        assert_eq!(right.records(), vec!["m f=2i 2", "m f=3i 3", "m f=4i 4"]);
        assert_eq!(right.body(), &b"m f=2i 2\nm f=3i 3\nm f=4i 4\n"[..]);
        let (one, _) = left.split().unwrap();
        assert!(one.split().is_none());
    }

    #[test]
    fn a_batch_with_times_knows_its_earliest_and_splits_them_with_the_lines() {
        let mut batch = LineBatch::with_times(V1_MS, 10);
        for (time, text) in [(30, "x"), (10, "y"), (20, "z")] {
            let p = point(
                &[("d", "a b")],
                vec![("s", Value::String(text.into()))],
                time * 1_000_000,
            );
            batch.push(&p).unwrap();
        }
        assert_eq!(batch.first_time(), Some(10_000_000));
        assert_eq!(
            String::from_utf8(batch.body().to_vec()).unwrap(),
            "m,d=a\\ b s=\"x\" 30\nm,d=a\\ b s=\"y\" 10\nm,d=a\\ b s=\"z\" 20\n"
        );
        let (left, right) = batch.split().unwrap();
        assert_eq!(left.records(), vec!["m,d=a\\ b s=\"x\" 30"]);
        assert_eq!(left.first_time(), Some(30_000_000));
        assert_eq!(right.len(), 2);
        assert_eq!(right.first_time(), Some(10_000_000));
        assert!(right.body().starts_with(b"m,d=a\\ b s=\"y\""));
    }

    #[test]
    fn a_cleared_batch_reuses_its_buffer_once_the_write_is_done() {
        let mut batch = LineBatch::with_times(V1_MS, 10);
        batch
            .push(&point(&[], vec![("f", Value::Int(1))], 5_000_000))
            .unwrap();
        let written = batch.shared_body();
        let buffer = written.as_ref().as_ptr();
        drop(written);
        batch.clear();
        assert_eq!(
            (batch.len(), batch.bytes(), batch.first_time()),
            (0, 0, None)
        );
        batch
            .push(&point(&[], vec![("f", Value::Int(2))], 7_000_000))
            .unwrap();
        assert_eq!(batch.body().as_ptr(), buffer, "the same buffer, not a copy");
        assert_eq!(batch.records(), vec!["m f=2i 7"]);
        assert_eq!(batch.first_time(), Some(7_000_000));
    }
}
