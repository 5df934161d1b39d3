//! Line protocol read as InfluxDB 2 reads it, refusing what it refuses with its words.
//!
//! The rules and messages are those of InfluxDB 2's parser, `models/points.go`
//! (influxdata/influxdb, branch main-2.x): `ParsePointsWithPrecision` reads every line and
//! names each one it cannot read as `unable to parse '<line>': <reason>`; `parsePoint`
//! needs a measurement ("missing measurement") and fields ("missing fields");
//! `scanTagsKey`/`scanTagsValue` refuse an empty tag key or value ("missing tag key",
//! "missing tag value") and a `=` in a tag value ("invalid tag format"), `scanKey` repeated
//! tag keys ("duplicate tags"); `scanFields`
//! refuses "missing field key", "missing field value", "unbalanced quotes", "invalid field
//! format"; `scanNumber` refuses NaN and anything not a number ("invalid number"), an
//! integer out of range ("unable to parse integer ..."), a float out of range ("invalid
//! float"); a value that is no number, string or boolean is read as a boolean and refused
//! ("invalid boolean": `Inf`, `inf`); `scanTime` refuses a timestamp that is not an integer
//! ("bad timestamp"), `SafeCalcTime` one outside InfluxDB's range. A line without a
//! timestamp takes the server's clock. Empty lines and `#` comments are skipped.

use super::{FieldValue, Line};

/// InfluxDB's range of times: `models.MinNanoTime` and `models.MaxNanoTime`.
const MIN_NANO_TIME: i64 = i64::MIN + 2;
const MAX_NANO_TIME: i64 = i64::MAX - 1;

/// One line (without its newline and leading whitespace) with timestamps in `unit` ns;
/// `now` (ns) is the time of a line without one.
pub fn parse(line: &str, unit: i64, now: i64) -> Result<Line, String> {
    let (key, rest) = split_key(line)?;
    let (measurement, tags) = parse_key(key)?;
    let (fields, time) = split_fields(rest)?;
    let fields = parse_fields(fields)?;
    let time = match time.trim_start() {
        "" => now,
        text => parse_time(text, unit)?,
    };
    Ok(((measurement, tags), time, fields))
}

/// The series key (measurement and tags) and what follows it.
fn split_key(line: &str) -> Result<(&str, &str), String> {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b' ' => return Ok((&line[..i], &line[i + 1..])),
            _ => i += 1,
        }
    }
    if line.is_empty() {
        return Err("missing measurement".into());
    }
    Err("missing fields".into())
}

fn parse_key(key: &str) -> Result<(String, Vec<(String, String)>), String> {
    let mut parts = split_unescaped(key, b',').into_iter();
    let measurement = parts.next().unwrap_or_default();
    if measurement.is_empty() {
        return Err("missing measurement".into());
    }
    let mut tags = Vec::new();
    for tag in parts {
        if tag.is_empty() || tag.starts_with('=') {
            return Err("missing tag key".into());
        }
        let Some(at) = find_unescaped(tag, b'=') else {
            return Err("missing tag value".into());
        };
        let value = &tag[at + 1..];
        if value.is_empty() {
            return Err("missing tag value".into());
        }
        if find_unescaped(value, b'=').is_some() {
            return Err("invalid tag format".into());
        }
        tags.push((unescape(&tag[..at], ",= "), unescape(value, ",= ")));
    }
    tags.sort();
    if tags.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err("duplicate tags".into());
    }
    Ok((unescape(measurement, ", "), tags))
}

/// The fields (up to the first space outside a string value) and the rest (the time).
fn split_fields(rest: &str) -> Result<(&str, &str), String> {
    let rest = rest.trim_start_matches(' ');
    let bytes = rest.as_bytes();
    let (mut i, mut quoted, mut equals, mut commas) = (0, false, 0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if i + 1 < bytes.len() => {
                i += 2;
                continue;
            }
            b'"' if equals > commas => quoted = !quoted,
            b'=' if !quoted => {
                equals += 1;
                if i == 0 || bytes[i - 1] == b',' {
                    return Err("missing field key".into());
                }
                if i + 1 >= bytes.len() || matches!(bytes[i + 1], b',' | b' ') {
                    return Err("missing field value".into());
                }
            }
            b',' if !quoted => commas += 1,
            b' ' if !quoted => break,
            _ => {}
        }
        i += 1;
    }
    if quoted {
        return Err("unbalanced quotes".into());
    }
    if equals == 0 || commas != equals - 1 {
        if rest.is_empty() {
            return Err("missing fields".into());
        }
        return Err("invalid field format".into());
    }
    Ok((&rest[..i], rest.get(i + 1..).unwrap_or("")))
}

