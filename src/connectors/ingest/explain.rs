//! Why a line is bad, in the writer's terms.
//!
//! InfluxData's parser reports where its grammar stopped, not what the writer got wrong:
//! `cpu temp=abc` is "No fields were provided", `cpu a=1,temp=abc` is "Could not parse
//! entire line. Found trailing content: ',temp=abc'". When the crate refuses a line for
//! its fields or timestamp, [`bad_value`] cuts the line by line protocol's lexical rules
//! alone (unescaped spaces, commas, equals signs; quoted strings) and names the first
//! field value, or the timestamp, that is not one line protocol has, with the forms it
//! could take. What it cannot pin down keeps the crate's message.
//!
//! [`nul_byte`] refuses a NUL byte in a measurement, tag key, tag value or field key before
//! the crate sees the line: the crate ends a measurement at a NUL (and then reports
//! something else) and takes a NUL in the other names, which no database behind tsmig
//! can store or query back. A NUL in a string field value is data, and stays.
//!
//! Neither changes which lines are accepted, apart from the NULs: that stays the crate's,
//! held to InfluxData's reference by the corpus test (no line the reference accepts holds
//! a NUL).

/// The value forms line protocol has, as a writer needs them.
const VALUE_FORMS: &str =
    "floats: 1.5, integers: 1i, unsigned: 1u, strings in double quotes, booleans: t/true/f/false";

/// A name or value as sent (escapes kept), quoted, with a NUL shown as `\0`.
fn shown(text: &str) -> String {
    format!("\"{}\"", text.replace('\0', "\\0"))
}

/// The reason to refuse `line` for a NUL byte in a name or tag value, if it has one.
pub fn nul_byte(line: &str) -> Option<String> {
    if !line.contains('\0') {
        return None;
    }
    let line = line.trim_start_matches(' ');
    if line.starts_with('#') {
        // A comment line is skipped whole, whatever it holds.
        return None;
    }
    let cut = Cut::of(line);
    let refused = |what: String| {
        Some(format!(
            "{what}: NUL bytes are not allowed in measurements, tag keys, tag values or field keys"
        ))
    };
    if cut.measurement.contains('\0') {
        return refused(format!("measurement {}", shown(cut.measurement)));
    }
    for (key, value) in &cut.tags {
        if key.contains('\0') {
            return refused(format!("tag key {}", shown(key)));
        }
        if value.contains('\0') {
            return refused(format!("tag {} value {}", shown(key), shown(value)));
        }
    }
    for field in &cut.fields {
        if field.key.contains('\0') {
            return refused(format!("field key {}", shown(field.key)));
        }
    }
    None
}

/// A clearer reason than the crate's `error` for refusing `line`, when the error is about
/// its fields or timestamp and the line shows which value is wrong.
pub fn bad_value(line: &str, error: &influxdb_line_protocol::Error) -> Option<String> {
    use influxdb_line_protocol::Error as E;
    match error {
        E::FieldSetMissing
        | E::CannotParseEntireLine { .. }
        | E::IntegerValueInvalid { .. }
        | E::UIntegerValueInvalid { .. }
        | E::FloatValueInvalid { .. }
        | E::TimestampValueInvalid { .. } => {}
        _ => return None,
    }
    let cut = Cut::of(line.trim_start_matches(' '));
    for field in &cut.fields {
        let key = shown(field.key);
        let value = match field.value {
            Value::Missing => return Some(format!("field {key}: no value ({VALUE_FORMS})")),
            Value::Unclosed => {
                return Some(format!(
                    "field {key}: the string has no closing double quote"
                ))
            }
            Value::Quoted => continue,
            Value::Bare(value) => value,
        };
        if let Some(reason) = bad_bare_value(value) {
            return Some(format!("field {key}: {reason}"));
        }
    }
    let timestamp = cut.timestamp?;
    let (token, trailing) = timestamp
        .split_once(' ')
        .map(|(t, rest)| (t, rest.trim_start_matches(' ')))
        .unwrap_or((timestamp, ""));
    if !is_integer(token) {
        return Some(format!("the timestamp {} is not an integer", shown(token)));
    }
    if token.parse::<i64>().is_err() {
        return Some(format!(
            "the timestamp {token} is out of range (-9223372036854775808 to 9223372036854775807)"
        ));
    }
    if !trailing.is_empty() {
        return Some(format!(
            "unexpected text {} after the timestamp",
            shown(trailing)
        ));
    }
    None
}

