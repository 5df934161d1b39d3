//! The binlog reader: MySQL/MariaDB CDC over mysql_async's binlog stream.
//!
//! One reader per job (the engine runs it on worker 0). It registers as a replica with the
//! job's own `server_id`, asks for heartbeats, and reads events from a recorded position:
//!
//! ```text
//!  ROTATE ─────────────▶ current file (the first, artificial one: 4 stray CRC bytes cut)
//!  GTID (MariaDB) / BEGIN ▶ a transaction starts
//!  TABLE_MAP ──────────▶ table id → one of the job's tables (or none: its rows are skipped);
//!                        a followed table's map must match its definition: else stop
//!  WRITE/UPDATE/DELETE ▶ RowChange { before, after }, in the job's projection
//!  XID / COMMIT / DDL ─▶ ChangeEvent::Commit { file, log_pos of that event }
//!  DDL of a followed table ▶ stop, before its Commit (schema_change.rs)
//!  HEARTBEAT ──────────▶ ChangeEvent::Idle  (the server has nothing more; its end position)
//! ```
//!
//! Positions are only ever reported at transaction boundaries, so a restart never resumes
//! mid-transaction (where the table map would be missing). MariaDB's own events
//! (ANNOTATE_ROWS, BINLOG_CHECKPOINT, GTID_LIST) are understood and skipped; any event type
//! tsmig does not know (compressed or encrypted binlogs) fails the job rather than losing
//! rows. Values are fixed up where the binlog encodes them differently from a query
//! (TIMESTAMP as seconds text, signedness lost without `binlog_row_metadata=FULL`,
//! MEDIUMINT's missing sign extension, ENUM as its index, SET as its bit mask, YEAR 0000 as
//! 1900, latin1 text as latin1 bytes) and then converted exactly as the backfill converts
//! them, so a snapshot row and its binlog image give the same point (tests/mysql_types.rs).
//!
//! The reader decodes with the table definitions read at start; a schema change would make
//! that wrong without any sign in the row images, so the reader stops at the first sign of
//! one (schema_change.rs).

use super::encoding::{convert, convert_raw, Conversion, Raw};
use super::rowimage::RowImage;
use super::schema_change::{self, Signature, TableDefinition};
use super::source::{server, MysqlSource};
use crate::dead_letter::DeadLetters;
use crate::model::{Row, Value};
use crate::source::{
    ChangeEvent, ChangeSender, ChangeSource, LogPosition, LogStatus, RowChange, SourceError,
};
use futures_util::StreamExt;
use mysql_async::binlog::events::{EventData, RowsEventData, TableMapEvent};
use mysql_async::binlog::row::BinlogRow;
use mysql_async::binlog::value::BinlogValue;
use mysql_async::binlog::EventType;
use mysql_async::consts::ColumnType;
use mysql_async::prelude::*;
use mysql_async::{BinlogStreamRequest, Value as My};
use std::collections::HashMap;

/// Row changes sent to the engine per message.
const CHANGES_PER_BATCH: usize = 1024;

/// MariaDB's event types that mysql_common does not parse.
const MARIADB_ANNOTATE_ROWS: u8 = 160;
const MARIADB_BINLOG_CHECKPOINT: u8 = 161;
const MARIADB_GTID: u8 = 162;
const MARIADB_GTID_LIST: u8 = 163;
/// MariaDB GTID flag: a standalone event group (DDL), no BEGIN/COMMIT around it.
const GTID_STANDALONE: u8 = 1;

/// How one column of a table map is decoded into the job's row.
#[derive(Clone)]
struct ColumnDecoder {
    /// Position in the binlog row (= position in the table's schema).
    index: usize,
    conversion: Conversion,
    binlog_type: Option<ColumnType>,
    /// ENUM or SET members, when the column is one.
    members: Option<(bool, Vec<String>)>,
    /// Text in MySQL's latin1 (the binlog holds it as it is stored; a query would have
    /// converted it to UTF-8).
    latin1: bool,
}

/// Why one row image cannot become a row: the column (its position in the table) and
/// the reason; the reader names the table and column in the dead letter.
#[derive(Debug, Clone, PartialEq)]
struct Refused {
    column: usize,
    reason: String,
}

/// Text charsets whose bytes the reader turns into text as a query would: UTF-8 as it is,
/// latin1 through its table. Any other charset would arrive as raw bytes of that charset.
const READABLE_CHARSETS: [&str; 5] = ["utf8mb4", "utf8mb3", "utf8", "ascii", "latin1"];

/// A table map the job reads.
struct MappedTable {
    table: u32,
    decoders: Vec<ColumnDecoder>,
    /// The lean decoder of its row images; `None` (a column type it does not read): the
    /// rows go through mysql_async's `rows()`.
    image: Option<RowImage>,
}

impl MappedTable {
    /// The decoders of table `table` (the job's index) for its table map `tme`: the
    /// `projection` (schema indices, in row order), and per schema column its conversion,
    /// `COLUMN_TYPE` and charset.
    fn new(
        table: u32,
        tme: &TableMapEvent<'_>,
        projection: &[usize],
        conversions: &[Conversion],
        column_types: &[String],
        charsets: &[Option<String>],
    ) -> Self {
        let decoders = projection
            .iter()
            .map(|&index| ColumnDecoder {
                index,
                conversion: conversions[index],
                binlog_type: tme.get_column_type(index).ok().flatten(),
                members: members(&column_types[index]),
                latin1: charsets[index]
                    .as_deref()
                    .is_some_and(|c| c.eq_ignore_ascii_case("latin1")),
            })
            .collect();
        MappedTable {
            table,
            decoders,
            image: RowImage::new(tme, projection, conversions),
        }
    }
}

/// Where the reader is in the log.
struct Cursor {
    file: String,
    in_transaction: bool,
    /// The next event is the single statement of a standalone (DDL) group.
    standalone: bool,
    seen_format_description: bool,
}

impl MysqlSource {
    fn server_id(&self) -> Result<u32, SourceError> {
        self.server_id.ok_or_else(|| {
            SourceError::Fatal(
                "a CDC job needs `source.server_id`: the replica id its binlog reader uses".into(),
            )
        })
    }

    async fn conn(&self) -> Result<mysql_async::Conn, SourceError> {
        self.pool.get_conn().await.map_err(|e| {
            SourceError::Server(format!("cannot connect to MySQL at {}: {e}", self.host))
        })
    }

    /// Decoders for a table map of one of the job's tables; `None` for other tables. `at`
    /// (file:offset of the table map) is for the error when the map does not match the
    /// table's definition read at start.
    fn decoders(
        &self,
        tme: &TableMapEvent<'_>,
        at: &str,
    ) -> Result<Option<MappedTable>, SourceError> {
        let db = tme.database_name();
        let name = tme.table_name();
        let Some(t) = self
            .tables
            .iter()
            .position(|t| t.db == db && t.name == name)
        else {
            return Ok(None);
        };
        let table = &self.tables[t];
        let definition = TableDefinition {
            columns: table
                .schema
                .columns
                .iter()
                .zip(&table.data_types)
                .map(|(c, data_type)| (c.name.as_str(), data_type.as_str()))
                .collect(),
        };
        if let Some(difference) = definition.difference(tme) {
            return Err(self.changed(
                t,
                at,
                &format!(
                    "its table map does not match the table the job read at start: {difference}"
                ),
            ));
        }
        Ok(Some(MappedTable::new(
            t as u32,
            tme,
            &table.projection,
            &table.conversions,
            &table.column_types,
            &table.charsets,
        )))
    }

    /// The error that stops the reader when table `t` changed at `at` (file:offset);
    /// `what` is the statement, or what differs.
    fn changed(&self, t: usize, at: &str, what: &str) -> SourceError {
        let table = &self.tables[t];
        SourceError::Fatal(format!(
            "table {}.{} changed at {at} ({what}): {}",
            table.db,
            table.name,
            schema_change::REMEDY
        ))
    }

    /// The followed table a statement of the binlog changes (its first one), if any;
    /// `default_db` is the statement's current database.
    fn changed_by(&self, statement: &str, default_db: &str) -> Option<usize> {
        schema_change::tables_changed(statement)
            .iter()
            .find_map(|c| {
                self.tables
                    .iter()
                    .position(|t| c.names(default_db, &t.db, &t.name))
            })
    }

