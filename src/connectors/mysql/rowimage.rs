//! A lean decoder of binlog row images for the column types sensor tables use.
//!
//! mysql_async's `RowsEventData::rows()` builds, for every row image, a fresh vector of
//! values *and* a vector of column descriptions (a name formatted as `@<i>` per column, an
//! `Arc` of them, the optional-metadata iterators), and finds each column's metadata by
//! walking the table map from its start: 2–3 µs a row, most of it allocation — the CDC
//! reader's bottleneck (BENCHMARKS.md). This module reads the same bytes directly, once the
//! table map has been turned into a [`RowImage`] (a layout per column), and hands over only
//! the job's projected columns, each as the value `rows()` would give, borrowed from the
//! event's bytes (a [`Raw`]: no allocation per value); `binlog.rs` converts them as it
//! converts `rows()`'s values, fixing them up where `rows()` needs it.
//!
//! Types read here: TINYINT, SMALLINT, MEDIUMINT, INT, BIGINT (signed or unsigned), FLOAT,
//! DOUBLE, DECIMAL, CHAR/VARCHAR, TEXT/BLOB, DATETIME(0..6), TIMESTAMP(0..6), DATE. A table
//! with any other column type (ENUM, SET, BIT, YEAR, TIME, JSON, GEOMETRY, old pre-5.6
//! temporal types), and a rows event whose images are not full, keep using `rows()`: the
//! fallback is per table map, so correctness never depends on this decoder knowing a type.
//!
//! Values match `rows()` with two deliberate exceptions that `binlog.rs` otherwise repairs
//! afterwards: MEDIUMINT is sign-extended (mysql_common does not), and integers of an
//! UNSIGNED column come as `UInt` even without `binlog_row_metadata=FULL` (signedness is
//! taken from the column's conversion, i.e. from information_schema).

use super::encoding::{Conversion, Raw};
use mysql_async::binlog::events::TableMapEvent;
use mysql_async::consts::ColumnType;
use std::fmt::Write;
use std::io;

/// How one column's value is laid out in a row image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// A little-endian integer of this many bytes (1, 2, 3, 4 or 8).
    Int(u8),
    Float,
    Double,
    /// DECIMAL(precision, scale) in MySQL's binary decimal format.
    Decimal {
        precision: u8,
        scale: u8,
    },
    /// A little-endian length of this many bytes, then that many bytes (CHAR, VARCHAR,
    /// TEXT, BLOB).
    Bytes(u8),
    /// DATETIME2 with this many fractional digits.
    Datetime(u8),
    /// TIMESTAMP2 with this many fractional digits.
    Timestamp(u8),
    /// DATE (3 bytes).
    Date,
}

/// One column of the table map.
#[derive(Debug, Clone, Copy)]
struct Column {
    layout: Layout,
    /// Where the value goes in the projected row, if the job reads the column.
    slot: Option<u16>,
    /// Integers of an UNSIGNED column.
    unsigned: bool,
}

/// The layout of one table map's row images.
#[derive(Debug, Clone)]
pub(super) struct RowImage {
    columns: Vec<Column>,
    projected: usize,
}

impl RowImage {
    /// The layout for `tme`, reading the columns `projection` names (schema indices, in row
    /// order) with `conversions` (per schema column); `None` if a column has a type this
    /// decoder does not read.
    pub(super) fn new(
        tme: &TableMapEvent<'_>,
        projection: &[usize],
        conversions: &[Conversion],
    ) -> Option<Self> {
        let n = tme.columns_count() as usize;
        let mut columns = Vec::with_capacity(n);
        for i in 0..n {
            let column_type = tme.get_column_type(i).ok()??;
            let meta = tme.get_column_metadata(i).unwrap_or(&[]);
            columns.push(Column {
                layout: layout(column_type, meta)?,
                slot: projection.iter().position(|&p| p == i).map(|s| s as u16),
                unsigned: conversions.get(i) == Some(&Conversion::UInt),
            });
        }
        if projection.iter().any(|&p| p >= n) {
            return None;
        }
        Some(Self {
            columns,
            projected: projection.len(),
        })
    }

    /// How many columns the job reads: the slots `read` fills.
    pub(super) fn projected(&self) -> usize {
        self.projected
    }

