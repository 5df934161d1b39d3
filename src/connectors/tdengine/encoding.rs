//! TDengine REST values (JSON) → tsmig [`Value`]s.
//!
//! Each column gets a [`Conversion`] once, from the type name TDengine reports (`DESCRIBE`'s
//! `type`, the reply's `column_meta`); rows are then converted without looking at types
//! again. What a user should know:
//! - TIMESTAMP arrives as RFC 3339 text with as many fraction digits as the database's
//!   precision (ms, us or ns) and is converted to nanoseconds exactly, whatever the offset
//!   the server writes it in; an integer is read in the database's precision.
//! - FLOAT is single precision: JSON carries it as the shortest decimal that reads back as
//!   the same f32 (21.3), and it is kept as that decimal, not as the f64 nearest to it
//!   widened (21.299999237060547). DOUBLE is kept exactly.
//! - BOOL, the integer types (UNSIGNED ones as unsigned) and text types (BINARY, VARCHAR,
//!   NCHAR, which is UTF-8 on the wire) keep their type; a JSON tag becomes its JSON text.
//! - VARBINARY, GEOMETRY and types tsmig does not know are not mapped (`plan` shows them).

use crate::job::TimeUnit;
use crate::model::{Name, Value};
use crate::source::ColumnKind;
use serde_json::Value as Json;

/// How one column's values are converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// TIMESTAMP: RFC 3339 text (or an integer in the database's precision).
    Time,
    /// BOOL.
    Bool,
    /// TINYINT .. BIGINT.
    Int,
    /// TINYINT UNSIGNED .. BIGINT UNSIGNED.
    UInt,
    /// FLOAT (single precision).
    Float32,
    /// DOUBLE.
    Float64,
    /// DECIMAL, kept as its decimal text.
    Decimal,
    /// BINARY, VARCHAR, NCHAR.
    Text,
    /// A JSON tag: its JSON text.
    Json,
    /// Anything else.
    Unsupported,
}

/// The conversion and mapping kind of a column from its TDengine type name (`INT`,
/// `BIGINT UNSIGNED`, `VARCHAR`, `NCHAR(32)`: a length in brackets is ignored).
pub fn classify(type_name: &str) -> (Conversion, ColumnKind) {
    let upper = type_name.to_ascii_uppercase();
    let base = upper.split('(').next().unwrap_or_default().trim();
    match base {
        "TIMESTAMP" => (Conversion::Time, ColumnKind::Time),
        "BOOL" => (Conversion::Bool, ColumnKind::Bool),
        "TINYINT" | "SMALLINT" | "INT" | "BIGINT" => (Conversion::Int, ColumnKind::Int),
        "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "INT UNSIGNED" | "BIGINT UNSIGNED" => {
            (Conversion::UInt, ColumnKind::UInt)
        }
        "FLOAT" => (Conversion::Float32, ColumnKind::Float),
        "DOUBLE" => (Conversion::Float64, ColumnKind::Float),
        "DECIMAL" => (Conversion::Decimal, ColumnKind::Float),
        "BINARY" | "VARCHAR" | "NCHAR" => (Conversion::Text, ColumnKind::Text),
        "JSON" => (Conversion::Json, ColumnKind::Text),
        _ => (
            Conversion::Unsupported,
            ColumnKind::Unsupported(type_name.to_string()),
        ),
    }
}

/// A database's `precision` (`ms`, `us` or `ns`, as `information_schema.ins_databases`
/// shows it).
pub fn precision(text: &str) -> Result<TimeUnit, String> {
    match text.trim() {
        "ms" => Ok(TimeUnit::Millis),
        "us" => Ok(TimeUnit::Micros),
        "ns" => Ok(TimeUnit::Nanos),
        other => Err(format!(
            "precision `{other}` is not one TDengine has (ms, us, ns)"
        )),
    }
}

/// Converts one value of a column read from a database of `precision`.
pub fn convert(
    value: &Json,
    conversion: Conversion,
    precision: TimeUnit,
) -> Result<Option<Value>, String> {
    let v = match (conversion, value) {
        (_, Json::Null) => return Ok(None),
        (Conversion::Time, value) => Value::Time(time_nanos(value, precision)?),
        (Conversion::Bool, Json::Bool(b)) => Value::Bool(*b),
        (Conversion::Int, Json::Number(n)) => Value::Int(
            n.as_i64()
                .ok_or_else(|| format!("{n} is not a signed integer"))?,
        ),
        (Conversion::UInt, Json::Number(n)) => Value::UInt(
            n.as_u64()
                .ok_or_else(|| format!("{n} is not an unsigned integer"))?,
        ),
        (Conversion::Float32, Json::Number(n)) => {
            Value::from_f32(n.as_f64().ok_or_else(|| format!("{n} is not a number"))? as f32)
        }
        (Conversion::Float64, Json::Number(n)) => {
            Value::Float(n.as_f64().ok_or_else(|| format!("{n} is not a number"))?)
        }
        (Conversion::Decimal, Json::Number(n)) => Value::Decimal(Name::from(n.to_string())),
        (Conversion::Decimal, Json::String(text)) => {
            if text.is_empty()
                || !text
                    .bytes()
                    .all(|c| c.is_ascii_digit() || c == b'.' || c == b'-')
            {
                return Err(format!("DECIMAL {text:?} is not a number"));
            }
            Value::Decimal(Name::from(text.as_str()))
        }
        (Conversion::Text | Conversion::Json, Json::String(text)) => {
            Value::String(text.as_str().into())
        }
        (Conversion::Json, other) => Value::String(other.to_string().into()),
        (conversion, value) => {
            return Err(format!(
                "unexpected value {value} for a {conversion:?} column"
            ))
        }
    };
    Ok(Some(v))
}

