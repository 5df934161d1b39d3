//! Plain lines: the shape nearly every writer sends, read without the general parser.
//!
//! InfluxData's parser (nom combinators, an error value built for every alternative a
//! field value is tried against) costs more than a microsecond a line, as much as the
//! rest of the endpoint together. Telegraf, client libraries and sensors send lines of
//! one shape: printable ASCII names without escapes or quotes, numbers and booleans as
//! values, an optional integer timestamp, one space between the parts. [`read`] reads
//! exactly that shape in one pass over the bytes and gives up (`false`) at the first
//! byte outside it; the caller then runs the line through the crate as before. So the
//! crate still decides every line that is not plain, and every rejection.
//!
//! On a plain line the result is, by construction, the crate's: each part below is a
//! subset of the crate's grammar for it, and a value is converted by the same `parse`
//! call on the same text (see the comments on [`value`]). The fuzz target
//! `line_protocol` (tests/fuzzing/) checks that the two agree on every body it runs.
//!
//! ```text
//!  line      = measurement ("," name "=" name)* " " field ("," field)* (" " timestamp)?
//!  field     = name "=" value
//!  name      = 1*(%x21-7E except , = " \)      ; a measurement not starting with #
//!  value     = -?DIGITS "i" | DIGITS "u" | -?DIGITS ("." DIGITS)? | t|T|true|True|TRUE|f|F|false|False|FALSE
//!  timestamp = -?DIGITS                        ; fits in an i64
//! ```

use influxdb_line_protocol::FieldValue;

/// The parts of a plain line, borrowed from it; the vectors are reused line after line.
#[derive(Default)]
pub(super) struct Plain<'a> {
    pub measurement: &'a str,
    /// As sent (not sorted).
    pub tags: Vec<(&'a str, &'a str)>,
    pub fields: Vec<(&'a str, FieldValue<'a>)>,
    pub timestamp: Option<i64>,
}

/// A byte of a plain name: printable ASCII but the separators, the quote and the escape.
/// (The crate allows more in some names; those lines take its path.)
#[inline]
fn name_byte(b: u8) -> bool {
    (0x21..0x7f).contains(&b) && !matches!(b, b',' | b'=' | b'"' | b'\\')
}

/// Reads `line` (no line end, no trailing spaces) into `out` if it is plain.
pub(super) fn read<'a>(line: &'a str, out: &mut Plain<'a>) -> bool {
    out.tags.clear();
    out.fields.clear();
    out.timestamp = None;
    let b = line.as_bytes();
    // A `#` starts a comment; a leading space or tab the crate skips (we do not).
    if b.first() == Some(&b'#') {
        return false;
    }
    let mut at = 0;
    let Some(measurement) = name(line, &mut at) else {
        return false;
    };
    out.measurement = measurement;
    while b.get(at) == Some(&b',') {
        at += 1;
        let Some(key) = name(line, &mut at) else {
            return false;
        };
        if b.get(at) != Some(&b'=') {
            return false;
        }
        at += 1;
        let Some(value) = name(line, &mut at) else {
            return false;
        };
        out.tags.push((key, value));
    }
    if b.get(at) != Some(&b' ') {
        return false;
    }
    at += 1;
    loop {
        let Some(key) = name(line, &mut at) else {
            return false;
        };
        if b.get(at) != Some(&b'=') {
            return false;
        }
        at += 1;
        let start = at;
        while at < b.len() && b[at] != b',' && b[at] != b' ' {
            at += 1;
        }
        let Some(value) = value(&line[start..at]) else {
            return false;
        };
        out.fields.push((key, value));
        match b.get(at) {
            Some(b',') => at += 1,
            _ => break,
        }
    }
    if at == b.len() {
        return true;
    }
    // One space, then the timestamp to the end.
    at += 1;
    let text = &line[at..];
    if !signed_digits(text) {
        return false;
    }
    // The crate's `value.parse()`; an overflow is its error to report.
    match text.parse::<i64>() {
        Ok(t) => {
            out.timestamp = Some(t);
            true
        }
        Err(_) => false,
    }
}

/// A plain name starting at `*at`, moving `*at` past it.
fn name<'a>(line: &'a str, at: &mut usize) -> Option<&'a str> {
    let b = line.as_bytes();
    let start = *at;
    while *at < b.len() && name_byte(b[*at]) {
        *at += 1;
    }
    // Every byte taken is ASCII, so the cut is on a character boundary.
    (*at > start).then(|| &line[start..*at])
}