    /// Reads one full row image (null bitmap, then the non-null values) from the front of
    /// `data`, calling `each(slot, value)` for every projected column that is not NULL, in
    /// the table's column order (`slot`: its place in the job's row). DECIMAL and
    /// TIMESTAMP values are text written into `scratch`.
    pub(super) fn read(
        &self,
        data: &mut &[u8],
        scratch: &mut String,
        mut each: impl FnMut(usize, Raw<'_>),
    ) -> io::Result<()> {
        let nulls = take(data, self.columns.len().div_ceil(8))?;
        for (i, column) in self.columns.iter().enumerate() {
            if nulls[i / 8] & (1 << (i % 8)) != 0 {
                continue;
            }
            match column.slot {
                Some(slot) => each(slot as usize, value(data, column, &mut *scratch)?),
                None => skip(data, column.layout)?,
            }
        }
        Ok(())
    }
}

fn layout(column_type: ColumnType, meta: &[u8]) -> Option<Layout> {
    use ColumnType::*;
    let byte = |i: usize| meta.get(i).copied();
    Some(match column_type {
        MYSQL_TYPE_TINY => Layout::Int(1),
        MYSQL_TYPE_SHORT => Layout::Int(2),
        MYSQL_TYPE_INT24 => Layout::Int(3),
        MYSQL_TYPE_LONG => Layout::Int(4),
        MYSQL_TYPE_LONGLONG => Layout::Int(8),
        MYSQL_TYPE_FLOAT => Layout::Float,
        MYSQL_TYPE_DOUBLE => Layout::Double,
        MYSQL_TYPE_NEWDECIMAL => Layout::Decimal {
            precision: byte(0)?,
            scale: byte(1)?,
        },
        MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING => {
            let max = u16::from_le_bytes([byte(0)?, byte(1)?]);
            Layout::Bytes(if max < 256 { 1 } else { 2 })
        }
        MYSQL_TYPE_TINY_BLOB | MYSQL_TYPE_BLOB | MYSQL_TYPE_MEDIUM_BLOB | MYSQL_TYPE_LONG_BLOB => {
            match byte(0)? {
                n @ 1..=4 => Layout::Bytes(n),
                _ => return None,
            }
        }
        // CHAR (the table map's real type; ENUM and SET, which share the wire type, are
        // reported as themselves and are not read here). The maximum length in bytes is
        // packed into the metadata as in MySQL's Field_string::do_save_field_metadata.
        MYSQL_TYPE_STRING => {
            let (b0, b1) = (byte(0)? as usize, byte(1)? as usize);
            let max = if b0 & 0x30 != 0x30 {
                b1 | (((b0 & 0x30) ^ 0x30) << 4)
            } else {
                b1
            };
            Layout::Bytes(if max < 256 { 1 } else { 2 })
        }
        // Fractional digits: 0 to 6. mysql_common reads no fraction for more (which no
        // server writes); such a table is left to it, so the two never disagree on where
        // a value ends (found by fuzzing).
        MYSQL_TYPE_DATETIME2 => Layout::Datetime(byte(0).filter(|&dec| dec <= 6)?),
        MYSQL_TYPE_TIMESTAMP2 => Layout::Timestamp(byte(0).filter(|&dec| dec <= 6)?),
        MYSQL_TYPE_NEWDATE => Layout::Date,
        _ => return None,
    })
}

fn take<'a>(data: &mut &'a [u8], n: usize) -> io::Result<&'a [u8]> {
    if data.len() < n {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "row image ends inside a value",
        ));
    }
    let (head, rest) = data.split_at(n);
    *data = rest;
    Ok(head)
}