fn parse_fields(fields: &str) -> Result<Vec<(String, FieldValue)>, String> {
    let mut parsed = Vec::new();
    for field in split_fields_at_commas(fields) {
        let at = find_unescaped(field, b'=').ok_or("invalid field format")?;
        let value = parse_value(&field[at + 1..])?;
        parsed.push((unescape(&field[..at], ",= "), value));
    }
    Ok(parsed)
}

fn parse_value(v: &str) -> Result<FieldValue, String> {
    if let Some(text) = v.strip_prefix('"') {
        let text = text.strip_suffix('"').ok_or("unbalanced quotes")?;
        return Ok(FieldValue::Text(unescape(text, "\"\\")));
    }
    let first = v.as_bytes()[0];
    if first.is_ascii_digit() || matches!(first, b'.' | b'-' | b'N' | b'n') {
        return parse_number(v);
    }
    match v {
        "t" | "T" | "true" | "True" | "TRUE" => Ok(FieldValue::Bool(true)),
        "f" | "F" | "false" | "False" | "FALSE" => Ok(FieldValue::Bool(false)),
        _ => Err("invalid boolean".into()),
    }
}

/// `scanNumber` and the parse that follows it: `-?digits[.digits][e[+-]digits]`, `i` for
/// an integer, `u` for an unsigned one; NaN and Inf are no numbers.
fn parse_number(v: &str) -> Result<FieldValue, String> {
    let invalid = || "invalid number".to_string();
    let (body, suffix) = match v.as_bytes()[v.len() - 1] {
        b'i' => (&v[..v.len() - 1], Some('i')),
        b'u' => (&v[..v.len() - 1], Some('u')),
        _ => (v, None),
    };
    let digits = body.strip_prefix('-').unwrap_or(body);
    let (mantissa, exponent) = match digits.find(['e', 'E']) {
        Some(at) if at > 0 => (&digits[..at], Some(&digits[at + 1..])),
        _ => (digits, None),
    };
    let mantissa_ok = !mantissa.is_empty()
        && mantissa.bytes().filter(|b| *b == b'.').count() <= 1
        && mantissa.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && mantissa.bytes().any(|b| b.is_ascii_digit());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
    });
    if !mantissa_ok || !exponent_ok {
        return Err(invalid());
    }
    let integral = !mantissa.contains('.') && exponent.is_none();
    match suffix {
        Some('i') if integral => body.parse::<i64>().map(FieldValue::Int).map_err(|_| {
            format!("unable to parse integer {body}: strconv.ParseInt: parsing \"{body}\": value out of range")
        }),
        Some('u') if integral && !body.starts_with('-') => {
            body.parse::<u64>().map(FieldValue::UInt).map_err(|_| {
                format!("unable to parse unsigned {body}: strconv.ParseUint: parsing \"{body}\": value out of range")
            })
        }
        Some(_) => Err(invalid()),
        None => match body.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(FieldValue::Float(f)),
            _ => Err("invalid float".into()),
        },
    }
}

fn parse_time(text: &str, unit: i64) -> Result<i64, String> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("bad timestamp".into());
    }
    let ts: i64 = text
        .parse()
        .map_err(|_| format!("strconv.ParseInt: parsing \"{text}\": value out of range"))?;
    ts.checked_mul(unit)
        .filter(|t| (MIN_NANO_TIME..=MAX_NANO_TIME).contains(t))
        .ok_or_else(|| format!("time outside range {MIN_NANO_TIME} - {MAX_NANO_TIME}"))
}

/// Where the first `c` without a backslash before it is.
fn find_unescaped(s: &str, c: u8) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b if b == c => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// `s` cut at each `separator` without a backslash before it; the parts keep their escapes.
fn split_unescaped(s: &str, separator: u8) -> Vec<&str> {
    let bytes = s.as_bytes();
    let (mut parts, mut start, mut i) = (Vec::new(), 0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b if b == separator => {
                parts.push(&s[start..i]);
                start = i + 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    parts.push(&s[start.min(s.len())..]);
    parts
}

/// The fields cut at commas outside string values.
fn split_fields_at_commas(s: &str) -> Vec<&str> {
    let bytes = s.as_bytes();
    let (mut parts, mut start, mut i, mut quoted) = (Vec::new(), 0, 0, false);
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                i += 2;
                continue;
            }
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    parts.push(&s[start.min(s.len())..]);
    parts
}

/// `s` without the backslashes before the characters in `special` (any other backslash is
/// a backslash, as in InfluxDB).
fn unescape(s: &str, special: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(&next) = chars.peek() {
                if special.contains(next) {
                    out.push(next);
                    chars.next();
                    continue;
                }
            }
        }
        out.push(c);
    }
    out
}
