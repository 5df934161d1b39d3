//! The binary protocol's result-set row, decoded in place.
//!
//! A backfill chunk is one streaming `SELECT` over the binary protocol. mysql_async would
//! build a `Row` of its own `Value`s for every row (a vector, and an allocation for every
//! string and DECIMAL) that the source then converted again; through the patched
//! `QueryResult::next_raw` (vendor/mysql_async/TSMIG-PATCH.md) the source gets each row's
//! packet instead, and this module reads its values as [`Raw`]s borrowing from the packet,
//! so the conversion ([`super::encoding::convert_raw`]) makes the only copy a value needs.
//!
//! The layout ("Binary Protocol Resultset Row" in MySQL's and MariaDB's protocol docs): a
//! 0x00 header, a NULL bitmap of `(columns + 7 + 2) / 8` bytes whose first two bits are
//! reserved, then each non-NULL value in column order, encoded by the column's wire type
//! from the result set's metadata: TINY/SHORT/LONG/LONGLONG as 1/2/4/8 little-endian bytes
//! (signed or not by the column's UNSIGNED flag), FLOAT/DOUBLE as 4/8 bytes, DATE, DATETIME
//! and TIMESTAMP as a length byte (0, 4, 7 or 11) and that many bytes of fields, TIME the
//! same (0, 8 or 12), everything else (DECIMAL, strings, BIT, ENUM, SET, JSON, blobs) as a
//! length-encoded string. Each value is the one mysql_common's `RowDeserializer<_, Binary>`
//! builds for the same bytes, malformed rows included (a property test below decodes random
//! rows with both), so reading a row here changes no value a job writes.

use super::encoding::Raw;
use mysql_async::consts::{ColumnFlags, ColumnType};

/// How one column's values are laid out on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    /// 1, 2, 4 or 8 bytes; `true` where the column is UNSIGNED.
    Int(u8, bool),
    /// 4 bytes.
    Float,
    /// 8 bytes.
    Double,
    /// A length byte, then year..microsecond.
    DateTime,
    /// A length byte, then sign, days..microsecond.
    Time,
    /// A length-encoded string.
    Bytes,
    /// MYSQL_TYPE_NULL: no bytes, always NULL.
    Null,
}

/// The wire types of a result set's columns, read once per chunk from its metadata.
#[derive(Debug, Clone)]
pub struct Layout {
    wires: Vec<Wire>,
}

/// A row packet that does not hold what its result set's metadata promises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