    /// Fails if a DDL statement of a followed table lies between `from` and the end of the
    /// binlog now: made while no job ran, so the definitions read at start are already the
    /// new ones and the rows before it would be decoded with them. A change of the columns'
    /// types shows in the table maps, but one of the same shape (two DOUBLE columns
    /// swapped) leaves no trace there, so the statements are looked for before any row is
    /// read. Row events are not decoded: this reads at the speed of the network.
    async fn no_schema_change_since(
        &self,
        from: &LogPosition,
        server_id: u32,
    ) -> Result<(), SourceError> {
        let end = self.log_end().await?;
        if end <= *from {
            return Ok(());
        }
        let mut conn = self.conn().await?;
        conn.query_drop("SET @mariadb_slave_capability = 4")
            .await
            .map_err(|e| server("preparing the binlog connection", e))?;
        // A heartbeat ends the scan should the end be passed without an event ending there.
        conn.query_drop(format!(
            "SET @master_heartbeat_period = {}",
            self.heartbeat.as_nanos()
        ))
        .await
        .map_err(|e| server("setting the heartbeat period", e))?;
        let request = BinlogStreamRequest::new(server_id)
            .with_filename(from.file.as_bytes())
            .with_pos(from.offset);
        let mut stream = match conn.get_binlog_stream(request).await {
            Ok(s) => s,
            Err(e) => return Err(self.stream_error(from, e).await),
        };
        let mut file = from.file.clone();
        let mut seen_format_description = false;
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(e) => e,
                Err(e) => return Err(self.stream_error(from, e).await),
            };
            let header = event.header();
            let log_pos = u64::from(header.log_pos());
            let kind = header.event_type_raw();
            if kind == EventType::QUERY_EVENT as u8
                || kind == EventType::ROTATE_EVENT as u8
                || kind == EventType::FORMAT_DESCRIPTION_EVENT as u8
                || kind == EventType::HEARTBEAT_EVENT as u8
            {
                match event.read_data() {
                    Ok(Some(EventData::QueryEvent(q))) => {
                        let query = q.query();
                        if let Some(t) = self.changed_by(&query, &q.schema()) {
                            let start = log_pos.saturating_sub(u64::from(header.event_size()));
                            return Err(self.changed(
                                t,
                                &format!("{file}:{start}"),
                                &schema_change::shown(&query),
                            ));
                        }
                    }
                    Ok(Some(EventData::RotateEvent(r))) => {
                        file = rotate_name(r.name_raw(), log_pos == 0 && !seen_format_description);
                    }
                    Ok(Some(EventData::FormatDescriptionEvent(_))) => {
                        seen_format_description = true
                    }
                    Ok(Some(EventData::HeartbeatEvent)) => break,
                    _ => {}
                }
            }
            if log_pos > 0 && (file.as_str(), log_pos) >= (end.file.as_str(), end.offset) {
                break;
            }
        }
        Ok(())
    }

    /// Text columns the job maps whose charset the reader cannot turn into text.
    fn unreadable_text_columns(&self) -> Vec<String> {
        let mut out = Vec::new();
        for table in &self.tables {
            for &c in &table.projection {
                let charset = table.charsets[c].as_deref().unwrap_or("utf8mb4");
                let text = table.conversions[c] == Conversion::Text
                    && members(&table.column_types[c]).is_none();
                if text
                    && !READABLE_CHARSETS
                        .iter()
                        .any(|r| r.eq_ignore_ascii_case(charset))
                {
                    out.push(format!(
                        "column `{}` of table {}.{} is {} text",
                        table.schema.columns[c].name, table.db, table.name, charset
                    ));
                }
            }
        }
        out
    }

    /// Explains a failed binlog stream: a purged position, a duplicate replica id.
    async fn stream_error(&self, from: &LogPosition, e: mysql_async::Error) -> SourceError {
        let text = e.to_string();
        if let mysql_async::Error::Server(ref s) = e {
            if s.code == 1236 {
                let files = self.binary_logs().await.unwrap_or_default();
                let present = files.iter().any(|(f, _)| *f == from.file);
                let oldest = files.first().map(|(f, _)| f.clone()).unwrap_or_default();
                if !present && !oldest.is_empty() && from.file < oldest {
                    return SourceError::Fatal(format!(
                        "the binlog position to resume from ({from}) has been purged from the server (its oldest binlog is now {oldest}): the changes since the last checkpoint are no longer available. Recover with a fresh snapshot: `tsmig-job -c backfill+cdc --fresh` (server said: {text})"
                    ));
                }
                return SourceError::Fatal(format!(
                    "the server cannot stream the binlog from {from} (binlog files on the server: {}): {text}",
                    files.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
            if s.code == 4052 {
                return SourceError::Fatal(format!(
                    "another replica or job uses server_id {}: each binlog reader needs its own `source.server_id` ({text})",
                    self.server_id.unwrap_or_default()
                ));
            }
            if s.code == 1045 || s.code == 1227 {
                return SourceError::Fatal(format!(
                    "the user may not read the binlog: grant it REPLICATION SLAVE and REPLICATION CLIENT (BINLOG MONITOR on MariaDB) ({text})"
                ));
            }
        }
        server("reading the binlog", e)
    }

    /// `SHOW BINARY LOGS`: every binlog file on the server with its size, oldest first.
    async fn binary_logs(&self) -> Result<Vec<(String, u64)>, SourceError> {
        let mut conn = self.conn().await?;
        let rows: Vec<mysql_async::Row> = conn
            .query("SHOW BINARY LOGS")
            .await
            .map_err(|e| server("listing the binlog files (SHOW BINARY LOGS)", e))?;
        Ok(rows
            .into_iter()
            .filter_map(|mut r| {
                let name: String = r.take(0)?;
                let size: u64 = r.take(1)?;
                Some((name, size))
            })
            .collect())
    }

    async fn is_mariadb(conn: &mut mysql_async::Conn) -> Result<bool, SourceError> {
        let version: Option<String> = conn
            .query_first("SELECT VERSION()")
            .await
            .map_err(|e| server("reading the server version", e))?;
        Ok(version.unwrap_or_default().contains("MariaDB"))
    }
}

/// `enum('a','b')` / `set('x','y')` → (is a set, members).
fn members(column_type: &str) -> Option<(bool, Vec<String>)> {
    let (set, body) = if let Some(b) = column_type.strip_prefix("enum(") {
        (false, b)
    } else if let Some(b) = column_type.strip_prefix("set(") {
        (true, b)
    } else {
        return None;
    };
    let body = body.strip_suffix(')')?;
    let mut out = Vec::new();
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\'' {
            continue;
        }
        let mut member = String::new();
        while let Some(c) = chars.next() {
            if c == '\'' {
                if chars.peek() == Some(&'\'') {
                    chars.next();
                    member.push('\'');
                } else {
                    break;
                }
            } else {
                member.push(c);
            }
        }
        out.push(member);
    }
    Some((set, out))
}

/// An integer mysql_common read from a column of binlog type `t`, as the signed number of
/// the column's width; `None` if `t` is not an integer type or `v` not an integer.
fn signed(t: ColumnType, v: &My) -> Option<i64> {
    use ColumnType::*;
    let bits = match t {
        MYSQL_TYPE_TINY => 8,
        MYSQL_TYPE_SHORT => 16,
        MYSQL_TYPE_INT24 => 24,
        MYSQL_TYPE_LONG => 32,
        MYSQL_TYPE_LONGLONG => 64,
        _ => return None,
    };
    let raw = match *v {
        My::Int(i) => i as u64,
        My::UInt(u) => u,
        _ => return None,
    };
    let shift = 64 - bits;
    Some(((raw << shift) as i64) >> shift)
}

/// A binlog value as the query protocol would have given it, then converted like the
/// backfill converts.
fn decode_value(
    value: BinlogValue<'_>,
    d: &ColumnDecoder,
    offset_ns: i64,
) -> Result<Option<Value>, String> {
    let value = match value {
        BinlogValue::Value(v) => v,
        BinlogValue::Jsonb(j) => {
            let json = serde_json::Value::try_from(j)
                .map_err(|e| format!("JSON value cannot be read: {e}"))?;
            My::Bytes(json.to_string().into_bytes())
        }
        BinlogValue::JsonDiff(_) => {
            return Err(
                "partial JSON update in the binlog (binlog_row_value_options=PARTIAL_JSON): tsmig needs full row images".into(),
            )
        }
    };
    use ColumnType::*;
    let value = match (d.conversion, d.binlog_type, value) {
        (_, _, My::NULL) => return Ok(None),
        // TIMESTAMP arrives as Unix seconds with a fraction, as text. 0 is the zero
        // TIMESTAMP ('0000-00-00 00:00:00'; 1970-01-01 00:00:00 UTC is outside TIMESTAMP's
        // range), refused as the backfill refuses it.
        (Conversion::UtcTime, _, My::Bytes(b)) => {
            let text = String::from_utf8_lossy(&b);
            if text != "0" {
                return timestamp_text(&text).map(|ns| Some(Value::Time(ns)));
            }
            My::Date(0, 0, 0, 0, 0, 0, 0)
        }
        // mysql_common never sign-extends MEDIUMINT, and reads an integer as unsigned
        // where the table map says so (binlog_row_metadata=FULL). A column the definition
        // read at start calls signed is read as that: sign-extended from its width, as the
        // lean decoder reads it (the fuzzer found the two disagreeing on a table map whose
        // signedness is not the definition's: 130 against -126 in a TINYINT(1)).
        (Conversion::Int | Conversion::Bool, Some(t), v) if signed(t, &v).is_some() => {
            My::Int(signed(t, &v).expect("checked"))
        }
        // Without signedness in the table map, unsigned columns arrive as signed numbers
        // of the column's width.
        (Conversion::UInt, Some(t), My::Int(v)) if v < 0 => My::UInt(match t {
            MYSQL_TYPE_TINY => v as u8 as u64,
            MYSQL_TYPE_SHORT => v as u16 as u64,
            MYSQL_TYPE_INT24 => (v as u64) & 0xff_ffff,
            MYSQL_TYPE_LONG => v as u32 as u64,
            _ => v as u64,
        }),
        // YEAR arrives as text: 1900 + the stored byte, so the stored 0 (YEAR 0000; 1900
        // itself cannot be stored) reads as 1900.
        (Conversion::Int | Conversion::UInt, _, My::Bytes(b)) => {
            let text = String::from_utf8_lossy(&b);
            let year: i64 = text
                .trim()
                .parse()
                .map_err(|_| format!("{text:?} is not a number"))?;
            My::Int(if year == 1900 { 0 } else { year })
        }
        // ENUM arrives as its 1-based index.
        (Conversion::Text, _, My::Int(v)) if d.members.is_some() => {
            let (set, members) = d.members.as_ref().expect("checked");
            My::Bytes(member_text(*set, members, v as u64)?.into_bytes())
        }
        (Conversion::Text, _, My::UInt(v)) if d.members.is_some() => {
            let (set, members) = d.members.as_ref().expect("checked");
            My::Bytes(member_text(*set, members, v)?.into_bytes())
        }
        // SET arrives as its bit mask: 1 to 8 bytes, little-endian.
        (Conversion::Text, _, My::Bytes(b)) if matches!(d.members, Some((true, _))) => {
            let (_, members) = d.members.as_ref().expect("checked");
            if b.len() > 8 {
                return Err(format!("SET bit mask of {} bytes", b.len()));
            }
            let mask = b
                .iter()
                .rev()
                .fold(0u64, |acc, &x| (acc << 8) | u64::from(x));
            My::Bytes(member_text(true, members, mask)?.into_bytes())
        }
        (Conversion::Text, _, My::Bytes(b)) if d.latin1 && d.members.is_none() => {
            return Ok(Some(Value::String(latin1_text(&b).into())));
        }
        (_, _, v) => v,
    };
    convert(value, d.conversion, offset_ns)
}

/// MySQL's latin1 (Windows-1252, whose five unassigned bytes map to the C1 controls of the
/// same number) as text, as the server converts it for a query.
fn latin1_text(bytes: &[u8]) -> String {
    const HIGH: [char; 32] = [
        '\u{20ac}', '\u{81}', '\u{201a}', '\u{192}', '\u{201e}', '\u{2026}', '\u{2020}',
        '\u{2021}', '\u{2c6}', '\u{2030}', '\u{160}', '\u{2039}', '\u{152}', '\u{8d}', '\u{17d}',
        '\u{8f}', '\u{90}', '\u{2018}', '\u{2019}', '\u{201c}', '\u{201d}', '\u{2022}', '\u{2013}',
        '\u{2014}', '\u{2dc}', '\u{2122}', '\u{161}', '\u{203a}', '\u{153}', '\u{9d}', '\u{17e}',
        '\u{178}',
    ];
    bytes
        .iter()
        .map(|&b| match b {
            0x80..=0x9f => HIGH[usize::from(b - 0x80)],
            _ => char::from(b),
        })
        .collect()
}

fn member_text(set: bool, members: &[String], v: u64) -> Result<String, String> {
    if set {
        let names: Vec<&str> = members
            .iter()
            .enumerate()
            .filter(|(i, _)| *i < 64 && v & (1 << i) != 0)
            .map(|(_, m)| m.as_str())
            .collect();
        Ok(names.join(","))
    } else if v == 0 {
        Ok(String::new())
    } else {
        members
            .get(v as usize - 1)
            .cloned()
            .ok_or_else(|| format!("ENUM index {v} is not a member"))
    }
}

/// `"1767225600.123000"` → nanoseconds.
fn timestamp_text(text: &str) -> Result<i64, String> {
    let bad = || format!("TIMESTAMP {text:?} from the binlog is not seconds since the epoch");
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let secs: i64 = secs.parse().map_err(|_| bad())?;
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let mut nanos: i64 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| bad())?
    };
    for _ in frac.len()..9 {
        nanos *= 10;
    }
    Ok(secs * 1_000_000_000 + nanos)
}