/// Why an unquoted field value is not one line protocol has, if it is not.
fn bad_bare_value(value: &str) -> Option<String> {
    if value.is_empty() {
        return Some(format!("no value ({VALUE_FORMS})"));
    }
    if let Some(digits) = value.strip_suffix('i') {
        if is_integer(digits) {
            return digits.parse::<i64>().is_err().then(|| {
                format!(
                    "{value} is out of range for an integer \
                     (-9223372036854775808i to 9223372036854775807i)"
                )
            });
        }
    }
    if let Some(digits) = value.strip_suffix('u') {
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            return digits.parse::<u64>().is_err().then(|| {
                format!(
                    "{value} is out of range for an unsigned integer (at most 18446744073709551615u)"
                )
            });
        }
    }
    if is_float(value)
        || matches!(
            value,
            "t" | "T" | "true" | "True" | "TRUE" | "f" | "F" | "false" | "False" | "FALSE"
        )
    {
        return None;
    }
    // `1.` and `.5` are numbers to the writer, and the Go parser takes them; this one wants
    // a digit on both sides of the point.
    let unsigned = value.strip_prefix('-').unwrap_or(value);
    if unsigned.contains('.') && value.parse::<f64>().is_ok_and(f64::is_finite) {
        let (whole, rest) = unsigned.split_once('.').unwrap_or((unsigned, ""));
        let (fraction, exponent) = rest
            .find(['e', 'E'])
            .map(|at| rest.split_at(at))
            .unwrap_or((rest, ""));
        if whole.bytes().all(|b| b.is_ascii_digit()) && fraction.bytes().all(|b| b.is_ascii_digit())
        {
            let sign = if value.starts_with('-') { "-" } else { "" };
            let whole = if whole.is_empty() { "0" } else { whole };
            let fraction = if fraction.is_empty() { "0" } else { fraction };
            return Some(format!(
                "{} needs a digit on both sides of its point: write {sign}{whole}.{fraction}{exponent}",
                shown(value)
            ));
        }
    }
    Some(format!("{} is not a number ({VALUE_FORMS})", shown(value)))
}

/// `-?[0-9]+`
fn is_integer(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// `-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?`: the floats the crate reads.
fn is_float(text: &str) -> bool {
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], Some(&text[at + 1..])),
        None => (text, None),
    };
    let (whole, fraction) = match mantissa.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (mantissa, None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    is_integer(whole)
        && fraction.is_none_or(digits)
        && exponent.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)))
}

/// A field's value as written.
#[derive(Debug, PartialEq)]
enum Value<'a> {
    /// No `=` after the key.
    Missing,
    /// A quoted string (well formed: its content is data).
    Quoted,
    /// A quoted string with no closing quote.
    Unclosed,
    /// Anything else, up to the next unescaped comma or space.
    Bare(&'a str),
}

#[derive(Debug)]
struct Field<'a> {
    key: &'a str,
    value: Value<'a>,
}

/// A line cut into its parts as written (escapes kept), by the lexical rules only.
#[derive(Debug)]
struct Cut<'a> {
    measurement: &'a str,
    /// (key, value); the value is empty when a tag has no `=`.
    tags: Vec<(&'a str, &'a str)>,
    /// Up to the first field the cut cannot get past.
    fields: Vec<Field<'a>>,
    /// What follows the fields, if anything.
    timestamp: Option<&'a str>,
}

/// The index of the first byte of `text` in `stops` that no backslash escapes, or its
/// length. Every delimiter is ASCII and no byte of a multi-byte character is, so the
/// index is a character boundary.
fn unescaped(text: &str, stops: &[u8]) -> usize {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b if stops.contains(&b) => return i,
            _ => i += 1,
        }
    }
    bytes.len()
}

