//! tsmig values → IoTDB values, and the IoTDB data type of each field.
//!
//! A field's type is declared in the mapping (`types:`) or inferred from its source column
//! as IoTDB users expect: BOOL/BIT(1) → BOOLEAN; TINYINT..INT → INT32 (INT UNSIGNED →
//! INT64); BIGINT → INT64; FLOAT → FLOAT; DOUBLE and DECIMAL → DOUBLE; text and date/time
//! → TEXT. A value that does not fit its field's type (an INT64 beyond INT32, text in a
//! number) is refused with the reason, never cut down silently.

use crate::mapping::FieldSource;
use crate::model::{format_time, Value};
use crate::source::ColumnKind;
use iotdb::client::Value as Iot;
use iotdb::protocal::{TSCompressionType, TSDataType, TSEncoding};

/// A data type by its IoTDB name.
pub fn data_type(name: &str) -> Result<TSDataType, String> {
    Ok(match name.to_ascii_uppercase().as_str() {
        "BOOLEAN" => TSDataType::Boolean,
        "INT32" => TSDataType::Int32,
        "INT64" => TSDataType::Int64,
        "FLOAT" => TSDataType::Float,
        "DOUBLE" => TSDataType::Double,
        "TEXT" => TSDataType::Text,
        _ => {
            return Err(format!(
                "`{name}` is not an IoTDB type: BOOLEAN, INT32, INT64, FLOAT, DOUBLE or TEXT"
            ))
        }
    })
}

/// An encoding by its IoTDB name.
pub fn encoding(name: &str) -> Result<TSEncoding, String> {
    Ok(match name.to_ascii_uppercase().as_str() {
        "PLAIN" => TSEncoding::Plain,
        "DICTIONARY" | "PLAIN_DICTIONARY" => TSEncoding::PlainDictionary,
        "RLE" => TSEncoding::RLE,
        "DIFF" => TSEncoding::Diff,
        "TS_2DIFF" => TSEncoding::Ts2diff,
        "BITMAP" => TSEncoding::Bitmap,
        "GORILLA_V1" => TSEncoding::GorillaV1,
        "REGULAR" => TSEncoding::Regular,
        "GORILLA" => TSEncoding::Gorilla,
        _ => {
            return Err(format!(
            "`{name}` is not an IoTDB encoding (PLAIN, RLE, TS_2DIFF, GORILLA, DICTIONARY, ...)"
        ))
        }
    })
}

/// The name IoTDB shows for an encoding.
pub fn encoding_name(e: &TSEncoding) -> &'static str {
    match e {
        TSEncoding::Plain => "PLAIN",
        TSEncoding::PlainDictionary => "DICTIONARY",
        TSEncoding::RLE => "RLE",
        TSEncoding::Diff => "DIFF",
        TSEncoding::Ts2diff => "TS_2DIFF",
        TSEncoding::Bitmap => "BITMAP",
        TSEncoding::GorillaV1 => "GORILLA_V1",
        TSEncoding::Regular => "REGULAR",
        TSEncoding::Gorilla => "GORILLA",
    }
}

/// The encodings IoTDB lets a series of type `t` have, of those tsmig can ask for: tsfile's
/// `TSEncoding.TYPE_SUPPORTED_ENCODINGS` (apache/tsfile,
/// `java/tsfile/src/main/java/org/apache/tsfile/file/metadata/enums/TSEncoding.java`),
/// which IoTDB checks before it creates a series (`SchemaUtils.checkDataTypeWithEncoding`,
/// status 507 "encoding GORILLA does not support TEXT"). DIFF, BITMAP and REGULAR encode
/// no type.
pub fn supported_encodings(t: &TSDataType) -> &'static [TSEncoding] {
    match t {
        TSDataType::Boolean => &[TSEncoding::Plain, TSEncoding::RLE],
        TSDataType::Int32 | TSDataType::Int64 => &[
            TSEncoding::Plain,
            TSEncoding::RLE,
            TSEncoding::Ts2diff,
            TSEncoding::Gorilla,
        ],
        TSDataType::Float | TSDataType::Double => &[
            TSEncoding::Plain,
            TSEncoding::RLE,
            TSEncoding::Ts2diff,
            TSEncoding::GorillaV1,
            TSEncoding::Gorilla,
        ],
        TSDataType::Text => &[TSEncoding::Plain, TSEncoding::PlainDictionary],
    }
}

/// The encoding `name` for series of type `type_name` (the key and value of one
/// `sink.encodings` entry), or why IoTDB would refuse it.
pub fn encoding_for_type(type_key: &str, name: &str) -> Result<(TSDataType, TSEncoding), String> {
    let t = data_type(type_key)?;
    let e = encoding(name)?;
    let supported = supported_encodings(&t);
    if !supported.contains(&e) {
        let names: Vec<&str> = supported.iter().map(encoding_name).collect();
        return Err(format!(
            "IoTDB cannot encode {} with {}: a {} series takes {}",
            type_name(&t),
            encoding_name(&e),
            type_name(&t),
            names.join(", ")
        ));
    }
    Ok((t, e))
}