/// Nanoseconds since the Unix epoch of a TIMESTAMP value.
pub fn time_nanos(value: &Json, precision: TimeUnit) -> Result<i64, String> {
    match value {
        Json::String(text) => {
            let t = chrono::DateTime::parse_from_rfc3339(text)
                .map_err(|e| format!("timestamp {text:?} is not RFC 3339 ({e})"))?;
            t.timestamp_nanos_opt().ok_or_else(|| {
                format!("{text} is outside the years 1678-2261 that nanosecond time can hold")
            })
        }
        Json::Number(n) => n
            .as_i64()
            .and_then(|units| units.checked_mul(precision.nanos()))
            .ok_or_else(|| format!("timestamp {n} is out of range")),
        other => Err(format!("{other} is not a timestamp")),
    }
}

/// A timestamp in nanoseconds as a count of the database's `precision` units, as TDengine
/// compares it in SQL; `Err` if it is finer than that precision.
pub fn to_units(ns: i64, precision: TimeUnit) -> Result<i64, String> {
    let unit = precision.nanos();
    if ns % unit != 0 {
        return Err(format!(
            "timestamp {ns}ns is finer than the database's precision ({})",
            precision.as_str()
        ));
    }
    Ok(ns / unit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn classifies_tdengine_types() {
        assert_eq!(classify("TIMESTAMP").1, ColumnKind::Time);
        assert_eq!(classify("BOOL").1, ColumnKind::Bool);
        assert_eq!(classify("TINYINT").1, ColumnKind::Int);
        assert_eq!(classify("BIGINT").1, ColumnKind::Int);
        assert_eq!(classify("SMALLINT UNSIGNED").1, ColumnKind::UInt);
        assert_eq!(classify("BIGINT UNSIGNED").0, Conversion::UInt);
        assert_eq!(classify("FLOAT").0, Conversion::Float32);
        assert_eq!(classify("DOUBLE").0, Conversion::Float64);
        assert_eq!(classify("NCHAR(32)").1, ColumnKind::Text);
        assert_eq!(classify("varchar").1, ColumnKind::Text);
        assert_eq!(classify("JSON").0, Conversion::Json);
        assert_eq!(
            classify("GEOMETRY").1,
            ColumnKind::Unsupported("GEOMETRY".into())
        );
    }

    #[test]
    fn timestamps_keep_their_precision_in_any_offset() {
        let ms = TimeUnit::Millis;
        let t = |s: &str, p| time_nanos(&json!(s), p).unwrap();
        assert_eq!(t("2026-01-01T00:00:00.123Z", ms), 1_767_225_600_123_000_000);
        assert_eq!(
            t("2026-01-01T08:00:00.123456+08:00", TimeUnit::Micros),
            1_767_225_600_123_456_000
        );
        assert_eq!(
            t("2026-01-01T00:00:00.123456789Z", TimeUnit::Nanos),
            1_767_225_600_123_456_789
        );
        assert_eq!(
            time_nanos(&json!(1_767_225_600_123_456i64), TimeUnit::Micros).unwrap(),
            1_767_225_600_123_456_000
        );
        assert_eq!(
            to_units(1_767_225_600_123_000_000, ms),
            Ok(1_767_225_600_123)
        );
        assert!(to_units(1_767_225_600_123_000_001, ms).is_err());
        assert!(time_nanos(&json!("yesterday"), ms).is_err());
        assert_eq!(precision("us"), Ok(TimeUnit::Micros));
        assert!(precision("s").is_err());
    }

    #[test]
    fn values_convert_exactly() {
        let c = |v: Json, k| convert(&v, k, TimeUnit::Millis).unwrap();
        assert_eq!(
            c(json!(21.3), Conversion::Float32),
            Some(Value::Decimal("21.3".into()))
        );
        assert_eq!(
            c(json!(21.5), Conversion::Float32),
            Some(Value::Decimal("21.5".into()))
        );
        assert_eq!(c(json!(0.1), Conversion::Float64), Some(Value::Float(0.1)));
        assert_eq!(
            c(json!(u64::MAX), Conversion::UInt),
            Some(Value::UInt(u64::MAX))
        );
        assert_eq!(
            c(json!(i64::MIN), Conversion::Int),
            Some(Value::Int(i64::MIN))
        );
        assert_eq!(c(json!(true), Conversion::Bool), Some(Value::Bool(true)));
        assert_eq!(
            c(json!("Zürich 北京"), Conversion::Text),
            Some(Value::String("Zürich 北京".into()))
        );
        assert_eq!(
            c(json!({"a": 1}), Conversion::Json),
            Some(Value::String("{\"a\":1}".into()))
        );
        assert_eq!(c(Json::Null, Conversion::Int), None);
    }

    #[test]
    fn refuses_what_does_not_fit_the_column() {
        let e = |v: Json, k| convert(&v, k, TimeUnit::Millis).unwrap_err();
        assert!(e(json!(-1), Conversion::UInt).contains("unsigned"));
        assert!(e(json!("x"), Conversion::Int).contains("unexpected value"));
        assert!(e(json!(1), Conversion::Text).contains("unexpected value"));
        assert!(e(json!("1e5x"), Conversion::Decimal).contains("not a number"));
    }
}
