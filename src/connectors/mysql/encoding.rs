//! MySQL values (binary protocol) → tsmig [`Value`]s.
//!
//! Each column gets a [`Conversion`] from its declared type in `information_schema`, once;
//! rows are then converted without looking at types again. Choices a user should know:
//! `TINYINT(1)` and `BIT(1)` are booleans (as JDBC reads them) and any value other than
//! 0 or 1 is refused rather than guessed; DECIMAL becomes a float; FLOAT is taken at the
//! precision MySQL shows it (12.3, not 12.300000190734863); DATETIME is read in the job's
//! UTC offset, TIMESTAMP as UTC (the session runs in `+00:00`); text must be UTF-8.

use crate::model::{Name, Value};
use crate::source::ColumnKind;
use mysql_async::Value as My;

/// How one column's values are converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// Signed integers.
    Int,
    /// Unsigned integers.
    UInt,
    /// FLOAT (single precision).
    Float32,
    /// DOUBLE.
    Float64,
    /// DECIMAL, sent as text.
    Decimal,
    /// TINYINT(1) and BIT(1).
    Bool,
    /// BIT(n), n > 1, big-endian bytes.
    Bits,
    /// Text types, ENUM, SET, JSON.
    Text,
    /// DATETIME and DATE: wall-clock time in the job's offset.
    LocalTime,
    /// TIMESTAMP: UTC, since the session's time zone is `+00:00`.
    UtcTime,
    /// Anything else.
    Unsupported,
}

/// The conversion and mapping kind for a column, from `DATA_TYPE` and `COLUMN_TYPE`.
pub fn classify(data_type: &str, column_type: &str) -> (Conversion, ColumnKind) {
    let unsigned = column_type.contains("unsigned");
    let data_type = data_type.to_ascii_lowercase();
    match data_type.as_str() {
        "tinyint" if column_type.starts_with("tinyint(1)") && !unsigned => {
            (Conversion::Bool, ColumnKind::Bool)
        }
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "year" => {
            if unsigned {
                (Conversion::UInt, ColumnKind::UInt)
            } else {
                (Conversion::Int, ColumnKind::Int)
            }
        }
        "float" => (Conversion::Float32, ColumnKind::Float),
        "double" | "real" => (Conversion::Float64, ColumnKind::Float),
        "decimal" | "numeric" => (Conversion::Decimal, ColumnKind::Float),
        "bit" if column_type == "bit(1)" => (Conversion::Bool, ColumnKind::Bool),
        "bit" => (Conversion::Bits, ColumnKind::UInt),
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum" | "set"
        | "json" => (Conversion::Text, ColumnKind::Text),
        "datetime" | "date" => (Conversion::LocalTime, ColumnKind::Time),
        "timestamp" => (Conversion::UtcTime, ColumnKind::Time),
        _ => (
            Conversion::Unsupported,
            ColumnKind::Unsupported(column_type.to_string()),
        ),
    }
}

/// A MySQL value as it is on the wire, its text and bytes borrowed: what the binary-protocol
/// row decoder ([`super::binrow`]) reads and what a mysql_async [`My`] value lends. Each
/// variant is the one mysql_common would build for the same bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Raw<'a> {
    /// SQL NULL.
    Null,
    /// An integer that fits in an `i64` (unsigned ones too, where they fit).
    Int(i64),
    /// An unsigned BIGINT above `i64::MAX`.
    UInt(u64),
    /// FLOAT.
    Float(f32),
    /// DOUBLE.
    Double(f64),
    /// Text, DECIMAL, BIT, ENUM, SET, JSON, blobs: the value's bytes.
    Bytes(&'a [u8]),
    /// DATE, DATETIME, TIMESTAMP: year, month, day, hour, minute, second, microsecond.
    Date(u16, u8, u8, u8, u8, u8, u32),
    /// TIME: negative, days, hours, minutes, seconds, microseconds.
    Time(bool, u32, u8, u8, u8, u32),
}

impl<'a> From<&'a My> for Raw<'a> {
    fn from(value: &'a My) -> Self {
        match *value {
            My::NULL => Raw::Null,
            My::Bytes(ref b) => Raw::Bytes(b),
            My::Int(i) => Raw::Int(i),
            My::UInt(u) => Raw::UInt(u),
            My::Float(f) => Raw::Float(f),
            My::Double(f) => Raw::Double(f),
            My::Date(y, mo, d, h, mi, s, us) => Raw::Date(y, mo, d, h, mi, s, us),
            My::Time(neg, d, h, mi, s, us) => Raw::Time(neg, d, h, mi, s, us),
        }
    }
}