impl Layout {
    /// The layout of a result set, from its columns' types and flags. A type the binary
    /// protocol has no encoding for in a result row is refused, naming the column.
    pub fn new(columns: &[mysql_async::Column]) -> Result<Self, String> {
        let wires = columns
            .iter()
            .map(|c| {
                wire(c.column_type(), c.flags()).ok_or_else(|| {
                    format!(
                        "column `{}` has the wire type {:?}, which a binary-protocol row cannot hold",
                        c.name_str(),
                        c.column_type()
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { wires })
    }

    /// How many columns a row has.
    pub fn len(&self) -> usize {
        self.wires.len()
    }
}

fn wire(column_type: ColumnType, flags: ColumnFlags) -> Option<Wire> {
    use ColumnType::*;
    let unsigned = flags.contains(ColumnFlags::UNSIGNED_FLAG);
    Some(match column_type {
        MYSQL_TYPE_STRING
        | MYSQL_TYPE_VAR_STRING
        | MYSQL_TYPE_BLOB
        | MYSQL_TYPE_TINY_BLOB
        | MYSQL_TYPE_MEDIUM_BLOB
        | MYSQL_TYPE_LONG_BLOB
        | MYSQL_TYPE_SET
        | MYSQL_TYPE_ENUM
        | MYSQL_TYPE_DECIMAL
        | MYSQL_TYPE_VARCHAR
        | MYSQL_TYPE_BIT
        | MYSQL_TYPE_NEWDECIMAL
        | MYSQL_TYPE_GEOMETRY
        | MYSQL_TYPE_VECTOR
        | MYSQL_TYPE_JSON => Wire::Bytes,
        MYSQL_TYPE_TINY => Wire::Int(1, unsigned),
        MYSQL_TYPE_SHORT | MYSQL_TYPE_YEAR => Wire::Int(2, unsigned),
        MYSQL_TYPE_LONG | MYSQL_TYPE_INT24 => Wire::Int(4, unsigned),
        MYSQL_TYPE_LONGLONG => Wire::Int(8, unsigned),
        MYSQL_TYPE_FLOAT => Wire::Float,
        MYSQL_TYPE_DOUBLE => Wire::Double,
        MYSQL_TYPE_TIMESTAMP | MYSQL_TYPE_DATE | MYSQL_TYPE_NEWDATE | MYSQL_TYPE_DATETIME => {
            Wire::DateTime
        }
        MYSQL_TYPE_TIME => Wire::Time,
        MYSQL_TYPE_NULL => Wire::Null,
        _ => return None,
    })
}

/// Bytes read off the front of a packet.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.0.len() < n {
            return Err(Malformed(format!(
                "the row ends {} bytes early",
                n - self.0.len()
            )));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }

    /// A length-encoded integer, read as mysql_common reads it (0xFB and 0xFF, which no
    /// length should start with, read as 0).
    fn lenenc(&mut self) -> Result<u64, Malformed> {
        Ok(match self.u8()? {
            x @ 0..=0xfa => x as u64,
            0xfc => u16::from_le_bytes(self.array()?) as u64,
            0xfd => {
                let [a, b, c] = self.array()?;
                u32::from_le_bytes([a, b, c, 0]) as u64
            }
            0xfe => u64::from_le_bytes(self.array()?),
            0xfb | 0xff => 0,
        })
    }
}

/// Reads one row packet, handing each column's index and value to `each` in column order.
/// `each` may have been called for the first columns when a later one turns out malformed.
pub fn decode<'a>(
    packet: &'a [u8],
    layout: &Layout,
    mut each: impl FnMut(usize, Raw<'a>),
) -> Result<(), Malformed> {
    let mut buf = Cursor(packet);
    buf.u8()?; // the header
    let bitmap = buf.take((layout.wires.len() + 7 + 2) / 8)?;
    for (i, &wire) in layout.wires.iter().enumerate() {
        let bit = i + 2;
        if bitmap[bit / 8] & (1 << (bit % 8)) != 0 {
            each(i, Raw::Null);
        } else {
            each(i, read_value(&mut buf, wire)?);
        }
    }
    Ok(())
}

/// The value of column `at` of one row packet, reading no further than it.
pub fn column<'a>(packet: &'a [u8], layout: &Layout, at: usize) -> Result<Raw<'a>, Malformed> {
    let mut buf = Cursor(packet);
    buf.u8()?; // the header
    let bitmap = buf.take((layout.wires.len() + 7 + 2) / 8)?;
    for (i, &wire) in layout.wires.iter().enumerate().take(at + 1) {
        let bit = i + 2;
        let value = if bitmap[bit / 8] & (1 << (bit % 8)) != 0 {
            Raw::Null
        } else {
            read_value(&mut buf, wire)?
        };
        if i == at {
            return Ok(value);
        }
    }
    Err(Malformed(format!("the row has no column {at}")))
}

