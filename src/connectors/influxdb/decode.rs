//! InfluxDB 1.x values → tsmig's, typed by `SHOW FIELD KEYS` rather than by the JSON.
//!
//! The JSON of a query answer cannot tell an integer field holding 20 from a float field
//! holding 20.0: both are `20`. The field's declared type decides, so an integer stays
//! [`Value::Int`] and a float stays [`Value::Float`] whatever its JSON looks like (serde_json
//! reads floats with `float_roundtrip`, so every float arrives to the bit).

use crate::model::Value;
use crate::source::ColumnKind;

/// A field's type as `SHOW FIELD KEYS` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// `float`: 64-bit floating point.
    Float,
    /// `integer`: signed 64-bit.
    Integer,
    /// `unsigned`: unsigned 64-bit (1.8 and later).
    Unsigned,
    /// `string`.
    String,
    /// `boolean`.
    Boolean,
}

impl FieldType {
    /// The type named `name` by `SHOW FIELD KEYS`, if InfluxDB has it.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "float" => FieldType::Float,
            "integer" => FieldType::Integer,
            "unsigned" => FieldType::Unsigned,
            "string" => FieldType::String,
            "boolean" => FieldType::Boolean,
            _ => return None,
        })
    }

    /// InfluxDB's name of the type.
    pub fn name(self) -> &'static str {
        match self {
            FieldType::Float => "float",
            FieldType::Integer => "integer",
            FieldType::Unsigned => "unsigned",
            FieldType::String => "string",
            FieldType::Boolean => "boolean",
        }
    }

    /// The type as `plan` shows it and sinks that declare types read it: named by its
    /// width (InfluxDB's `integer` is 64-bit, its `float` double precision), so that
    /// IoTDB types them INT64 and DOUBLE.
    pub fn source_type(self) -> &'static str {
        match self {
            FieldType::Float => "float64",
            FieldType::Integer => "int64",
            FieldType::Unsigned => "uint64",
            FieldType::String => "string",
            FieldType::Boolean => "boolean",
        }
    }

    /// What the mapping sees.
    pub fn kind(self) -> ColumnKind {
        match self {
            FieldType::Float => ColumnKind::Float,
            FieldType::Integer => ColumnKind::Int,
            FieldType::Unsigned => ColumnKind::UInt,
            FieldType::String => ColumnKind::Text,
            FieldType::Boolean => ColumnKind::Bool,
        }
    }

    /// A JSON value of a field of this type; `Ok(None)` for null (the point lacks the
    /// field), `Err` for a value that is not of the type.
    pub fn convert(self, json: &serde_json::Value) -> Result<Option<Value>, String> {
        if json.is_null() {
            return Ok(None);
        }
        let value = match self {
            FieldType::Float => json.as_f64().map(Value::Float),
            FieldType::Integer => json.as_i64().map(Value::Int),
            FieldType::Unsigned => json.as_u64().map(Value::UInt),
            FieldType::String => json.as_str().map(|s| Value::String(s.into())),
            FieldType::Boolean => json.as_bool().map(Value::Bool),
        };
        value
            .map(Some)
            .ok_or_else(|| format!("{json} is not a value of an {} field", self.name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_declared_type_decides_not_the_json() {
        let twenty: serde_json::Value = serde_json::from_str("20").unwrap();
        assert_eq!(
            FieldType::Float.convert(&twenty),
            Ok(Some(Value::Float(20.0)))
        );
        assert_eq!(
            FieldType::Integer.convert(&twenty),
            Ok(Some(Value::Int(20)))
        );
        let big: serde_json::Value = serde_json::from_str("9223372036854775807").unwrap();
        assert_eq!(
            FieldType::Integer.convert(&big),
            Ok(Some(Value::Int(i64::MAX)))
        );
        let tenth: serde_json::Value = serde_json::from_str("0.1").unwrap();
        assert_eq!(
            FieldType::Float.convert(&tenth),
            Ok(Some(Value::Float(0.1)))
        );
        assert!(FieldType::Integer.convert(&tenth).is_err());
        assert_eq!(
            FieldType::Boolean.convert(&json!(false)),
            Ok(Some(Value::Bool(false)))
        );
        assert_eq!(
            FieldType::String.convert(&json!("a \"b\"")),
            Ok(Some(Value::String("a \"b\"".into())))
        );
        assert_eq!(FieldType::Float.convert(&json!(null)), Ok(None));
        assert!(FieldType::Boolean.convert(&json!("true")).is_err());
    }

    #[test]
    fn every_type_name_parses() {
        for t in ["float", "integer", "unsigned", "string", "boolean"] {
            assert_eq!(FieldType::parse(t).unwrap().name(), t);
        }
        assert_eq!(FieldType::parse("decimal"), None);
    }
}