impl<'a> Cut<'a> {
    fn of(line: &'a str) -> Cut<'a> {
        let series_end = unescaped(line, b" ");
        let mut series = &line[..series_end];
        let at = unescaped(series, b",");
        let measurement = &series[..at];
        series = &series[at..];
        let mut tags = Vec::new();
        while let Some(rest) = series.strip_prefix(',') {
            let end = unescaped(rest, b",");
            let tag = &rest[..end];
            let equals = unescaped(tag, b"=");
            tags.push((&tag[..equals], tag.get(equals + 1..).unwrap_or("")));
            series = &rest[end..];
        }

        let mut fields = Vec::new();
        let mut rest = line[series_end..].trim_start_matches(' ');
        let mut timestamp = None;
        while !rest.is_empty() {
            let key_end = unescaped(rest, b"=, ");
            let key = &rest[..key_end];
            let Some(after) = rest[key_end..].strip_prefix('=') else {
                fields.push(Field {
                    key,
                    value: Value::Missing,
                });
                break;
            };
            let value_end = if after.starts_with('"') {
                match closing_quote(after) {
                    Some(end) => {
                        fields.push(Field {
                            key,
                            value: Value::Quoted,
                        });
                        end + 1
                    }
                    None => {
                        fields.push(Field {
                            key,
                            value: Value::Unclosed,
                        });
                        break;
                    }
                }
            } else {
                let end = after.find([',', ' ']).unwrap_or(after.len());
                fields.push(Field {
                    key,
                    value: Value::Bare(&after[..end]),
                });
                end
            };
            rest = &after[value_end..];
            if let Some(next) = rest.strip_prefix(',') {
                rest = next;
            } else {
                let after_fields = rest.trim_start_matches(' ');
                if !after_fields.is_empty() {
                    timestamp = Some(after_fields);
                }
                break;
            }
        }
        Cut {
            measurement,
            tags,
            fields,
            timestamp,
        }
    }
}

/// The index of the quote that closes the string `text` opens, if any: a backslash
/// escapes the character after it.
fn closing_quote(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explain(line: &str) -> Option<String> {
        let error = influxdb_line_protocol::parse_lines(line)
            .next()
            .expect("one line")
            .expect_err("the crate refuses it");
        bad_value(line, &error)
    }

    #[test]
    fn bad_field_values_are_named_with_the_forms_they_could_take() {
        let forms = VALUE_FORMS;
        for (line, reason) in [
            (
                "cpu temp=abc",
                format!("field \"temp\": \"abc\" is not a number ({forms})"),
            ),
            (
                "cpu a=1,temp=abc 10",
                format!("field \"temp\": \"abc\" is not a number ({forms})"),
            ),
            (
                "cpu,host=a b=\"x, y\",temp=1.5x",
                format!("field \"temp\": \"1.5x\" is not a number ({forms})"),
            ),
            (
                "cpu temp= 10",
                format!("field \"temp\": no value ({forms})"),
            ),
            (
                "cpu temp=1,other",
                format!("field \"other\": no value ({forms})"),
            ),
            (
                "cpu n=9223372036854775808i",
                "field \"n\": 9223372036854775808i is out of range for an integer \
                 (-9223372036854775808i to 9223372036854775807i)"
                    .into(),
            ),
            (
                "cpu n=18446744073709551616u",
                "field \"n\": 18446744073709551616u is out of range for an unsigned integer \
                 (at most 18446744073709551615u)"
                    .into(),
            ),
            (
                "cpu v=1.",
                "field \"v\": \"1.\" needs a digit on both sides of its point: write 1.0".into(),
            ),
            (
                "cpu v=-.5e3",
                "field \"v\": \"-.5e3\" needs a digit on both sides of its point: write -0.5e3"
                    .into(),
            ),
            (
                "cpu s=\"open",
                "field \"s\": the string has no closing double quote".into(),
            ),
            (
                "cpu v=1 12ab",
                "the timestamp \"12ab\" is not an integer".into(),
            ),
            (
                "cpu v=1 99999999999999999999",
                "the timestamp 99999999999999999999 is out of range \
                 (-9223372036854775808 to 9223372036854775807)"
                    .into(),
            ),
            (
                "cpu v=1 12 more",
                "unexpected text \"more\" after the timestamp".into(),
            ),
        ] {
            assert_eq!(explain(line).as_deref(), Some(reason.as_str()), "{line}");
        }
        // Not about a value: the crate's message stays.
        assert_eq!(explain("cpu"), None);
        assert_eq!(explain("cpu,host f=1"), None);
    }

    #[test]
    fn nul_bytes_are_found_in_every_name_but_not_in_string_values() {
        let not_allowed =
            "NUL bytes are not allowed in measurements, tag keys, tag values or field keys";
        for (line, what) in [
            ("cp\0u,host=a v=1", r#"measurement "cp\0u""#),
            ("\0cpu v=1", r#"measurement "\0cpu""#),
            ("cpu,ho\0st=a v=1", r#"tag key "ho\0st""#),
            ("cpu,host=we\0b v=1", r#"tag "host" value "we\0b""#),
            (
                "cpu,a=1,host=w\\ e\0b v=1 10",
                r#"tag "host" value "w\ e\0b""#,
            ),
            ("cpu,host=a v=1,te\0mp=2", r#"field key "te\0mp""#),
        ] {
            assert_eq!(
                nul_byte(line),
                Some(format!("{what}: {not_allowed}")),
                "{line:?}"
            );
        }
        assert_eq!(nul_byte("cpu s=\"a\0b\",v=1 10"), None);
        assert_eq!(nul_byte("# a comment \0"), None);
        assert_eq!(nul_byte("cpu,host=web v=1"), None);
    }

    #[test]
    fn the_cut_follows_escapes_and_quotes() {
        let cut = Cut::of(r#"my\ cpu,host=a\,b,k\=ey=v s="a \" , b",x=1i 42"#);
        assert_eq!(cut.measurement, r"my\ cpu");
        assert_eq!(cut.tags, vec![("host", r"a\,b"), (r"k\=ey", "v")]);
        let keys: Vec<&str> = cut.fields.iter().map(|f| f.key).collect();
        assert_eq!(keys, vec!["s", "x"]);
        assert_eq!(cut.fields[0].value, Value::Quoted);
        assert_eq!(cut.fields[1].value, Value::Bare("1i"));
        assert_eq!(cut.timestamp, Some("42"));
    }
}