fn le(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

/// Bytes of the fractional part of DATETIME2/TIMESTAMP2 with `dec` digits.
fn frac_bytes(dec: u8) -> usize {
    (dec as usize).div_ceil(2)
}

fn skip(data: &mut &[u8], layout: Layout) -> io::Result<()> {
    let n = match layout {
        Layout::Int(n) => n as usize,
        Layout::Float => 4,
        Layout::Double => 8,
        Layout::Decimal { precision, scale } => {
            decimal_bin_size(precision as usize, scale as usize)
        }
        Layout::Bytes(n) => le(take(data, n as usize)?) as usize,
        Layout::Datetime(dec) => 5 + frac_bytes(dec),
        Layout::Timestamp(dec) => 4 + frac_bytes(dec),
        Layout::Date => 3,
    };
    take(data, n).map(|_| ())
}

/// One value: borrowed from `data`, or (DECIMAL and TIMESTAMP, which `rows()` gives as
/// text) written into `scratch`.
fn value<'a: 'r, 's: 'r, 'r>(
    data: &mut &'a [u8],
    column: &Column,
    scratch: &'s mut String,
) -> io::Result<Raw<'r>> {
    Ok(match column.layout {
        Layout::Int(n) => {
            let raw = le(take(data, n as usize)?);
            if column.unsigned {
                Raw::UInt(raw)
            } else {
                let shift = 64 - 8 * u32::from(n);
                Raw::Int(((raw << shift) as i64) >> shift)
            }
        }
        Layout::Float => Raw::Float(f32::from_le_bytes(
            take(data, 4)?.try_into().expect("4 bytes"),
        )),
        Layout::Double => Raw::Double(f64::from_le_bytes(
            take(data, 8)?.try_into().expect("8 bytes"),
        )),
        Layout::Decimal { precision, scale } => {
            let size = decimal_bin_size(precision as usize, scale as usize);
            scratch.clear();
            decimal_text(
                take(data, size)?,
                precision as usize,
                scale as usize,
                scratch,
            )?;
            Raw::Bytes(scratch.as_bytes())
        }
        Layout::Bytes(n) => {
            let len = le(take(data, n as usize)?) as usize;
            Raw::Bytes(take(data, len)?)
        }
        Layout::Datetime(dec) => {
            let bytes = take(data, 5 + frac_bytes(dec))?;
            let int = be(&bytes[..5]) as i64 - 0x80_0000_0000;
            datetime(int, fraction(&bytes[5..], dec))?
        }
        Layout::Timestamp(dec) => {
            let bytes = take(data, 4 + frac_bytes(dec))?;
            let sec = be(&bytes[..4]) as u32 as i32;
            let usec = fraction(&bytes[4..], dec);
            scratch.clear();
            let _ = match usec {
                0 => write!(scratch, "{sec}"),
                _ => write!(scratch, "{sec}.{usec:06}"),
            };
            Raw::Bytes(scratch.as_bytes())
        }
        Layout::Date => {
            let raw = le(take(data, 3)?);
            Raw::Date(
                (raw >> 9) as u16,
                ((raw >> 5) & 15) as u8,
                (raw & 31) as u8,
                0,
                0,
                0,
                0,
            )
        }
    })
}

fn be(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

/// A big-endian two's-complement integer of 1..=4 bytes.
fn be_signed(bytes: &[u8]) -> i32 {
    let shift = 64 - 8 * bytes.len() as u32;
    (((be(bytes) << shift) as i64) >> shift) as i32
}

/// The microseconds of DATETIME2/TIMESTAMP2 with `dec` digits (as mysql_common reads them).
fn fraction(bytes: &[u8], dec: u8) -> i32 {
    match dec {
        1 | 2 => be_signed(bytes) * 10_000,
        3 | 4 => be_signed(bytes) * 100,
        5 | 6 => be_signed(bytes),
        _ => 0,
    }
}

/// DATETIME2's packed integer part and microseconds → the query protocol's value
/// (MySQL's TIME_from_longlong_datetime_packed). `Err` for bytes at the very ends of the
/// range, which no server writes (years run to 9999) and whose sum overflows (found by
/// fuzzing; mysql_common overflows alike).
fn datetime(int: i64, usec: i32) -> io::Result<Raw<'static>> {
    let packed = (int << 24)
        .checked_add(i64::from(usec))
        .and_then(i64::checked_abs)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "DATETIME2 out of range"))?;
    let usec = packed % (1 << 24);
    let ymdhms = packed >> 24;
    let ymd = ymdhms >> 17;
    let ym = ymd >> 5;
    let hms = ymdhms % (1 << 17);
    Ok(Raw::Date(
        (ym / 13) as u16,
        (ym % 13) as u8,
        (ymd % (1 << 5)) as u8,
        (hms >> 12) as u8,
        ((hms >> 6) % (1 << 6)) as u8,
        (hms % (1 << 6)) as u8,
        usec as u32,
    ))
}

/// Decimal digits per 4-byte word of MySQL's binary DECIMAL, and bytes per leftover digits.
const DIGITS_PER_WORD: usize = 9;
const DIGIT_BYTES: [usize; DIGITS_PER_WORD + 1] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];

/// Bytes of a binary DECIMAL(precision, scale).
fn decimal_bin_size(precision: usize, scale: usize) -> usize {
    let intg = precision.saturating_sub(scale);
    intg / DIGITS_PER_WORD * 4
        + DIGIT_BYTES[intg % DIGITS_PER_WORD]
        + scale / DIGITS_PER_WORD * 4
        + DIGIT_BYTES[scale % DIGITS_PER_WORD]
}