/// One binlog row image → the job's row, or why not.
fn decode_row(
    row: Option<BinlogRow>,
    t: &MappedTable,
    offset_ns: i64,
) -> Result<Option<Row>, Refused> {
    let Some(mut row) = row else { return Ok(None) };
    let mut values = Vec::with_capacity(t.decoders.len());
    for d in &t.decoders {
        let refused = |reason| Refused {
            column: d.index,
            reason,
        };
        let value = match row.take(d.index) {
            Some(v) => decode_value(v, d, offset_ns).map_err(refused)?,
            None => {
                return Err(refused(
                    "missing from the row image: the server needs binlog_row_image=FULL".into(),
                ))
            }
        };
        values.push(value);
    }
    Ok(Some(Row {
        table: t.table,
        values,
    }))
}

/// One row image read by the lean decoder from the front of `data` → the job's row, or why
/// not (the first column in the row's order that cannot be converted, as
/// [`decode_row`] reports it). `Err` when the bytes are not a row image.
fn decode_image(
    image: &RowImage,
    data: &mut &[u8],
    scratch: &mut String,
    t: &MappedTable,
    offset_ns: i64,
) -> std::io::Result<Result<Row, Refused>> {
    // Not `vec![None; n]`: that clones `None` value by value through `Value::clone`.
    let mut values: Vec<Option<Value>> = Vec::with_capacity(image.projected());
    values.resize_with(image.projected(), || None);
    let mut refused: Option<(usize, Refused)> = None;
    image.read(data, scratch, |slot, raw| {
        let d = &t.decoders[slot];
        match decode_raw(raw, d, offset_ns) {
            Ok(v) => values[slot] = v,
            Err(reason) => {
                if refused.as_ref().is_none_or(|(first, _)| slot < *first) {
                    let column = d.index;
                    refused = Some((slot, Refused { column, reason }));
                }
            }
        }
    })?;
    Ok(match refused {
        Some((_, refused)) => Err(refused),
        None => Ok(Row {
            table: t.table,
            values,
        }),
    })
}

/// A value the lean decoder read → the job's value, exactly as [`decode_value`] converts
/// the mysql_async value `rows()` gives for the same bytes. Where none of its fix-ups can
/// apply (UTF-8 text, floats, DECIMAL, DATETIME, DATE, integers already signed as the
/// column is) the value is converted where it lies, without building that value.
fn decode_raw(raw: Raw<'_>, d: &ColumnDecoder, offset_ns: i64) -> Result<Option<Value>, String> {
    let plain = match (d.conversion, raw) {
        (Conversion::Text, Raw::Bytes(_)) => !d.latin1 && d.members.is_none(),
        (Conversion::Float32 | Conversion::Float64, Raw::Float(_) | Raw::Double(_))
        | (Conversion::Decimal, Raw::Bytes(_))
        | (Conversion::LocalTime, Raw::Date(..))
        | (Conversion::UInt, Raw::UInt(_)) => true,
        // Sign-extended by the lean decoder from the table map's width, as `signed` does.
        (Conversion::Int | Conversion::Bool, Raw::Int(_)) => true,
        _ => false,
    };
    match plain {
        true => convert_raw(raw, d.conversion, offset_ns),
        false => decode_value(BinlogValue::Value(My::from(raw)), d, offset_ns),
    }
}

/// A row change, or why one of its images cannot become a row.
type Decoded = Result<(Option<Row>, Option<Row>), Refused>;

/// Every row change of a rows event whose images are full, through the lean decoder:
/// `(before, after)` per row, or why the row cannot be converted. `Err` when the event's
/// bytes do not parse.
fn decode_images(
    rows: &RowsEventData<'_>,
    image: &RowImage,
    t: &MappedTable,
    offset_ns: i64,
    mut each: impl FnMut(Decoded),
) -> std::io::Result<()> {
    let mut data = rows.rows_data();
    let (before, after) = (
        rows.columns_before_image().is_some(),
        rows.columns_after_image().is_some(),
    );
    let mut scratch = String::new();
    let mut read =
        |data: &mut &[u8], wanted: bool| -> std::io::Result<Option<Result<Row, Refused>>> {
            if !wanted {
                return Ok(None);
            }
            decode_image(image, data, &mut scratch, t, offset_ns).map(Some)
        };
    while !data.is_empty() {
        let b = read(&mut data, before)?.transpose();
        let a = read(&mut data, after)?.transpose();
        each(b.and_then(|b| a.map(|a| (b, a))));
    }
    Ok(())
}

/// Every row change of a rows event, through the lean decoder where it reads the table and
/// the images are full, else through mysql_async's `rows()`. `Err` when the event's bytes
/// do not parse.
fn decode_rows(
    rows: &RowsEventData<'_>,
    tme: &TableMapEvent<'_>,
    mapped: &MappedTable,
    offset_ns: i64,
    each: impl FnMut(Decoded),
) -> std::io::Result<()> {
    check_shape(rows, tme)?;
    match lean_image(rows, mapped) {
        Some(image) => decode_images(rows, image, mapped, offset_ns, each),
        None => decode_generic(rows, tme, mapped, offset_ns, each),
    }
}

/// The lean decoder's layout for `rows`, if it reads the table and the images are full.
fn lean_image<'a>(rows: &RowsEventData<'_>, mapped: &'a MappedTable) -> Option<&'a RowImage> {
    let n = rows.num_columns() as usize;
    let full = rows
        .columns_before_image()
        .is_none_or(|b| b.len() >= n && b[..n].all())
        && rows
            .columns_after_image()
            .is_none_or(|b| b.len() >= n && b[..n].all());
    mapped.image.as_ref().filter(|_| full)
}

/// Refuses a rows event no server writes, which the decoders would misread: one whose
/// column count is not its table map's (the lean decoder reads the table map's columns,
/// `rows()` the event's), or whose images hold no column yet rows follow — `rows()` reads
/// an empty row from those bytes without consuming any, forever (found by fuzzing:
/// `fuzz/corpus/binlog_rows/`).
fn check_shape(rows: &RowsEventData<'_>, tme: &TableMapEvent<'_>) -> std::io::Result<()> {
    let n = rows.num_columns();
    if n != tme.columns_count() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "a rows event of {n} columns for a table map of {}",
                tme.columns_count()
            ),
        ));
    }
    let images = rows.columns_before_image().map_or(0, |b| b.count_ones())
        + rows.columns_after_image().map_or(0, |b| b.count_ones());
    if images == 0 && !rows.rows_data().is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "row data after images of no column",
        ));
    }
    Ok(())
}