/// Converts one mysql_async value. `offset_ns` is the job's DATETIME offset (east of UTC).
/// Text keeps the value's own buffer (no copy); everything else is [`convert_raw`]'s.
pub fn convert(value: My, conversion: Conversion, offset_ns: i64) -> Result<Option<Value>, String> {
    match (conversion, value) {
        (Conversion::Text, My::Bytes(b)) => String::from_utf8(b)
            .map(|text| Some(Value::String(text.into())))
            .map_err(|e| format!("text is not valid UTF-8 ({})", e.utf8_error())),
        (conversion, value) => convert_raw(Raw::from(&value), conversion, offset_ns),
    }
}

/// Converts one value read from the wire. `offset_ns` is the job's DATETIME offset (east of
/// UTC). Text is copied once, into the value kept.
pub fn convert_raw(
    value: Raw<'_>,
    conversion: Conversion,
    offset_ns: i64,
) -> Result<Option<Value>, String> {
    let v = match (conversion, value) {
        (_, Raw::Null) => return Ok(None),
        (Conversion::Int, Raw::Int(i)) => Value::Int(i),
        (Conversion::Int, Raw::UInt(u)) => {
            Value::Int(i64::try_from(u).map_err(|_| format!("{u} is out of range"))?)
        }
        (Conversion::UInt, Raw::UInt(u)) => Value::UInt(u),
        (Conversion::UInt, Raw::Int(i)) => Value::UInt(
            u64::try_from(i).map_err(|_| format!("{i} is negative in an unsigned column"))?,
        ),
        (Conversion::Float32, Raw::Float(f)) => Value::from_f32(f),
        (Conversion::Float32 | Conversion::Float64, Raw::Double(f)) => Value::Float(f),
        (Conversion::Decimal, Raw::Bytes(b)) => {
            let text = std::str::from_utf8(b).map_err(|_| "DECIMAL is not text".to_string())?;
            if text.is_empty()
                || !text
                    .bytes()
                    .all(|c| c.is_ascii_digit() || c == b'.' || c == b'-')
            {
                return Err(format!("DECIMAL {text:?} is not a number"));
            }
            Value::Decimal(Name::from(text))
        }
        (Conversion::Bool, Raw::Int(i)) => match i {
            0 => Value::Bool(false),
            1 => Value::Bool(true),
            other => {
                return Err(format!(
                    "{other} in a boolean column (TINYINT(1)) is neither 0 nor 1"
                ))
            }
        },
        (Conversion::Bool, Raw::UInt(u)) if u <= 1 => Value::Bool(u == 1),
        (Conversion::Bool, Raw::Bytes(b)) => Value::Bool(b.iter().any(|&x| x != 0)),
        (Conversion::Bits, Raw::Bytes(b)) => {
            if b.len() > 8 {
                return Err(format!(
                    "BIT value of {} bytes is wider than 64 bits",
                    b.len()
                ));
            }
            Value::UInt(b.iter().fold(0u64, |acc, &x| (acc << 8) | x as u64))
        }
        (Conversion::Text, Raw::Bytes(b)) => Value::String(
            std::str::from_utf8(b)
                .map_err(|e| format!("text is not valid UTF-8 ({e})"))?
                .into(),
        ),
        (Conversion::LocalTime, Raw::Date(y, mo, d, h, mi, s, us)) => {
            Value::Time(civil_nanos(y, mo, d, h, mi, s, us)? - offset_ns)
        }
        (Conversion::UtcTime, Raw::Date(y, mo, d, h, mi, s, us)) => {
            Value::Time(civil_nanos(y, mo, d, h, mi, s, us)?)
        }
        (conversion, value) => {
            return Err(format!(
                "unexpected value {:?} for a {conversion:?} column",
                My::from(value)
            ))
        }
    };
    Ok(Some(v))
}