/// A binary DECIMAL as text, digit for digit as mysql_common's `Decimal` shows it: leading
/// zero words dropped, `0` before a bare fraction, every fraction digit of the scale kept
/// (`-0.500`, `12`, `0.000`).
fn decimal_text(bytes: &[u8], precision: usize, scale: usize, text: &mut String) -> io::Result<()> {
    let Some(&first) = bytes.first() else {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "empty DECIMAL"));
    };
    // The sign bit is stored inverted; the first word is read with it flipped back.
    let first = first ^ 0x80;
    let mask: i32 = if first & 0x80 == 0 { 0 } else { -1 };
    let negative = mask != 0;
    let intg = precision.saturating_sub(scale);
    let (prefix, intg_words) = (intg % DIGITS_PER_WORD, intg / DIGITS_PER_WORD);
    let (suffix, frac_words) = (scale % DIGITS_PER_WORD, scale / DIGITS_PER_WORD);
    let mut rest = bytes;
    let mut at_start = true;
    let mut word = |n: usize| {
        let mut word = [0u8; 4];
        word[..n].copy_from_slice(take(&mut rest, n).expect("sized by decimal_bin_size"));
        if std::mem::take(&mut at_start) {
            word[0] = first;
        }
        be_signed(&word[..n]) ^ mask
    };

    let start = text.len();
    if negative {
        text.push('-');
    }
    // The integer part: leading zero words are dropped, the first one left is unpadded.
    let mut started = false;
    let mut integer = |x: i32, text: &mut String| {
        if started {
            padded(text, x, 9);
        } else if x != 0 {
            padded(text, x, 0);
            started = true;
        }
    };
    if prefix > 0 {
        let x = word(DIGIT_BYTES[prefix]);
        integer(x, text);
    }
    for _ in 0..intg_words {
        let x = word(4);
        integer(x, text);
    }
    if !started {
        if scale == 0 {
            // Zero of a DECIMAL(p, 0) is unsigned.
            text.truncate(start);
            text.push('0');
            return Ok(());
        }
        text.push('0');
    }
    if scale > 0 {
        text.push('.');
    }
    for _ in 0..frac_words {
        let x = word(4);
        padded(text, x, 9);
    }
    if suffix > 0 {
        let x = word(DIGIT_BYTES[suffix]);
        padded(text, x, suffix);
    }
    Ok(())
}

/// `x` as `format!("{x:0width$}")` writes it (sign-aware zero padding), without the
/// formatting machinery: DECIMAL words are written millions of times.
fn padded(text: &mut String, x: i32, width: usize) {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(x.unsigned_abs());
    let sign = usize::from(x < 0);
    if x < 0 {
        text.push('-');
    }
    for _ in digits.len() + sign..width {
        text.push('0');
    }
    text.push_str(digits);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DATETIME2's packed integer of a date and time, as `value` gets it (sign bit off).
    fn packed(year: i64, month: i64, day: i64, hms: (i64, i64, i64)) -> i64 {
        let ymd = ((year * 13 + month) << 5) | day;
        (ymd << 17) | (hms.0 << 12) | (hms.1 << 6) | hms.2
    }

    /// DATETIME2 and TIMESTAMP2 of more than 6 fractional digits (which no server writes)
    /// are left to mysql_common: the lean decoder read 6 bytes of fraction for 12 digits,
    /// mysql_common none, and the two cut the rows differently (the fuzzer's
    /// `binlog_rows/crash-f4ad001ff24653ee`).
    #[test]
    fn padded_writes_as_format_does() {
        for x in [
            0,
            1,
            -1,
            7,
            42,
            -42,
            999_999_999,
            -999_999_999,
            i32::MAX,
            i32::MIN,
        ] {
            for width in [0, 1, 2, 4, 9, 12] {
                let mut text = String::from("<");
                padded(&mut text, x, width);
                assert_eq!(text, format!("<{x:0width$}"), "{x} {width}");
            }
        }
    }

    #[test]
    fn more_than_six_fractional_digits_are_not_read_here() {
        use ColumnType::*;
        for dec in 0..=6 {
            assert_eq!(
                layout(MYSQL_TYPE_DATETIME2, &[dec]),
                Some(Layout::Datetime(dec))
            );
            assert_eq!(
                layout(MYSQL_TYPE_TIMESTAMP2, &[dec]),
                Some(Layout::Timestamp(dec))
            );
        }
        for dec in [7, 12, 255] {
            assert_eq!(layout(MYSQL_TYPE_DATETIME2, &[dec]), None);
            assert_eq!(layout(MYSQL_TYPE_TIMESTAMP2, &[dec]), None);
        }
    }

    /// Bytes at the ends of DATETIME2's range overflowed (a panic in debug builds; found
    /// by fuzzing, `fuzz/corpus/binlog_rows/`): now an error, like any bytes that are not
    /// a row image.
    #[test]
    fn datetime_bytes_at_the_ends_of_the_range_are_an_error() {
        assert_eq!(
            datetime(packed(2026, 1, 2, (3, 4, 5)), 123_456).unwrap(),
            Raw::Date(2026, 1, 2, 3, 4, 5, 123_456)
        );
        let lowest = -(1i64 << 39);
        assert!(datetime(lowest, -1).is_err(), "the sum overflows");
        assert!(datetime(lowest, 0).is_err(), "its absolute value overflows");
    }
}