/// A compressor by its IoTDB name.
pub fn compressor(name: &str) -> Result<TSCompressionType, String> {
    Ok(match name.to_ascii_uppercase().as_str() {
        "UNCOMPRESSED" => TSCompressionType::UNCOMPRESSED,
        "SNAPPY" => TSCompressionType::SNAPPY,
        "GZIP" => TSCompressionType::GZIP,
        "LZ4" => TSCompressionType::LZ4,
        _ => {
            return Err(format!(
                "`{name}` is not a compressor: UNCOMPRESSED, SNAPPY, GZIP or LZ4"
            ))
        }
    })
}

/// The encoding IoTDB itself would choose for a type.
pub fn default_encoding(t: &TSDataType) -> TSEncoding {
    match t {
        TSDataType::Boolean => TSEncoding::RLE,
        TSDataType::Int32 | TSDataType::Int64 => TSEncoding::Ts2diff,
        TSDataType::Float | TSDataType::Double => TSEncoding::Gorilla,
        TSDataType::Text => TSEncoding::Plain,
    }
}

/// The name IoTDB shows for a type.
pub fn type_name(t: &TSDataType) -> &'static str {
    match t {
        TSDataType::Boolean => "BOOLEAN",
        TSDataType::Int32 => "INT32",
        TSDataType::Int64 => "INT64",
        TSDataType::Float => "FLOAT",
        TSDataType::Double => "DOUBLE",
        TSDataType::Text => "TEXT",
    }
}

/// The type of a field: declared, or inferred from where it comes from.
pub fn field_type(source: &FieldSource) -> Result<TSDataType, String> {
    if let Some(declared) = &source.declared {
        return data_type(declared);
    }
    let t = source.source_type.to_ascii_lowercase();
    let base = t.split(['(', ' ']).next().unwrap_or_default();
    let unsigned = t.contains("unsigned");
    Ok(match (&source.kind, base) {
        (ColumnKind::Bool, _) => TSDataType::Boolean,
        (ColumnKind::Int | ColumnKind::UInt, "tinyint" | "smallint" | "mediumint") => {
            TSDataType::Int32
        }
        (ColumnKind::Int | ColumnKind::UInt, "int" | "integer") if !unsigned => TSDataType::Int32,
        (ColumnKind::Int | ColumnKind::UInt, _) => TSDataType::Int64,
        (ColumnKind::Float, "float") => TSDataType::Float,
        (ColumnKind::Float, _) => TSDataType::Double,
        (ColumnKind::Text | ColumnKind::Time, _) => TSDataType::Text,
        (ColumnKind::Unsupported(t), _) => {
            return Err(format!("type {t} cannot be written to IoTDB"))
        }
    })
}