/// Every row change of a rows event through mysql_async's `rows()`.
///
/// mysql_common trusts the table map and the row bytes: on an event no server writes it
/// panics (a metadata byte missing, integer overflow on a DATETIME2 or DECIMAL in debug
/// builds; found by fuzzing, `fuzz/corpus/binlog_rows/`). Such a panic is caught here and
/// becomes the error of an event that does not parse, so the reader stops with the
/// position instead of the process dying on a bad event.
fn decode_generic(
    rows: &RowsEventData<'_>,
    tme: &TableMapEvent<'_>,
    mapped: &MappedTable,
    offset_ns: i64,
    mut each: impl FnMut(Decoded),
) -> std::io::Result<()> {
    check_shape(rows, tme)?;
    let mut images = rows.rows(tme);
    loop {
        let next = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| images.next()))
            .map_err(|panic| {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("mysql_async's row decoder failed on it: {message}"),
                )
            })?;
        let Some(images) = next else {
            return Ok(());
        };
        let (before, after) = images?;
        each(
            decode_row(before, mapped, offset_ns)
                .and_then(|b| decode_row(after, mapped, offset_ns).map(|a| (b, a))),
        );
    }
}

/// The artificial first ROTATE carries 4 stray checksum bytes after the name (it is sent
/// before the server says it uses checksums; mysql_async #189).
fn rotate_name(raw: &[u8], fake_before_format: bool) -> String {
    let raw = if fake_before_format && raw.len() > 4 {
        &raw[..raw.len() - 4]
    } else {
        raw
    };
    String::from_utf8_lossy(raw).into_owned()
}

#[async_trait::async_trait]
impl ChangeSource for MysqlSource {
    async fn check_change_log(&self) -> Result<(), SourceError> {
        self.server_id()?;
        let mut conn = self.conn().await?;
        let rows: Vec<(String, String)> = conn
            .query(
                "SHOW GLOBAL VARIABLES WHERE Variable_name IN \
                 ('log_bin', 'binlog_format', 'binlog_row_image', 'log_bin_compress', 'binlog_row_metadata', 'encrypt_binlog')",
            )
            .await
            .map_err(|e| server("reading the binlog settings", e))?;
        let get = |name: &str| {
            rows.iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.to_ascii_uppercase())
        };
        let mut problems = Vec::new();
        if get("log_bin").as_deref() != Some("ON") {
            problems.push("the binlog is off: start the server with log_bin (e.g. `log_bin = mysql-bin` under [mysqld])".to_string());
        }
        if get("binlog_format").as_deref() != Some("ROW") {
            problems.push(format!(
                "binlog_format is {}; CDC needs ROW (`SET GLOBAL binlog_format = 'ROW'`, and in the server's config)",
                get("binlog_format").unwrap_or_else(|| "unset".into())
            ));
        }
        if get("binlog_row_image").as_deref() != Some("FULL") {
            problems.push(format!(
                "binlog_row_image is {}; CDC needs FULL images (`SET GLOBAL binlog_row_image = 'FULL'`)",
                get("binlog_row_image").unwrap_or_else(|| "unset".into())
            ));
        }
        if get("log_bin_compress").as_deref() == Some("ON") {
            problems.push(
                "log_bin_compress is ON: compressed binlog events cannot be read; turn it off"
                    .into(),
            );
        }
        if get("encrypt_binlog").as_deref() == Some("ON") {
            problems.push(
                "encrypt_binlog is ON: an encrypted binlog cannot be read by a replica client"
                    .into(),
            );
        }
        if !problems.is_empty() {
            return Err(SourceError::Fatal(format!(
                "the server at {} cannot feed CDC: {}",
                self.host,
                problems.join("; ")
            )));
        }
        let unreadable = self.unreadable_text_columns();
        if !unreadable.is_empty() {
            return Err(SourceError::Fatal(format!(
                "{}: the binlog holds text in the column's own charset, and CDC reads only {} (a query converts any charset, the binlog does not). Convert the column (ALTER TABLE ... CONVERT TO CHARACTER SET utf8mb4) or leave it out of the mappings",
                unreadable.join("; "),
                READABLE_CHARSETS.join(", ")
            )));
        }
        let metadata = get("binlog_row_metadata").unwrap_or_else(|| "MINIMAL".into());
        tracing::info!(
            binlog_row_metadata = %metadata,
            "column names and signedness come from information_schema (read at start); binlog_row_metadata=FULL is not required"
        );
        Ok(())
    }

    async fn log_end(&self) -> Result<LogPosition, SourceError> {
        let mut conn = self.conn().await?;
        let row: Option<mysql_async::Row> = conn
            .query_first("SHOW MASTER STATUS")
            .await
            .map_err(|e| server("reading the binlog position (SHOW MASTER STATUS; the user needs BINLOG MONITOR or REPLICATION CLIENT)", e))?;
        let mut row = row.ok_or_else(|| {
            SourceError::Fatal("SHOW MASTER STATUS is empty: the binlog is off".into())
        })?;
        Ok(LogPosition {
            file: row.take(0).unwrap_or_default(),
            offset: row.take(1).unwrap_or_default(),
        })
    }

    async fn snapshot_position(&self) -> Result<LogPosition, SourceError> {
        let mut conn = self.conn().await?;
        if Self::is_mariadb(&mut conn).await? {
            // MariaDB names the binlog position of a consistent snapshot without a lock.
            conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                .await
                .map_err(|e| server("starting a consistent snapshot", e))?;
            let rows: Vec<(String, String)> = conn
                .query("SHOW STATUS LIKE 'binlog_snapshot_%'")
                .await
                .map_err(|e| server("reading the snapshot's binlog position", e))?;
            let _ = conn.query_drop("COMMIT").await;
            let get = |n: &str| rows.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
            match (
                get("Binlog_snapshot_file"),
                get("Binlog_snapshot_position").and_then(|p| p.parse().ok()),
            ) {
                (Some(file), Some(offset)) if !file.is_empty() => Ok(LogPosition { file, offset }),
                _ => Err(SourceError::Fatal(
                    "the server did not name the snapshot's binlog position (binlog_snapshot_file)"
                        .into(),
                )),
            }
        } else {
            // MySQL: a brief global read lock around SHOW MASTER STATUS.
            conn.query_drop("FLUSH TABLES WITH READ LOCK")
                .await
                .map_err(|e| server("locking tables to read the binlog position (FLUSH TABLES WITH READ LOCK needs RELOAD)", e))?;
            let position = self.log_end().await;
            let _ = conn.query_drop("UNLOCK TABLES").await;
            position
        }
    }

    async fn status(&self, from: &LogPosition) -> Result<LogStatus, SourceError> {
        let files = self.binary_logs().await?;
        let mut behind = 0u64;
        let mut after = false;
        for (name, size) in &files {
            if *name == from.file {
                behind += size.saturating_sub(from.offset);
                after = true;
            } else if after || *name > from.file {
                behind += size;
            }
        }
        let end = files
            .last()
            .map(|(file, size)| LogPosition {
                file: file.clone(),
                offset: *size,
            })
            .unwrap_or_else(|| from.clone());
        let mut conn = self.conn().await?;
        let server_time_ms: Option<u64> = conn
            .query_first("SELECT CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS UNSIGNED)")
            .await
            .map_err(|e| server("reading the server's clock", e))?;
        Ok(LogStatus {
            end,
            bytes_behind: behind,
            server_time_ms: server_time_ms.unwrap_or_default(),
        })
    }

    async fn follow(
        &self,
        from: LogPosition,
        out: &ChangeSender,
        dead_letters: &DeadLetters,
    ) -> Result<(), SourceError> {
        let server_id = self.server_id()?;
        self.no_schema_change_since(&from, server_id).await?;
        let mut conn = self.conn().await?;
        // GTID events as themselves, not disguised as BEGIN (MariaDB); harmless on MySQL.
        conn.query_drop("SET @mariadb_slave_capability = 4")
            .await
            .map_err(|e| server("preparing the binlog connection", e))?;
        conn.query_drop(format!(
            "SET @master_heartbeat_period = {}",
            self.heartbeat.as_nanos()
        ))
        .await
        .map_err(|e| server("setting the heartbeat period", e))?;
        let request = BinlogStreamRequest::new(server_id)
            .with_filename(from.file.as_bytes())
            .with_pos(from.offset);
        let mut stream = match conn.get_binlog_stream(request).await {
            Ok(s) => s,
            Err(e) => return Err(self.stream_error(&from, e).await),
        };
        tracing::info!(position = %from, server_id, "reading the binlog");

        let mut cursor = Cursor {
            file: from.file.clone(),
            in_transaction: false,
            standalone: false,
            seen_format_description: false,
        };
        let mut tables: HashMap<u64, Option<MappedTable>> = HashMap::new();
        // Per followed table, the first table map of this run: a later one that differs
        // means the table changed, whether or not its DDL statement was recognised.
        let mut first_maps: Vec<Option<Signature>> = vec![None; self.tables.len()];
        let mut changes: Vec<RowChange> = Vec::with_capacity(CHANGES_PER_BATCH);
        let mut last_timestamp = 0u32;

        // A stream that sends nothing for this long, not even a heartbeat, is dead (a server
        // gone behind a proxy, a cut network): the job restarts from its checkpoint.
        let silence = (self.heartbeat * 5).max(std::time::Duration::from_secs(10));
        loop {
            let event = match tokio::time::timeout(silence, stream.next()).await {
                Err(_) => {
                    return Err(SourceError::Server(format!(
                        "the binlog stream sent nothing for {} s, not even a heartbeat (asked for every {} ms): the server or the network is gone",
                        silence.as_secs(),
                        self.heartbeat.as_millis()
                    )))
                }
                Ok(None) => break,
                Ok(Some(event)) => event,
            };
            let event = match event {
                Ok(e) => e,
                Err(e) => return Err(self.stream_error(&from, e).await),
            };
            let header = event.header();
            let log_pos = header.log_pos() as u64;
            // Where this event starts, as SHOW BINLOG EVENTS shows it.
            let at = || {
                format!(
                    "{}:{}",
                    cursor.file,
                    log_pos.saturating_sub(u64::from(header.event_size()))
                )
            };
            if header.timestamp() != 0 {
                last_timestamp = header.timestamp();
            }
            let mut boundary = false;
            match header.event_type_raw() {
                MARIADB_ANNOTATE_ROWS | MARIADB_BINLOG_CHECKPOINT | MARIADB_GTID_LIST => continue,
                MARIADB_GTID => {
                    let flags = event.data().get(12).copied().unwrap_or(0);
                    if flags & GTID_STANDALONE != 0 {
                        cursor.standalone = true;
                    } else {
                        cursor.in_transaction = true;
                    }
                    continue;
                }
                _ => {}
            }
            let data = event.read_data().map_err(|e| {
                SourceError::Fatal(format!(
                    "cannot decode a binlog event at {}:{log_pos}: {e}",
                    cursor.file
                ))
            })?;
            match data {
                None => {
                    return Err(SourceError::Fatal(format!(
                        "binlog event of type {} at {}:{log_pos} is not one tsmig can read (a compressed or encrypted binlog?); stopping rather than skipping changes",
                        header.event_type_raw(),
                        cursor.file
                    )))
                }
                Some(EventData::RotateEvent(r)) => {
                    let fake = log_pos == 0;
                    cursor.file = rotate_name(r.name_raw(), fake && !cursor.seen_format_description);
                    if !fake && !cursor.in_transaction {
                        // A real rotate ends the file: the next event is in the new file.
                        flush(&mut changes, out).await?;
                        out.send_batch(ChangeEvent::Commit {
                            position: LogPosition {
                                file: cursor.file.clone(),
                                offset: r.position(),
                            },
                            timestamp: last_timestamp,
                        })
                        .await?;
                    }
                }
                Some(EventData::FormatDescriptionEvent(_)) => cursor.seen_format_description = true,
                Some(EventData::HeartbeatEvent) => {
                    if !cursor.in_transaction && log_pos > 0 {
                        flush(&mut changes, out).await?;
                        out.send_batch(ChangeEvent::Idle {
                            position: LogPosition {
                                file: cursor.file.clone(),
                                offset: log_pos,
                            },
                        })
                        .await?;
                    }
                }
                Some(EventData::QueryEvent(q)) => {
                    let query = q.query();
                    let statement = query.trim().trim_end_matches(';').to_ascii_uppercase();
                    let control = ["BEGIN", "COMMIT", "ROLLBACK"].contains(&statement.as_str())
                        || statement.starts_with("XA ");
                    if !control {
                        // Stop before the statement's boundary is reported: the position
                        // recorded stays before the change.
                        if let Some(t) = self.changed_by(&query, &q.schema()) {
                            return Err(self.changed(t, &at(), &schema_change::shown(&query)));
                        }
                    }
                    if statement == "BEGIN" || statement.starts_with("XA START") {
                        cursor.in_transaction = true;
                    } else if cursor.in_transaction {
                        if statement == "COMMIT" || statement == "ROLLBACK" || statement.starts_with("XA COMMIT") {
                            boundary = true;
                        }
                    } else {
                        // A standalone statement (DDL) is its own group.
                        boundary = true;
                    }
                    cursor.standalone = false;
                }
                Some(EventData::XidEvent(_)) => boundary = true,
                Some(EventData::TableMapEvent(tme)) => {
                    let mapped = self.decoders(&tme, &at())?;
                    if let Some(m) = &mapped {
                        let signature = Signature::of(&tme);
                        let first = &mut first_maps[m.table as usize];
                        match first {
                            None => *first = Some(signature),
                            Some(first) => {
                                if let Some(difference) = signature.difference(first) {
                                    return Err(self.changed(
                                        m.table as usize,
                                        &at(),
                                        &format!("its table map changed: {difference}"),
                                    ));
                                }
                            }
                        }
                    }
                    tables.insert(tme.table_id(), mapped);
                }
                Some(EventData::RowsEvent(rows)) => {
                    let table_id = rows.table_id();
                    let Some(Some(mapped)) = tables.get(&table_id) else {
                        continue;
                    };
                    let Some(tme) = stream.get_tme(table_id) else {
                        return Err(SourceError::Fatal(format!(
                            "rows at {}:{log_pos} have no table map (the stream started mid-transaction?)",
                            cursor.file
                        )));
                    };
                    if matches!(rows, RowsEventData::PartialUpdateRowsEvent(_)) {
                        return Err(SourceError::Fatal(
                            "partial JSON updates in the binlog (binlog_row_value_options=PARTIAL_JSON): tsmig needs full row images".into(),
                        ));
                    }
                    let cannot = |e: std::io::Error| {
                        SourceError::Fatal(format!(
                            "cannot decode rows at {}:{log_pos}: {e}",
                            cursor.file
                        ))
                    };
                    let table = &self.tables[mapped.table as usize];
                    let mut record = |decoded: Decoded| match decoded {
                        Ok((before, after)) => changes.push(RowChange { before, after }),
                        // Worded as the backfill words it (sources::dead_letter_row).
                        Err(Refused { column, reason }) => dead_letters.record(
                            "source",
                            &format!(
                                "table {}: column `{}`: {reason}",
                                table.schema.name, table.schema.columns[column].name
                            ),
                            serde_json::json!({
                                "table": table.schema.name,
                                "binlog": format!("{}:{log_pos}", cursor.file),
                            }),
                        ),
                    };
                    decode_rows(&rows, tme, mapped, self.offset_ns, &mut record)
                        .map_err(cannot)?;
                    if changes.len() >= CHANGES_PER_BATCH {
                        flush(&mut changes, out).await?;
                    }
                }
                Some(_) => {}
            }
            if boundary && log_pos > 0 {
                cursor.in_transaction = false;
                flush(&mut changes, out).await?;
                out.send_batch(ChangeEvent::Commit {
                    position: LogPosition {
                        file: cursor.file.clone(),
                        offset: log_pos,
                    },
                    timestamp: last_timestamp,
                })
                .await?;
            }
        }
        Err(SourceError::Server(
            "the server ended the binlog stream".into(),
        ))
    }
}

