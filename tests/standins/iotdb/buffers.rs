//! The byte layouts IoTDB packs inside Thrift `binary` fields, decoded and encoded as
//! IoTDB's server does (QueryDataSetUtils.readTimesFromBuffer,
//! readTabletValuesFromBuffer, readBitMapsFromBuffer; InsertRowStatement's value
//! buffer; convertTsBlockByFetchSize for TSQueryDataSet). Everything is big-endian.
//!
//! Tablet (`TSInsertTabletReq.timestamps` / `.values`):
//! ```text
//! timestamps: size × i64
//! values:     per column, size values of its type (column-major):
//!               BOOLEAN 1 byte (1 = true) | INT32 i32 | INT64 i64 | FLOAT f32 | DOUBLE f64
//!               | TEXT i32 length + bytes
//!             then, only if bytes remain, per column: 1 byte "has bitmap" (1 = yes) and
//!             if so size/8+1 bytes; bit (row % 8) of byte (row / 8), least significant
//!             first, set = the value at that row is null (its placeholder is ignored)
//! ```
//! Record (`TSInsertRecordReq.values`): per measurement, 1 type byte (TSDataType id, or
//! -2 for null) and the value as above.
//!
//! TSQueryDataSet (answers to queries): `time` is rows × i64; per column `valueList`
//! holds the non-null values as above and `bitmapList` one byte per 8 rows, most
//! significant bit first, set = not null.

use super::protocol::{Struct, Value};
use super::store::{Cell, Column};
use super::{StandInDataType, StandInValue};

/// The Java client's marker for a null value in a record (SessionUtils.TYPE_NULL).
const TYPE_NULL: i8 = -2;

struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.bytes.len() < n {
            return Err(format!(
                "{} ends early: {n} more bytes wanted, {} left",
                self.what,
                self.bytes.len()
            ));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }

    fn value(&mut self, data_type: StandInDataType) -> Result<StandInValue, String> {
        Ok(match data_type {
            StandInDataType::Boolean => StandInValue::Boolean(self.take(1)?[0] == 1),
            StandInDataType::Int32 => StandInValue::Int32(i32::from_be_bytes(self.array()?)),
            StandInDataType::Int64 => StandInValue::Int64(i64::from_be_bytes(self.array()?)),
            StandInDataType::Float => StandInValue::Float(f32::from_be_bytes(self.array()?)),
            StandInDataType::Double => StandInValue::Double(f64::from_be_bytes(self.array()?)),
            StandInDataType::Text => {
                let length = i32::from_be_bytes(self.array()?);
                let length = usize::try_from(length)
                    .map_err(|_| format!("{}: negative text length {length}", self.what))?;
                // IoTDB keeps TEXT as bytes; the stand-in keeps strings.
                StandInValue::Text(String::from_utf8_lossy(self.take(length)?).into_owned())
            }
        })
    }
}

/// Decodes one tablet into its timestamps and one column per measurement.
pub(crate) fn decode_tablet(
    measurements: &[String],
    types: &[StandInDataType],
    size: i32,
    timestamps: &[u8],
    values: &[u8],
) -> Result<(Vec<i64>, Vec<Column>), String> {
    let rows = usize::try_from(size).map_err(|_| format!("tablet size {size} is negative"))?;
    if types.len() != measurements.len() {
        return Err(format!(
            "tablet has {} measurements but {} types",
            measurements.len(),
            types.len()
        ));
    }
    let mut times = Reader {
        bytes: timestamps,
        what: "tablet timestamps",
    };
    let timestamps = (0..rows)
        .map(|_| Ok(i64::from_be_bytes(times.array()?)))
        .collect::<Result<Vec<_>, String>>()?;

    let mut reader = Reader {
        bytes: values,
        what: "tablet values",
    };
    let mut columns = Vec::with_capacity(types.len());
    for (measurement, data_type) in measurements.iter().zip(types) {
        let cells = (0..rows)
            .map(|_| reader.value(*data_type).map(Cell::Typed))
            .collect::<Result<Vec<_>, String>>()?;
        columns.push(Column {
            measurement: measurement.clone(),
            declared: Some(*data_type),
            cells,
        });
    }
    if !reader.bytes.is_empty() {
        reader.what = "tablet bitmaps";
        for column in &mut columns {
            let has_bitmap = reader.take(1)?[0] == 1;
            if !has_bitmap {
                continue;
            }
            let bits = reader.take(rows / 8 + 1)?;
            for (row, cell) in column.cells.iter_mut().enumerate() {
                if bits[row / 8] & (1 << (row % 8)) != 0 {
                    *cell = Cell::Null;
                }
            }
        }
    }
    Ok((timestamps, columns))
}

/// Decodes the value buffer of one record: one cell per measurement.
pub(crate) fn decode_record(measurements: &[String], values: &[u8]) -> Result<Vec<Column>, String> {
    let mut reader = Reader {
        bytes: values,
        what: "record values",
    };
    let mut columns = Vec::with_capacity(measurements.len());
    for measurement in measurements {
        let type_id = reader.take(1)?[0] as i8;
        let (declared, cell) = if type_id == TYPE_NULL {
            (None, Cell::Null)
        } else {
            let data_type = StandInDataType::from_id(i32::from(type_id)).ok_or_else(|| {
                format!("not implemented by the stand-in: data type id {type_id} in a record")
            })?;
            (Some(data_type), Cell::Typed(reader.value(data_type)?))
        };
        columns.push(Column {
            measurement: measurement.clone(),
            declared,
            cells: vec![cell],
        });
    }
    Ok(columns)
}

pub(crate) fn encode_value(value: &StandInValue, out: &mut Vec<u8>) {
    match value {
        StandInValue::Boolean(b) => out.push(u8::from(*b)),
        StandInValue::Int32(i) => out.extend_from_slice(&i.to_be_bytes()),
        StandInValue::Int64(i) => out.extend_from_slice(&i.to_be_bytes()),
        StandInValue::Float(f) => out.extend_from_slice(&f.to_be_bytes()),
        StandInValue::Double(d) => out.extend_from_slice(&d.to_be_bytes()),
        StandInValue::Text(s) => {
            out.extend_from_slice(&(s.len() as i32).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
}

/// One TSQueryDataSet (client.thrift: 1 time, 2 valueList, 3 bitmapList) for `rows`.
pub(crate) fn encode_query_data_set(
    columns: usize,
    rows: &[(i64, Vec<Option<StandInValue>>)],
) -> Struct {
    let mut time = Vec::with_capacity(rows.len() * 8);
    let mut value_list = vec![Vec::new(); columns];
    let mut bitmap_list = vec![vec![0u8; rows.len().div_ceil(8)]; columns];
    for (row, (t, values)) in rows.iter().enumerate() {
        time.extend_from_slice(&t.to_be_bytes());
        for (column, value) in values.iter().enumerate() {
            if let Some(value) = value {
                encode_value(value, &mut value_list[column]);
                bitmap_list[column][row / 8] |= 0x80 >> (row % 8);
            }
        }
    }
    Struct::new()
        .with(1, Value::Binary(time))
        .with(2, Value::binaries(value_list))
        .with(3, Value::binaries(bitmap_list))
}