/// `value` as IoTDB stores it in a series of type `t`.
pub fn convert(value: &Value, t: &TSDataType) -> Result<Iot, String> {
    let mismatch = || {
        format!(
            "{value} ({}) does not fit an {} series",
            kind(value),
            type_name(t)
        )
    };
    Ok(match (t, value) {
        (TSDataType::Boolean, Value::Bool(b)) => Iot::Bool(*b),
        (TSDataType::Int32, Value::Int(i)) => {
            Iot::Int32(i32::try_from(*i).map_err(|_| mismatch())?)
        }
        (TSDataType::Int32, Value::UInt(u)) => {
            Iot::Int32(i32::try_from(*u).map_err(|_| mismatch())?)
        }
        (TSDataType::Int64, Value::Int(i)) => Iot::Int64(*i),
        (TSDataType::Int64, Value::UInt(u)) => {
            Iot::Int64(i64::try_from(*u).map_err(|_| mismatch())?)
        }
        (TSDataType::Float, Value::Float(f)) => Iot::Float(*f as f32),
        (TSDataType::Float, Value::Decimal(d)) => Iot::Float(d.parse().map_err(|_| mismatch())?),
        (TSDataType::Float, Value::Int(i)) => Iot::Float(*i as f32),
        (TSDataType::Double, Value::Float(f)) => Iot::Double(*f),
        (TSDataType::Double, Value::Decimal(d)) => Iot::Double(d.parse().map_err(|_| mismatch())?),
        (TSDataType::Double, Value::Int(i)) => Iot::Double(*i as f64),
        (TSDataType::Double, Value::UInt(u)) => Iot::Double(*u as f64),
        (TSDataType::Text, Value::String(s)) => Iot::Text(s.to_string()),
        (TSDataType::Text, Value::Time(ns)) => Iot::Text(format_time(*ns)),
        (TSDataType::Text, Value::Decimal(d)) => Iot::Text(d.to_string()),
        (TSDataType::Text, other) => Iot::Text(other.to_string()),
        _ => return Err(mismatch()),
    })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Int(_) => "an integer",
        Value::UInt(_) => "an unsigned integer",
        Value::Float(_) | Value::Decimal(_) => "a number",
        Value::Bool(_) => "a boolean",
        Value::String(_) => "text",
        Value::Time(_) => "a time",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Name;

    fn source(kind: ColumnKind, source_type: &str, declared: Option<&str>) -> FieldSource {
        FieldSource {
            field: Name::from("f"),
            kind,
            source_type: source_type.into(),
            declared: declared.map(str::to_string),
            key: String::new(),
        }
    }

    #[test]
    fn types_follow_the_source_column_unless_declared() {
        let t = |k, s: &str, d| type_name(&field_type(&source(k, s, d)).unwrap());
        assert_eq!(t(ColumnKind::Bool, "tinyint(1)", None), "BOOLEAN");
        assert_eq!(t(ColumnKind::Int, "tinyint(4)", None), "INT32");
        assert_eq!(t(ColumnKind::Int, "int(11)", None), "INT32");
        assert_eq!(t(ColumnKind::UInt, "int(10) unsigned", None), "INT64");
        assert_eq!(t(ColumnKind::Int, "bigint(20)", None), "INT64");
        assert_eq!(t(ColumnKind::Float, "float", None), "FLOAT");
        assert_eq!(t(ColumnKind::Float, "double", None), "DOUBLE");
        assert_eq!(t(ColumnKind::Float, "decimal(8,2)", None), "DOUBLE");
        assert_eq!(t(ColumnKind::Text, "varchar(64)", None), "TEXT");
        assert_eq!(t(ColumnKind::Time, "datetime(3)", None), "TEXT");
        assert_eq!(t(ColumnKind::Int, "int(11)", Some("int64")), "INT64");
        assert!(field_type(&source(ColumnKind::Int, "int", Some("LONG"))).is_err());
    }

    #[test]
    fn an_encoding_must_be_one_iotdb_lets_the_type_have() {
        assert_eq!(
            encoding_for_type("double", "gorilla"),
            Ok((TSDataType::Double, TSEncoding::Gorilla))
        );
        assert_eq!(
            encoding_for_type("TEXT", "DICTIONARY"),
            Ok((TSDataType::Text, TSEncoding::PlainDictionary))
        );
        assert!(encoding_for_type("INT64", "GORILLA").is_ok());
        assert!(encoding_for_type("FLOAT", "GORILLA_V1").is_ok());
        assert_eq!(
            encoding_for_type("TEXT", "GORILLA"),
            Err(
                "IoTDB cannot encode TEXT with GORILLA: a TEXT series takes PLAIN, DICTIONARY"
                    .into()
            )
        );
        for (t, e) in [
            ("BOOLEAN", "TS_2DIFF"),
            ("INT32", "GORILLA_V1"),
            ("DOUBLE", "DIFF"),
            ("INT64", "BITMAP"),
            ("FLOAT", "REGULAR"),
            ("TEXT", "RLE"),
        ] {
            assert!(encoding_for_type(t, e).is_err(), "{t} {e}");
        }
        // Every default is one IoTDB takes.
        for t in ["BOOLEAN", "INT32", "INT64", "FLOAT", "DOUBLE", "TEXT"] {
            let t = data_type(t).unwrap();
            assert!(supported_encodings(&t).contains(&default_encoding(&t)));
        }
    }

    #[test]
    fn values_convert_exactly_or_are_refused() {
        assert_eq!(
            convert(&Value::Int(-5), &TSDataType::Int32),
            Ok(Iot::Int32(-5))
        );
        assert!(convert(&Value::Int(1 << 40), &TSDataType::Int32)
            .unwrap_err()
            .contains("does not fit an INT32"));
        assert_eq!(
            convert(&Value::Decimal(Name::from("12.3")), &TSDataType::Float),
            Ok(Iot::Float(12.3))
        );
        assert_eq!(
            convert(&Value::Decimal(Name::from("1012.30")), &TSDataType::Double),
            Ok(Iot::Double(1012.3))
        );
        assert_eq!(
            convert(&Value::Bool(true), &TSDataType::Boolean),
            Ok(Iot::Bool(true))
        );
        assert!(convert(&Value::String("x".into()), &TSDataType::Double).is_err());
        assert_eq!(
            convert(&Value::Time(0), &TSDataType::Text),
            Ok(Iot::Text("1970-01-01T00:00:00Z".into()))
        );
    }
}