/// `-?DIGITS`.
fn signed_digits(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// A field value of the plain forms, as the crate reads it. The crate tries integer
/// (`-?DIGITS` then `i`), unsigned (`DIGITS` then `u`), float, string and boolean in turn
/// and converts the recognised text with `str::parse`; on the forms taken here exactly
/// one of those matches the whole value, and the same `parse` runs on the same text. An
/// integer out of range, or a float that overflows to infinity, is left to the crate (and
/// the checks after it) to refuse.
fn value(text: &str) -> Option<FieldValue<'_>> {
    let b = text.as_bytes();
    match b.last()? {
        b'i' => {
            let int = &text[..text.len() - 1];
            signed_digits(int).then(|| int.parse().ok().map(FieldValue::I64))?
        }
        b'u' => {
            let uint = &text[..text.len() - 1];
            let digits = !uint.is_empty() && uint.bytes().all(|b| b.is_ascii_digit());
            digits.then(|| uint.parse().ok().map(FieldValue::U64))?
        }
        b'0'..=b'9' => {
            let (whole, fraction) = match b.iter().position(|&c| c == b'.') {
                Some(at) => (&text[..at], Some(&text[at + 1..])),
                None => (text, None),
            };
            let fraction_ok =
                fraction.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()));
            if !signed_digits(whole) || !fraction_ok {
                return None;
            }
            text.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .map(FieldValue::F64)
        }
        // t, T, true, True, TRUE; f, F, false, False, FALSE (byte patterns: no memcmp).
        _ => match b {
            [b't' | b'T']
            | [b't', b'r', b'u', b'e']
            | [b'T', b'r', b'u', b'e']
            | [b'T', b'R', b'U', b'E'] => Some(FieldValue::Boolean(true)),
            [b'f' | b'F']
            | [b'f', b'a', b'l', b's', b'e']
            | [b'F', b'a', b'l', b's', b'e']
            | [b'F', b'A', b'L', b'S', b'E'] => Some(FieldValue::Boolean(false)),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Measurement, tags, fields (`key=Debug of the value`), timestamp.
    type Parts = (String, Vec<(String, String)>, Vec<String>, Option<i64>);

    fn plain(line: &str) -> Option<Parts> {
        let mut out = Plain::default();
        read(line, &mut out).then(|| {
            (
                out.measurement.to_string(),
                out.tags
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                out.fields
                    .iter()
                    .map(|(k, v)| format!("{k}={v:?}"))
                    .collect(),
                out.timestamp,
            )
        })
    }

    #[test]
    fn plain_lines_are_read_whole() {
        let (m, tags, fields, t) = plain(
            "sensors,device=dev-0042,site=site-3 temperature=21.375,humidity=45.5,status=2i,count=7u,ok=T,bad=false 1767225600000000000",
        )
        .unwrap();
        assert_eq!(m, "sensors");
        assert_eq!(
            tags,
            [("device", "dev-0042"), ("site", "site-3")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert_eq!(
            fields,
            [
                "temperature=F64(21.375)",
                "humidity=F64(45.5)",
                "status=I64(2)",
                "count=U64(7)",
                "ok=Boolean(true)",
                "bad=Boolean(false)"
            ]
        );
        assert_eq!(t, Some(1_767_225_600_000_000_000));
        let (_, tags, fields, t) = plain("m v=-1,w=-0.5,x=7").unwrap();
        assert!(tags.is_empty());
        assert_eq!(fields, ["v=F64(-1.0)", "w=F64(-0.5)", "x=F64(7.0)"]);
        assert_eq!(t, None);
        assert_eq!(plain("m v=1 -5").unwrap().3, Some(-5));
    }

    #[test]
    fn anything_else_is_left_to_the_crate() {
        for line in [
            "",
            "# comment",
            " m v=1",
            "m",
            "m ",
            "m,t=1",
            "m,t= v=1",
            "m,=1 v=1",
            "m,t v=1",
            "m v",
            "m v=",
            "m =1",
            "m v=1,",
            "m v=1  2",
            "m  v=1",
            "m v=1 2 3",
            "m v=1 1.5",
            "m v=1 12ab",
            "m v=1 99999999999999999999",
            "m\\ x v=1",
            "m,t=a\\,b v=1",
            "m,t=a=b v=1",
            "m v=\"s\"",
            "m v=1.",
            "m v=.5",
            "m v=1e5",
            "m v=1E5",
            "m v=+1",
            "m v=-i",
            "m v=-1u",
            "m v=1.5i",
            "m v=99999999999999999999i",
            "m v=99999999999999999999999u",
            "m v=tru",
            "m v=yes",
            "m v=1\t2",
            "m\tx v=1",
            "mé v=1",
            "m v=1\r",
        ] {
            assert!(plain(line).is_none(), "{line:?} read as plain");
        }
        let huge = format!("m v={}.0", "9".repeat(400));
        assert!(plain(&huge).is_none(), "an infinite float is the crate's");
    }
}