async fn flush(changes: &mut Vec<RowChange>, out: &ChangeSender) -> Result<(), SourceError> {
    if changes.is_empty() {
        return Ok(());
    }
    let batch = std::mem::replace(changes, Vec::with_capacity(CHANGES_PER_BATCH));
    out.send_batch(ChangeEvent::Rows(batch)).await
}

/// The reader's handling of one table map and the rows event after it, without a server:
/// for the fuzz tests (`tests/fuzz.rs`), which feed it events built from bytes.
/// Not an API.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    /// One column of a followed table as `information_schema.COLUMNS` describes it.
    #[derive(Debug, Clone)]
    pub struct Column {
        /// `COLUMN_NAME`.
        pub name: String,
        /// `DATA_TYPE`, e.g. `decimal`.
        pub data_type: String,
        /// `COLUMN_TYPE`, e.g. `decimal(10,3) unsigned`.
        pub column_type: String,
        /// `CHARACTER_SET_NAME`.
        pub charset: Option<String>,
    }

    /// A row change (images before and after), or the reason its dead letter gives.
    pub type Change = Result<(Option<Row>, Option<Row>), String>;

    /// What the reader made of a rows event.
    #[derive(Debug)]
    pub struct RowsDecoded {
        /// Whether the lean decoder read it (else mysql_async's `rows()`).
        pub lean: bool,
        /// Its row changes, in order.
        pub changes: Vec<Change>,
    }

    /// What the reader does with `tme`, a table map of a followed table defined by
    /// `columns`, and `rows`: checks the map against the definition and decodes the rows
    /// of the `projection` (schema indices, in row order; each below `columns.len()`).
    /// `Err`: the reader stops, with this message. With `generic`, every event goes
    /// through `rows()`, as the reader does for tables the lean decoder cannot read.
    pub fn decode(
        columns: &[Column],
        projection: &[usize],
        offset_ns: i64,
        tme: &TableMapEvent<'_>,
        rows: &RowsEventData<'_>,
        generic: bool,
    ) -> Result<RowsDecoded, String> {
        let definition = TableDefinition {
            columns: columns
                .iter()
                .map(|c| (c.name.as_str(), c.data_type.as_str()))
                .collect(),
        };
        if let Some(difference) = definition.difference(tme) {
            return Err(format!("changed: {difference}"));
        }
        let _ = Signature::of(tme);
        let conversions: Vec<Conversion> = columns
            .iter()
            .map(|c| super::super::encoding::classify(&c.data_type, &c.column_type).0)
            .collect();
        let column_types: Vec<String> = columns.iter().map(|c| c.column_type.clone()).collect();
        let charsets: Vec<Option<String>> = columns.iter().map(|c| c.charset.clone()).collect();
        let mapped = MappedTable::new(0, tme, projection, &conversions, &column_types, &charsets);
        if matches!(rows, RowsEventData::PartialUpdateRowsEvent(_)) {
            return Err("partial JSON updates".into());
        }
        let mut changes = Vec::new();
        let record = |decoded: Decoded| {
            changes.push(decoded.map_err(|Refused { column, reason }| {
                format!("column `{}`: {reason}", columns[column].name)
            }))
        };
        let lean = !generic && lean_image(rows, &mapped).is_some();
        let decoded = if generic {
            decode_generic(rows, tme, &mapped, offset_ns, record)
        } else {
            decode_rows(rows, tme, &mapped, offset_ns, record)
        };
        decoded.map_err(|e| format!("cannot decode rows: {e}"))?;
        Ok(RowsDecoded { lean, changes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::BoundedSource;

    #[test]
    fn enum_and_set_members() {
        assert_eq!(
            members("enum('on','off','it''s')"),
            Some((false, vec!["on".into(), "off".into(), "it's".into()]))
        );
        let (set, m) = members("set('a','b','c')").unwrap();
        assert!(set);
        assert_eq!(member_text(true, &m, 0b101).unwrap(), "a,c");
        assert_eq!(member_text(false, &["x".into()], 1).unwrap(), "x");
        assert!(member_text(false, &["x".into()], 2).is_err());
        assert_eq!(members("int(11)"), None);
    }

    #[test]
    fn timestamps_from_binlog_text() {
        assert_eq!(
            timestamp_text("1767225600.123000").unwrap(),
            1_767_225_600_123_000_000
        );
        assert_eq!(
            timestamp_text("1767225600").unwrap(),
            1_767_225_600_000_000_000
        );
        assert!(timestamp_text("x").is_err());
    }

    #[test]
    fn first_rotate_name_loses_its_stray_bytes() {
        assert_eq!(
            rotate_name(b"mariadb-bin.000003\x01\x02\x03\x04", true),
            "mariadb-bin.000003"
        );
        assert_eq!(
            rotate_name(b"mariadb-bin.000004", false),
            "mariadb-bin.000004"
        );
    }

    /// Every column type the lean decoder reads, signed and unsigned, at both ends of
    /// their ranges and NULL.
    const TYPES_TABLE: &str = "id BIGINT AUTO_INCREMENT PRIMARY KEY, \
        ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, su SMALLINT UNSIGNED, \
        mi MEDIUMINT, mu MEDIUMINT UNSIGNED, ii INT, iu INT UNSIGNED, bi BIGINT, bu BIGINT UNSIGNED, \
        flag TINYINT(1), f FLOAT, d DOUBLE, dec1 DECIMAL(10,3), dec2 DECIMAL(30,10), dec0 DECIMAL(5,0), \
        c CHAR(8), vs VARCHAR(32), vl VARCHAR(400), tx TEXT, \
        dt0 DATETIME, dt1 DATETIME(1), dt2 DATETIME(2), dt3 DATETIME(3), dt4 DATETIME(4), \
        dt5 DATETIME(5), dt6 DATETIME(6), ts6 TIMESTAMP(6) NULL, dd DATE";
    const TYPES_COLUMNS: &str =
        "ti, tu, si, su, mi, mu, ii, iu, bi, bu, flag, f, d, dec1, dec2, dec0, \
        c, vs, vl, tx, dt0, dt1, dt2, dt3, dt4, dt5, dt6, ts6, dd";

    /// The lean row-image decoder gives exactly what mysql_async's `rows()` (and the
    /// fix-ups after it) give, on real binlog events of MariaDB: inserts, updates and
    /// deletes of every supported type, NULLs, negative and extreme values, a value that
    /// cannot be converted (the same error), a column the job does not read, and the job's
    /// projection in another order than the table's.
    #[tokio::test(flavor = "multi_thread")]
    async fn lean_decoder_matches_rows() {
        let url = std::env::var("TSMIG_MYSQL_URL")
            .unwrap_or_else(|_| "mysql://tsmig:tsmig@127.0.0.1:13306/factory".into());
        let table = format!("rowimage_{}", std::process::id());
        let pool = mysql_async::Pool::new(url.as_str());
        let mut conn = pool.get_conn().await.unwrap();
        conn.query_drop(format!("DROP TABLE IF EXISTS {table}"))
            .await
            .unwrap();
        conn.query_drop(format!("CREATE TABLE {table} ({TYPES_TABLE})"))
            .await
            .unwrap();
        let status: mysql_async::Row = conn
            .query_first("SHOW MASTER STATUS")
            .await
            .unwrap()
            .unwrap();
        let (file, pos): (String, u64) = (status.get(0).unwrap(), status.get(1).unwrap());
        let long = "ü".repeat(150) + &"x".repeat(250);
        let statements = [
            "SET time_zone = '+00:00'".to_string(),
            format!(
                "INSERT INTO {table} ({TYPES_COLUMNS}) VALUES \
                 (-128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0, 0, \
                  -1.5, -2.25e-300, -9999999.999, -12345678901234567890.0123456789, -99999, \
                  '', 'a', '', '', '1900-01-01 00:00:00', '1970-01-01 00:00:00.1', '1969-12-31 23:59:59.99', \
                  '2026-01-01 00:00:00.001', '2026-01-01 00:00:00.0001', '2026-01-01 00:00:00.00001', \
                  '2026-01-01 00:00:00.000001', '1970-01-01 00:00:01.000001', '1900-01-01'), \
                 (127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295, 9223372036854775807, \
                  18446744073709551615, 1, 3.4e38, 1.7976931348623157e308, 9999999.999, \
                  12345678901234567890.0123456789, 99999, 'zzzzzzzz', 'ü€', '{long}', REPEAT('t', 7000), \
                  '2200-12-31 23:59:59', '2200-12-31 23:59:59.9', '2026-06-30 12:34:56.78', '2026-06-30 12:34:56.789', \
                  '2026-06-30 12:34:56.7891', '2026-06-30 12:34:56.78912', '2026-06-30 12:34:56.789123', \
                  '2038-01-19 03:14:07.999999', '2200-12-31'), \
                 (NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
                  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL), \
                 (-1, 1, -1, 1, -1, 1, -1, 1, -1, 1, 0, 12.3, 0.1, 0.5, -0.0000000001, 0, \
                  'c', 'v', 'l', 't', '2026-03-01 01:02:03', NULL, '2026-03-01 01:02:03.04', NULL, \
                  '2026-03-01 01:02:03.0405', NULL, '2026-03-01 01:02:03.040506', NULL, '2026-03-01'), \
                 (5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 1, 5, 5, 5, 5, 5, 'e', 'e', 'e', 'e', '2026-01-01', \
                  NULL, NULL, NULL, NULL, NULL, '9999-12-31 23:59:59.999999', NULL, NULL)"
            ),
            format!(
                "INSERT INTO {table} ({TYPES_COLUMNS}) SELECT s MOD 256 - 128, s MOD 256, s - 32768, s, \
                 s * 1000 - 4000000, s * 1000, s * -100000, s * 100000, s * -1000000000000, \
                 s * 1000000000000, s MOD 2, s / 7, s / 3, s / 8 - 20, s * -1.5, s, \
                 CONCAT('c', s), CONCAT('v', s), REPEAT('w', s), IF(s MOD 5 = 0, NULL, REPEAT('t', s * 3)), \
                 TIMESTAMP('2026-01-01') + INTERVAL s SECOND, TIMESTAMP('2026-01-01') + INTERVAL s * 100000 MICROSECOND, \
                 TIMESTAMP('2026-01-01') + INTERVAL s * 10000 MICROSECOND, TIMESTAMP('2026-01-01') + INTERVAL s * 1000 MICROSECOND, \
                 TIMESTAMP('2026-01-01') + INTERVAL s * 100 MICROSECOND, TIMESTAMP('2026-01-01') + INTERVAL s * 10 MICROSECOND, \
                 TIMESTAMP('2026-01-01') + INTERVAL s MICROSECOND, TIMESTAMP('2026-01-01') + INTERVAL s SECOND, \
                 DATE('2026-01-01') + INTERVAL s DAY FROM (SELECT CAST(seq AS SIGNED) AS s FROM seq_1_to_300) AS q"
            ),
            format!("UPDATE {table} SET mi = -mi, dec1 = NULL, vs = CONCAT(vs, '!'), dt6 = dt6 + INTERVAL 1 MICROSECOND WHERE id % 3 = 0"),
            format!("UPDATE {table} SET ti = 5, dec1 = 1.5 WHERE id <= 4"),
            format!("DELETE FROM {table} WHERE id % 7 = 0 OR id = 2"),
        ];
        for statement in &statements {
            conn.query_drop(statement).await.unwrap();
        }
        // Row 3 is all NULL: the first update changes nothing there and logs nothing.
        let ids = 1..=305u64;
        let expected = 305
            + ids.clone().filter(|id| id % 3 == 0 && *id != 3).count()
            + 4
            + ids.filter(|id| id % 7 == 0 || *id == 2).count();

        let yaml = format!(
            "name: rowimage\nmode: cdc\nsource:\n  type: mysql\n  url: {url}\n  server_id: {}\n  tables:\n    - name: {table}\n\
             sink:\n  type: blackhole\nmappings:\n  - table: {table}\n    measurement: m\n    timestamp_field: dt0\n    fields: [ti]\n",
            29500 + std::process::id() % 400
        );
        let job =
            crate::job::Job::parse(std::path::Path::new("rowimage.yaml"), &yaml, |_| None).unwrap();
        let config: super::super::config::MysqlSourceConfig = job.file.source.parse(&job).unwrap();
        let mut source = MysqlSource::open(&job, &config).await.unwrap();
        // Every column but `tu` (the decoder skips it), in reverse order.
        let columns = source.schema()[0].columns.len();
        let projection: Vec<usize> = (0..columns).rev().filter(|&c| c != 2).collect();
        source.set_projection(0, projection.clone());

        let mut conn = pool.get_conn().await.unwrap();
        conn.query_drop("SET @mariadb_slave_capability = 4")
            .await
            .unwrap();
        let mut stream = conn
            .get_binlog_stream(
                BinlogStreamRequest::new(source.server_id.unwrap())
                    .with_filename(file.as_bytes())
                    .with_pos(pos),
            )
            .await
            .unwrap();
        let mut tables: HashMap<u64, Option<MappedTable>> = HashMap::new();
        let mut changes = Vec::new();
        while changes.len() < expected {
            let next = tokio::time::timeout(std::time::Duration::from_secs(20), stream.next());
            let Ok(event) = next.await else {
                panic!("only {} of {expected} changes seen", changes.len())
            };
            let event = event.unwrap().unwrap();
            if event.header().event_type_raw() >= MARIADB_ANNOTATE_ROWS {
                continue;
            }
            match event.read_data().unwrap() {
                Some(EventData::TableMapEvent(tme)) => {
                    let mapped = source.decoders(&tme, "test").unwrap();
                    if let Some(m) = &mapped {
                        assert!(
                            m.image.is_some(),
                            "the lean decoder reads every column type of {table}"
                        );
                    }
                    tables.insert(tme.table_id(), mapped);
                }
                Some(EventData::RowsEvent(rows)) => {
                    let Some(Some(m)) = tables.get(&rows.table_id()) else {
                        continue;
                    };
                    let tme = stream.get_tme(rows.table_id()).unwrap();
                    let generic: Vec<_> = rows
                        .rows(tme)
                        .map(|images| {
                            let (before, after) = images.unwrap();
                            decode_row(before, m, source.offset_ns).and_then(|b| {
                                decode_row(after, m, source.offset_ns).map(|a| (b, a))
                            })
                        })
                        .collect();
                    let mut lean = Vec::new();
                    let image = m.image.as_ref().unwrap();
                    decode_images(&rows, image, m, source.offset_ns, |r| lean.push(r)).unwrap();
                    assert_eq!(lean, generic);
                    changes.extend(lean);
                }
                _ => {}
            }
        }
        assert_eq!(changes.len(), expected);
        drop(stream);
        let mut conn = pool.get_conn().await.unwrap();
        conn.query_drop(format!("DROP TABLE {table}"))
            .await
            .unwrap();

        // The values themselves.
        let names: Vec<&str> = std::iter::once("id")
            .chain(TYPES_COLUMNS.split(", "))
            .collect();
        let at = |change: &Decoded, name: &str| {
            let row = change.as_ref().unwrap().1.clone().unwrap();
            let index = names.iter().position(|n| *n == name).unwrap();
            row.values[projection.iter().position(|&c| c == index).unwrap()].clone()
        };
        use crate::model::Value as V;
        let (minimum, maximum, nulls, ones) = (&changes[0], &changes[1], &changes[2], &changes[3]);
        assert_eq!(at(minimum, "ti"), Some(V::Int(-128)));
        assert_eq!(at(minimum, "mi"), Some(V::Int(-8_388_608)));
        assert_eq!(at(ones, "mi"), Some(V::Int(-1)));
        assert_eq!(at(minimum, "bi"), Some(V::Int(i64::MIN)));
        assert_eq!(at(maximum, "mu"), Some(V::UInt(16_777_215)));
        assert_eq!(at(maximum, "iu"), Some(V::UInt(4_294_967_295)));
        assert_eq!(at(maximum, "bu"), Some(V::UInt(u64::MAX)));
        assert_eq!(at(maximum, "flag"), Some(V::Bool(true)));
        assert_eq!(at(minimum, "dec1"), Some(V::Decimal("-9999999.999".into())));
        assert_eq!(
            at(maximum, "dec2"),
            Some(V::Decimal("12345678901234567890.0123456789".into()))
        );
        assert_eq!(at(ones, "dec2"), Some(V::Decimal("-0.0000000001".into())));
        assert_eq!(at(minimum, "dec0"), Some(V::Decimal("-99999".into())));
        assert_eq!(at(minimum, "d"), Some(V::Float(-2.25e-300)));
        assert_eq!(at(maximum, "vs"), Some(V::String("ü€".into())));
        assert_eq!(at(maximum, "vl"), Some(V::String(long.as_str().into())));
        assert_eq!(at(maximum, "tx"), Some(V::String("t".repeat(7000).into())));
        assert_eq!(at(maximum, "dt6"), Some(V::Time(1_782_822_896_789_123_000)));
        assert_eq!(at(minimum, "dt2"), Some(V::Time(-10_000_000)));
        assert_eq!(at(minimum, "dd"), Some(V::Time(-2_208_988_800_000_000_000)));
        assert_eq!(at(maximum, "ts6"), Some(V::Time(2_147_483_647_999_999_000)));
        assert_eq!(at(maximum, "dd"), Some(V::Time(7_289_568_000_000_000_000)));
        let nulls = nulls.as_ref().unwrap().1.as_ref().unwrap();
        assert_eq!(
            nulls.values.iter().filter(|v| v.is_some()).count(),
            1,
            "only id"
        );
        // Year 9999 does not fit nanoseconds: both decoders refuse the row alike.
        let refused = changes[4].as_ref().unwrap_err();
        assert_eq!(
            refused.column,
            names.iter().position(|n| *n == "dt6").unwrap(),
            "{refused:?}"
        );
        assert!(refused.reason.contains("outside the years"), "{refused:?}");
        // Updates carry both images, deletes the one before.
        assert!(changes.iter().any(|c| matches!(c, Ok((Some(_), Some(_))))));
        assert!(changes.iter().any(|c| matches!(c, Ok((Some(_), None)))));
    }

    /// The table-map checks behind the DDL statements, on real table maps of MariaDB: a
    /// map that does not match the definition read at start (another column count, another
    /// type) is a changed table, named with the map's position; one that differs from the
    /// run's first map only in metadata (VARCHAR(10) to VARCHAR(300)) is told apart too.
    #[tokio::test(flavor = "multi_thread")]
    async fn table_maps_that_do_not_match_the_definition_are_a_changed_table() {
        let url = std::env::var("TSMIG_MYSQL_URL")
            .unwrap_or_else(|_| "mysql://tsmig:tsmig@127.0.0.1:13306/factory".into());
        let table = format!("tablemaps_{}", std::process::id());
        let pool = mysql_async::Pool::new(url.as_str());
        let mut conn = pool.get_conn().await.unwrap();
        conn.query_drop(format!("DROP TABLE IF EXISTS {table}"))
            .await
            .unwrap();
        conn.query_drop(format!(
            "CREATE TABLE {table} (id INT PRIMARY KEY, a DOUBLE, v VARCHAR(10))"
        ))
        .await
        .unwrap();
        let status: mysql_async::Row = conn
            .query_first("SHOW MASTER STATUS")
            .await
            .unwrap()
            .unwrap();
        let (file, pos): (String, u64) = (status.get(0).unwrap(), status.get(1).unwrap());
        for statement in [
            format!("INSERT INTO {table} VALUES (1, 1.5, 'x')"),
            format!("ALTER TABLE {table} MODIFY v VARCHAR(300)"),
            format!("INSERT INTO {table} VALUES (2, 2.5, 'y')"),
            format!("ALTER TABLE {table} ADD COLUMN x INT"),
            format!("INSERT INTO {table} VALUES (3, 3.5, 'z', 3)"),
            format!("ALTER TABLE {table} MODIFY a DECIMAL(10,2)"),
            format!("INSERT INTO {table} VALUES (4, 4.5, 'w', 4)"),
        ] {
            conn.query_drop(statement).await.unwrap();
        }

        // The definition now: id INT, a DECIMAL(10,2), v VARCHAR(300), x INT.
        let yaml = format!(
            "name: tablemaps\nmode: cdc\nsource:\n  type: mysql\n  url: {url}\n  server_id: {}\n  tables:\n    - name: {table}\n\
             sink:\n  type: blackhole\nmappings:\n  - table: {table}\n    measurement: m\n    timestamp_field: id\n    timestamp_unit: s\n    fields: [a, v]\n",
            29100 + std::process::id() % 400
        );
        let job = crate::job::Job::parse(std::path::Path::new("tablemaps.yaml"), &yaml, |_| None)
            .unwrap();
        let config: super::super::config::MysqlSourceConfig = job.file.source.parse(&job).unwrap();
        let mut source = MysqlSource::open(&job, &config).await.unwrap();
        source.set_projection(0, vec![0, 1, 2]);

        let mut conn = pool.get_conn().await.unwrap();
        conn.query_drop("SET @mariadb_slave_capability = 4")
            .await
            .unwrap();
        let mut stream = conn
            .get_binlog_stream(
                BinlogStreamRequest::new(source.server_id.unwrap())
                    .with_filename(file.as_bytes())
                    .with_pos(pos),
            )
            .await
            .unwrap();
        let mut maps = Vec::new();
        while maps.len() < 4 {
            let next = tokio::time::timeout(std::time::Duration::from_secs(20), stream.next());
            let Ok(event) = next.await else {
                panic!("only {} of 4 table maps seen", maps.len())
            };
            let event = event.unwrap().unwrap();
            if event.header().event_type_raw() >= MARIADB_ANNOTATE_ROWS {
                continue;
            }
            if let Some(EventData::TableMapEvent(tme)) = event.read_data().unwrap() {
                if tme.table_name() == table {
                    maps.push(tme.into_owned());
                }
            }
        }
        drop(stream);
        let mut conn = pool.get_conn().await.unwrap();
        conn.query_drop(format!("DROP TABLE {table}"))
            .await
            .unwrap();

        let refused = |map: &TableMapEvent<'_>| match source.decoders(map, "mariadb-bin.000001:123")
        {
            Err(e) => e.to_string(),
            Ok(_) => panic!("map accepted"),
        };
        let changed = format!("table factory.{table} changed at mariadb-bin.000001:123 (its table map does not match the table the job read at start: ");
        assert_eq!(
            refused(&maps[0]),
            format!(
                "{changed}3 columns in the binlog, 4 when the job started): {}",
                schema_change::REMEDY
            )
        );
        assert!(refused(&maps[1]).starts_with(&format!("{changed}3 columns")));
        assert!(
            refused(&maps[2]).starts_with(&format!(
                "{changed}column 2 (`a`, decimal when the job started) is MYSQL_TYPE_DOUBLE in the binlog)"
            )),
            "{}",
            refused(&maps[2])
        );
        assert!(source.decoders(&maps[3], "-").unwrap().is_some());

        // Within a run, a map like the first is no change, and a metadata change is one.
        let first = Signature::of(&maps[0]);
        assert_eq!(Signature::of(&maps[0]).difference(&first), None);
        assert_eq!(
            Signature::of(&maps[1]).difference(&first).as_deref(),
            Some("column 3 is MYSQL_TYPE_VARCHAR [176, 4] in this table map, MYSQL_TYPE_VARCHAR [40, 0] in the first one")
        );
        assert_eq!(
            Signature::of(&maps[2]).difference(&first).as_deref(),
            Some("4 columns in this table map, 3 in the first one")
        );
    }

    /// A table map and a rows event as the stream gives them (v4 header, no checksum): a
    /// table `factory.sensor` of one column of `binlog_type` with `meta` and optional
    /// metadata `optional`, and rows event `rows` (from the table id on) of type
    /// `event_type`.
    fn events(
        binlog_type: u8,
        meta: &[u8],
        optional: &[u8],
        event_type: u8,
        rows: &[u8],
    ) -> (
        mysql_async::binlog::events::Event,
        mysql_async::binlog::events::Event,
    ) {
        use mysql_async::binlog::events::{Event, FormatDescriptionEvent};
        let event = |event_type: u8, body: &[u8]| {
            let mut out = 1_767_225_600u32.to_le_bytes().to_vec();
            out.push(event_type);
            out.extend_from_slice(&1u32.to_le_bytes());
            out.extend_from_slice(&(19 + body.len() as u32).to_le_bytes());
            out.extend_from_slice(&[0, 16, 0, 0, 0, 0]);
            out.extend_from_slice(body);
            let fde = FormatDescriptionEvent::new(mysql_async::binlog::BinlogVersion::Version4);
            Event::read(&fde, &out[..]).unwrap()
        };
        let mut table_map = vec![42, 0, 0, 0, 0, 0, 1, 0, 7];
        table_map.extend_from_slice(b"factory\x00\x06sensor\x00\x01");
        table_map.extend_from_slice(&[binlog_type, meta.len() as u8]);
        table_map.extend_from_slice(meta);
        table_map.push(0xff);
        table_map.extend_from_slice(optional);
        (event(19, &table_map), event(event_type, rows))
    }

    /// What the reader makes of the table map and rows event, or `None` if it is still at
    /// it after 20 s (the thread is left to spin). With `generic`, through `rows()`
    /// whatever the table.
    fn decode_within_20s(
        column: fuzzing::Column,
        (table_map, rows): (
            mysql_async::binlog::events::Event,
            mysql_async::binlog::events::Event,
        ),
        generic: bool,
    ) -> Option<Result<fuzzing::RowsDecoded, String>> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let Ok(Some(EventData::TableMapEvent(tme))) = table_map.read_data() else {
                panic!("not a table map");
            };
            let Ok(Some(EventData::RowsEvent(rows))) = rows.read_data() else {
                panic!("not a rows event");
            };
            let _ = tx.send(fuzzing::decode(&[column], &[0], 0, &tme, &rows, generic));
        });
        rx.recv_timeout(std::time::Duration::from_secs(20)).ok()
    }

    /// Rows events no server writes, which the fuzzer made (`fuzz/corpus/binlog_rows/`):
    /// `rows()` read empty rows from images of no column forever, and the lean decoder
    /// read a rows event of another width than its table map as the table map's. The
    /// reader now stops at them with a message.
    #[test]
    fn rows_events_of_no_columns_or_another_width_are_refused() {
        let column = |data_type: &str, column_type: &str| fuzzing::Column {
            name: "v".into(),
            data_type: data_type.into(),
            column_type: column_type.into(),
            charset: None,
        };
        let refused = |decoded: Option<Result<fuzzing::RowsDecoded, String>>| match decoded {
            None => panic!("still decoding after 20 s"),
            Some(Ok(decoded)) => panic!("decoded: {decoded:?}"),
            Some(Err(e)) => e,
        };
        // WRITE_ROWS v1 of 0 columns, then row bytes: YEAR goes through rows().
        let no_columns = b"*\x00\x00\x00\x00\x00\x01\x00\x00\x7f\xff\x00\x01\x02";
        let e = refused(decode_within_20s(
            column("year", "year(4)"),
            events(13, &[], &[], 23, no_columns),
            false,
        ));
        assert_eq!(
            e,
            "cannot decode rows: a rows event of 0 columns for a table map of 1"
        );
        // The same for a DECIMAL column, which the lean decoder reads (the fuzzer's input).
        let e = refused(decode_within_20s(
            column("decimal", "decimal(30,10)"),
            events(246, &[30, 10], &[], 23, no_columns),
            false,
        ));
        assert_eq!(
            e,
            "cannot decode rows: a rows event of 0 columns for a table map of 1"
        );
        // One column, but an after image without it (not a full image: rows()).
        let empty_image = b"*\x00\x00\x00\x00\x00\x01\x00\x01\x00\x7f\xff\x00";
        let e = refused(decode_within_20s(
            column("decimal", "decimal(30,10)"),
            events(246, &[30, 10], &[], 23, empty_image),
            false,
        ));
        assert_eq!(e, "cannot decode rows: row data after images of no column");
        // Two columns for a table map of one.
        let wider = b"*\x00\x00\x00\x00\x00\x01\x00\x02\x03\x00\x01\x02\x03";
        let e = refused(decode_within_20s(
            column("tinyint", "tinyint(4)"),
            events(1, &[], &[], 23, wider),
            false,
        ));
        assert_eq!(
            e,
            "cannot decode rows: a rows event of 2 columns for a table map of 1"
        );
        // A well-formed event of that table still decodes: null bitmap 0, value 7.
        let decoded = decode_within_20s(
            column("tinyint", "tinyint(4)"),
            events(
                1,
                &[],
                &[],
                23,
                b"*\x00\x00\x00\x00\x00\x01\x00\x01\x01\x00\x07",
            ),
            false,
        )
        .unwrap()
        .unwrap();
        assert!(decoded.lean);
        let after = decoded.changes[0].as_ref().unwrap().1.as_ref().unwrap();
        assert_eq!(after.values, vec![Some(Value::Int(7))]);
    }

    /// mysql_common panics on some table maps and row bytes no server writes (here a
    /// DECIMAL without its precision and scale: an index out of bounds in every build;
    /// the fuzzer found overflows on DATETIME2 and DECIMAL bytes too, in debug builds).
    /// The reader catches it and stops with a message instead of dying.
    #[test]
    fn a_panic_of_mysql_async_decoder_is_an_error_of_the_event() {
        let decimal = fuzzing::Column {
            name: "v".into(),
            data_type: "decimal".into(),
            column_type: "decimal(10,3)".into(),
            charset: None,
        };
        let one_row = b"*\x00\x00\x00\x00\x00\x01\x00\x01\x01\x00\x80\x00\x00\x01\x00\x00";
        let decoded = decode_within_20s(decimal, events(246, &[], &[], 23, one_row), false);
        let e = decoded.expect("done within 20 s").unwrap_err();
        assert!(
            e.starts_with(
                "cannot decode rows: mysql_async's row decoder failed on it: index out of bounds"
            ),
            "{e}"
        );
    }

    /// With `binlog_row_metadata=FULL`, a table map can call a column unsigned that the
    /// definition read at start calls signed (the fuzzer's table maps do). `rows()` then
    /// gave `UInt` where the lean decoder, which takes signedness from the definition,
    /// gave `Int`: 130 against -126 in a TINYINT(1), 200 against -56 in a TINYINT. Both
    /// read it as the definition says now.
    #[test]
    fn both_decoders_take_signedness_from_the_definition() {
        let column = |column_type: &str| fuzzing::Column {
            name: "v".into(),
            data_type: "tinyint".into(),
            column_type: column_type.into(),
            charset: None,
        };
        // Optional metadata: SIGNEDNESS (1), 1 byte, the first numeric column unsigned.
        let unsigned = [1, 1, 0x80];
        let row = |value: u8| {
            let mut rows = b"*\x00\x00\x00\x00\x00\x01\x00\x01\x01\x00".to_vec();
            rows.push(value);
            rows
        };
        let decode = |column_type: &str, value: u8, generic: bool| {
            let decoded = decode_within_20s(
                column(column_type),
                events(1, &[], &unsigned, 23, &row(value)),
                generic,
            );
            let decoded = decoded.expect("done within 20 s").unwrap();
            assert_eq!(decoded.lean, !generic);
            decoded
                .changes
                .into_iter()
                .next()
                .unwrap()
                .map(|(_, after)| after.unwrap().values)
        };
        for generic in [false, true] {
            assert_eq!(
                decode("tinyint(4)", 200, generic),
                Ok(vec![Some(Value::Int(-56))])
            );
            assert_eq!(
                decode("tinyint(4)", 100, generic),
                Ok(vec![Some(Value::Int(100))])
            );
            assert_eq!(
                decode("tinyint(3) unsigned", 200, generic),
                Ok(vec![Some(Value::UInt(200))])
            );
            assert_eq!(
                decode("tinyint(1)", 1, generic),
                Ok(vec![Some(Value::Bool(true))])
            );
            assert_eq!(
                decode("tinyint(1)", 130, generic),
                Err("column `v`: -126 in a boolean column (TINYINT(1)) is neither 0 nor 1".into())
            );
        }
    }
}