impl From<Raw<'_>> for My {
    /// The mysql_async value, for messages that show it as mysql_async does.
    fn from(value: Raw<'_>) -> Self {
        match value {
            Raw::Null => My::NULL,
            Raw::Bytes(b) => My::Bytes(b.to_vec()),
            Raw::Int(i) => My::Int(i),
            Raw::UInt(u) => My::UInt(u),
            Raw::Float(f) => My::Float(f),
            Raw::Double(f) => My::Double(f),
            Raw::Date(y, mo, d, h, mi, s, us) => My::Date(y, mo, d, h, mi, s, us),
            Raw::Time(neg, d, h, mi, s, us) => My::Time(neg, d, h, mi, s, us),
        }
    }
}

/// Nanoseconds since the epoch of a wall-clock time read as UTC.
fn civil_nanos(y: u16, mo: u8, d: u8, h: u8, mi: u8, s: u8, us: u32) -> Result<i64, String> {
    let date = chrono::NaiveDate::from_ymd_opt(y as i32, mo as u32, d as u32)
        .ok_or_else(|| format!("{y:04}-{mo:02}-{d:02} is not a date (a zero date?)"))?;
    let time = date
        .and_hms_micro_opt(h as u32, mi as u32, s as u32, us)
        .ok_or_else(|| format!("{h:02}:{mi:02}:{s:02}.{us:06} is not a time of day"))?;
    time.and_utc().timestamp_nanos_opt().ok_or_else(|| {
        format!("{time} is outside the years 1678-2261 that nanosecond time can hold")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_sensor_table_types() {
        assert_eq!(classify("tinyint", "tinyint(1)").0, Conversion::Bool);
        assert_eq!(classify("tinyint", "tinyint(4)").0, Conversion::Int);
        assert_eq!(
            classify("bigint", "bigint(20) unsigned").0,
            Conversion::UInt
        );
        assert_eq!(classify("decimal", "decimal(8,2)").1, ColumnKind::Float);
        assert_eq!(classify("bit", "bit(1)").0, Conversion::Bool);
        assert_eq!(classify("datetime", "datetime(6)").0, Conversion::LocalTime);
        assert_eq!(
            classify("blob", "blob").1,
            ColumnKind::Unsupported("blob".into())
        );
    }

    #[test]
    fn converts_values_exactly() {
        let c = |v, k| convert(v, k, 0).unwrap().unwrap();
        assert_eq!(
            c(My::Float(12.3), Conversion::Float32),
            Value::Decimal("12.3".into())
        );
        assert_eq!(
            c(My::Float(45.0), Conversion::Float32),
            Value::Decimal("45".into())
        );
        assert_eq!(
            c(My::Float(1e-7), Conversion::Float32),
            Value::Decimal("1e-7".into())
        );
        assert_eq!(
            c(My::Bytes(b"-12.345".to_vec()), Conversion::Decimal),
            Value::Decimal("-12.345".into())
        );
        assert_eq!(c(My::Bytes(vec![1]), Conversion::Bool), Value::Bool(true));
        assert_eq!(c(My::Bytes(vec![1, 2]), Conversion::Bits), Value::UInt(258));
        assert_eq!(
            c(My::Date(2026, 1, 1, 0, 0, 0, 123456), Conversion::LocalTime),
            Value::Time(1_767_225_600_123_456_000)
        );
        // DATETIME in +02:00 is two hours earlier in UTC.
        assert_eq!(
            convert(
                My::Date(2026, 1, 1, 2, 0, 0, 0),
                Conversion::LocalTime,
                7_200_000_000_000
            )
            .unwrap(),
            Some(Value::Time(1_767_225_600_000_000_000))
        );
        assert_eq!(convert(My::NULL, Conversion::Int, 0).unwrap(), None);
    }

    #[test]
    fn text_reads_the_same_owned_or_borrowed() {
        for bytes in [b"dev-1".to_vec(), vec![0xff, b'a'], Vec::new()] {
            assert_eq!(
                convert(My::Bytes(bytes.clone()), Conversion::Text, 0),
                convert_raw(Raw::Bytes(&bytes), Conversion::Text, 0)
            );
        }
    }

    #[test]
    fn refuses_what_it_cannot_convert_faithfully() {
        assert!(convert(My::Int(2), Conversion::Bool, 0)
            .unwrap_err()
            .contains("neither 0 nor 1"));
        assert!(convert(My::Bytes(vec![0xff]), Conversion::Text, 0)
            .unwrap_err()
            .contains("UTF-8"));
        assert!(
            convert(My::Date(0, 0, 0, 0, 0, 0, 0), Conversion::LocalTime, 0)
                .unwrap_err()
                .contains("zero date")
        );
    }
}