/// Reads one non-NULL value of wire type `wire` off the front of `buf`.
#[inline(always)]
fn read_value<'a>(buf: &mut Cursor<'a>, wire: Wire) -> Result<Raw<'a>, Malformed> {
    Ok(match wire {
        Wire::Int(1, false) => Raw::Int(buf.u8()? as i8 as i64),
        Wire::Int(1, true) => Raw::Int(buf.u8()? as i64),
        Wire::Int(2, false) => Raw::Int(i16::from_le_bytes(buf.array()?) as i64),
        Wire::Int(2, true) => Raw::Int(u16::from_le_bytes(buf.array()?) as i64),
        Wire::Int(4, false) => Raw::Int(i32::from_le_bytes(buf.array()?) as i64),
        Wire::Int(4, true) => Raw::Int(u32::from_le_bytes(buf.array()?) as i64),
        Wire::Int(_, false) => Raw::Int(i64::from_le_bytes(buf.array()?)),
        Wire::Int(_, true) => {
            let u = u64::from_le_bytes(buf.array()?);
            i64::try_from(u).map_or(Raw::UInt(u), Raw::Int)
        }
        Wire::Float => Raw::Float(f32::from_le_bytes(buf.array()?)),
        Wire::Double => Raw::Double(f64::from_le_bytes(buf.array()?)),
        Wire::DateTime => {
            let len = buf.u8()? as usize;
            let b = buf.take(len)?;
            let mut v = (0u16, 0u8, 0u8, 0u8, 0u8, 0u8, 0u32);
            if len >= 4 {
                v.0 = u16::from_le_bytes([b[0], b[1]]);
                v.1 = b[2];
                v.2 = b[3];
            }
            if len >= 7 {
                v.3 = b[4];
                v.4 = b[5];
                v.5 = b[6];
            }
            if len == 11 {
                v.6 = u32::from_le_bytes([b[7], b[8], b[9], b[10]]);
            }
            Raw::Date(v.0, v.1, v.2, v.3, v.4, v.5, v.6)
        }
        Wire::Time => {
            let len = buf.u8()? as usize;
            let b = buf.take(len)?;
            let mut v = (false, 0u32, 0u8, 0u8, 0u8, 0u32);
            if len >= 8 {
                v.0 = b[0] == 1;
                v.1 = u32::from_le_bytes([b[1], b[2], b[3], b[4]]);
                v.2 = b[5];
                v.3 = b[6];
                v.4 = b[7];
            }
            if len == 12 {
                v.5 = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
            }
            Raw::Time(v.0, v.1, v.2, v.3, v.4, v.5)
        }
        Wire::Bytes => {
            let len = buf.lenenc()?;
            let len =
                usize::try_from(len).map_err(|_| Malformed(format!("a string of {len} bytes")))?;
            Raw::Bytes(buf.take(len)?)
        }
        Wire::Null => Raw::Null,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_async::{Column, Value as My};
    use mysql_common::io::ParseBuf;
    use mysql_common::proto::{Binary, MyDeserialize};
    use mysql_common::row::RowDeserializer;
    use mysql_common::value::ServerSide;
    use proptest::prelude::*;
    use std::sync::Arc;

    /// A value compared bit for bit (a NaN equals the same NaN), written without
    /// mysql_common's `Debug`, which overflows on a TIME of more than 178 956 970 days.
    fn exact(value: &My) -> String {
        match *value {
            My::NULL => "NULL".into(),
            My::Bytes(ref b) => format!("Bytes({b:?})"),
            My::Int(i) => format!("Int({i})"),
            My::UInt(u) => format!("UInt({u})"),
            My::Float(f) => format!("Float({:#x})", f.to_bits()),
            My::Double(f) => format!("Double({:#x})", f.to_bits()),
            My::Date(y, mo, d, h, mi, s, us) => format!("Date{:?}", (y, mo, d, h, mi, s, us)),
            My::Time(neg, d, h, mi, s, us) => format!("Time{:?}", (neg, d, h, mi, s, us)),
        }
    }

    /// What mysql_common makes of a packet: its values, or that it failed.
    fn reference(packet: &[u8], columns: &Arc<[Column]>) -> Option<Vec<String>> {
        let mut buf = ParseBuf(packet);
        RowDeserializer::<ServerSide, Binary>::deserialize(columns.clone(), &mut buf)
            .ok()
            .map(|row| {
                mysql_common::row::Row::from(row)
                    .unwrap()
                    .iter()
                    .map(exact)
                    .collect()
            })
    }

    fn ours(packet: &[u8], layout: &Layout) -> Option<Vec<String>> {
        let mut values = Vec::new();
        decode(packet, layout, |i, raw| {
            assert_eq!(i, values.len());
            values.push(exact(&My::from(raw)));
        })
        .ok()
        .map(|()| values)
    }

    const TYPES: &[ColumnType] = &[
        ColumnType::MYSQL_TYPE_TINY,
        ColumnType::MYSQL_TYPE_SHORT,
        ColumnType::MYSQL_TYPE_YEAR,
        ColumnType::MYSQL_TYPE_LONG,
        ColumnType::MYSQL_TYPE_INT24,
        ColumnType::MYSQL_TYPE_LONGLONG,
        ColumnType::MYSQL_TYPE_FLOAT,
        ColumnType::MYSQL_TYPE_DOUBLE,
        ColumnType::MYSQL_TYPE_NEWDECIMAL,
        ColumnType::MYSQL_TYPE_VAR_STRING,
        ColumnType::MYSQL_TYPE_BLOB,
        ColumnType::MYSQL_TYPE_BIT,
        ColumnType::MYSQL_TYPE_JSON,
        ColumnType::MYSQL_TYPE_DATETIME,
        ColumnType::MYSQL_TYPE_TIMESTAMP,
        ColumnType::MYSQL_TYPE_DATE,
        ColumnType::MYSQL_TYPE_TIME,
        ColumnType::MYSQL_TYPE_NULL,
    ];

    /// One column's value as the server would send it, from random parts.
    fn encode(column_type: ColumnType, seed: u64, len_pick: u8, text: &[u8], out: &mut Vec<u8>) {
        let bytes = seed.to_le_bytes();
        match wire(column_type, ColumnFlags::empty()).unwrap() {
            Wire::Int(n, _) => out.extend_from_slice(&bytes[..n as usize]),
            Wire::Float => out.extend_from_slice(&bytes[..4]),
            Wire::Double => out.extend_from_slice(&bytes[..8]),
            Wire::DateTime => {
                // Mostly the lengths a server sends; now and then any length.
                let len = [0, 4, 7, 11, len_pick % 16][len_pick as usize % 5];
                out.push(len);
                out.extend((0..len).map(|k| bytes[k as usize % 8].wrapping_add(k)));
            }
            Wire::Time => {
                let len = [0, 8, 12, len_pick % 16][len_pick as usize % 4];
                out.push(len);
                out.extend((0..len).map(|k| bytes[k as usize % 8].wrapping_add(k)));
            }
            Wire::Bytes => {
                // Lengths written in each of the length encoding's forms.
                let n = text.len();
                match len_pick % 4 {
                    0 if n < 251 => out.push(n as u8),
                    1 => {
                        out.push(0xfc);
                        out.extend_from_slice(&(n as u16).to_le_bytes());
                    }
                    2 => {
                        out.push(0xfd);
                        out.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
                    }
                    _ => {
                        out.push(0xfe);
                        out.extend_from_slice(&(n as u64).to_le_bytes());
                    }
                }
                out.extend_from_slice(text);
            }
            Wire::Null => {}
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Random rows (any mix of types, flags and NULLs, every length form, odd DATETIME
        /// lengths), whole or cut short, or with a random byte changed: this decoder
        /// and mysql_common's agree on every value, and on which packets are malformed.
        #[test]
        fn decodes_every_row_as_mysql_common_does(
            columns in prop::collection::vec(
                (0..TYPES.len(), any::<bool>(), any::<bool>(), any::<u64>(), any::<u8>(),
                 prop::collection::vec(any::<u8>(), 0..40)),
                0..20),
            cut in any::<u16>(),
            damage in prop::option::of((any::<u16>(), any::<u8>())),
        ) {
            let metadata: Arc<[Column]> = columns
                .iter()
                .map(|&(t, unsigned, _, _, _, _)| {
                    let flags = if unsigned { ColumnFlags::UNSIGNED_FLAG } else { ColumnFlags::empty() };
                    Column::new(TYPES[t]).with_flags(flags)
                })
                .collect::<Vec<_>>()
                .into();
            let layout = Layout::new(&metadata).unwrap();
            let mut packet = vec![0u8; 1 + (columns.len() + 9) / 8];
            for (i, &(t, _, null, seed, len_pick, ref text)) in columns.iter().enumerate() {
                if null {
                    packet[1 + (i + 2) / 8] |= 1 << ((i + 2) % 8);
                } else {
                    encode(TYPES[t], seed, len_pick, text, &mut packet);
                }
            }
            let whole = ours(&packet, &layout);
            prop_assert!(whole.is_some(), "a well-formed row was refused");
            prop_assert_eq!(&whole, &reference(&packet, &metadata));
            // One column read on its own is the value the whole row's decode gives it.
            for (i, value) in whole.iter().flatten().enumerate() {
                let one = column(&packet, &layout, i).map(|raw| exact(&My::from(raw)));
                prop_assert_eq!(one.as_ref(), Ok(value));
            }
            let mut cut_short = packet.clone();
            cut_short.truncate(cut as usize % (packet.len() + 1));
            prop_assert_eq!(ours(&cut_short, &layout), reference(&cut_short, &metadata));
            if let Some((at, byte)) = damage {
                let at = at as usize % packet.len();
                packet[at] = byte;
                prop_assert_eq!(ours(&packet, &layout), reference(&packet, &metadata));
            }
        }
    }

    #[test]
    fn a_sensor_row_reads_as_its_values() {
        // id BIGINT UNSIGNED, ts DATETIME(6), device VARCHAR, temp DECIMAL, ok TINYINT, x NULL.
        let metadata: Vec<Column> = vec![
            Column::new(ColumnType::MYSQL_TYPE_LONGLONG).with_flags(ColumnFlags::UNSIGNED_FLAG),
            Column::new(ColumnType::MYSQL_TYPE_DATETIME),
            Column::new(ColumnType::MYSQL_TYPE_VAR_STRING),
            Column::new(ColumnType::MYSQL_TYPE_NEWDECIMAL),
            Column::new(ColumnType::MYSQL_TYPE_TINY),
            Column::new(ColumnType::MYSQL_TYPE_DOUBLE),
        ];
        let layout = Layout::new(&metadata).unwrap();
        let mut packet = vec![0x00, 0b1000_0000];
        packet.extend_from_slice(&u64::MAX.to_le_bytes());
        packet.extend_from_slice(&[11, 0xea, 0x07, 1, 2, 3, 4, 5, 0x40, 0xe2, 0x01, 0x00]);
        packet.extend_from_slice(b"\x04dev1");
        packet.extend_from_slice(b"\x0512.50");
        packet.push(0xff);
        let mut values = Vec::new();
        decode(&packet, &layout, |_, raw| values.push(My::from(raw))).unwrap();
        assert_eq!(
            values,
            vec![
                My::UInt(u64::MAX),
                My::Date(2026, 1, 2, 3, 4, 5, 123_456),
                My::Bytes(b"dev1".to_vec()),
                My::Bytes(b"12.50".to_vec()),
                My::Int(-1),
                My::NULL,
            ]
        );
        assert_eq!(
            decode(&packet[..packet.len() - 3], &layout, |_, _| ()),
            Err(Malformed("the row ends 2 bytes early".into()))
        );
    }
}
