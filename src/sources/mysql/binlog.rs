//! The binlog reader: MySQL/MariaDB CDC over mysql_async's binlog stream.
//!
//! One reader per job (the engine runs it on worker 0). It registers as a replica with the
//! job's own `server_id`, asks for heartbeats, and reads events from a recorded position:
//!
//! ```text
//!  ROTATE ─────────────▶ current file (the first, artificial one: 4 stray CRC bytes cut)
//!  GTID (MariaDB) / BEGIN ▶ a transaction starts
//!  TABLE_MAP ──────────▶ table id → one of the job's tables (or none: its rows are skipped)
//!  WRITE/UPDATE/DELETE ▶ RowChange { before, after }, in the job's projection
//!  XID / COMMIT / DDL ─▶ ChangeEvent::Commit { file, log_pos of that event }
//!  HEARTBEAT ──────────▶ ChangeEvent::Idle  (the server has nothing more; its end position)
//! ```
//!
//! Positions are only ever reported at transaction boundaries, so a restart never resumes
//! mid-transaction (where the table map would be missing). MariaDB's own events
//! (ANNOTATE_ROWS, BINLOG_CHECKPOINT, GTID_LIST) are understood and skipped; any event type
//! tsmig does not know (compressed or encrypted binlogs) fails the job rather than losing
//! rows. Values are fixed up where the binlog encodes them differently from a query
//! (TIMESTAMP as seconds text, signedness lost without `binlog_row_metadata=FULL`,
//! MEDIUMINT's missing sign extension, ENUM/SET as numbers) and then converted exactly as
//! the backfill converts them, so a snapshot row and its binlog image give the same point.

use super::client::{server, MysqlSource};
use super::encoding::{convert, Conversion};
use crate::dead_letter::DeadLetters;
use crate::model::{Row, Value};
use crate::sources::{
    ChangeEvent, ChangeSender, ChangeSource, LogPosition, RowChange, SourceError,
};
use futures_util::StreamExt;
use mysql_async::binlog::events::{EventData, RowsEventData, TableMapEvent};
use mysql_async::binlog::row::BinlogRow;
use mysql_async::binlog::value::BinlogValue;
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
}

/// A table map the job reads.
struct MappedTable {
    table: u32,
    decoders: Vec<ColumnDecoder>,
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
            SourceError::Server(
                "a CDC job needs `source.server_id`: the replica id its binlog reader uses".into(),
            )
        })
    }

    async fn conn(&self) -> Result<mysql_async::Conn, SourceError> {
        self.pool.get_conn().await.map_err(|e| {
            SourceError::Server(format!("cannot connect to MySQL at {}: {e}", self.host))
        })
    }

    /// Decoders for a table map of one of the job's tables; `None` for other tables.
    fn decoders(&self, tme: &TableMapEvent<'_>) -> Result<Option<MappedTable>, SourceError> {
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
        let columns = tme.columns_count() as usize;
        if columns != table.schema.columns.len() {
            return Err(SourceError::Server(format!(
                "table {db}.{name} has {columns} columns in the binlog but {} when the job started: its definition changed (DDL). Restart the job so it reads the new definition",
                table.schema.columns.len()
            )));
        }
        let decoders = table
            .projection
            .iter()
            .map(|&index| ColumnDecoder {
                index,
                conversion: table.conversions[index],
                binlog_type: tme.get_column_type(index).ok().flatten(),
                members: members(&table.column_types[index]),
            })
            .collect();
        Ok(Some(MappedTable {
            table: t as u32,
            decoders,
        }))
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
                    return SourceError::Server(format!(
                        "the binlog position to resume from ({from}) has been purged from the server (its oldest binlog is now {oldest}): the changes since the last checkpoint are no longer available. Recover with a fresh snapshot: `tsmig-job -c backfill+cdc --fresh` (server said: {text})"
                    ));
                }
                return SourceError::Server(format!(
                    "the server cannot stream the binlog from {from} (binlog files on the server: {}): {text}",
                    files.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
            if s.code == 4052 {
                return SourceError::Server(format!(
                    "another replica or job uses server_id {}: each binlog reader needs its own `source.server_id` ({text})",
                    self.server_id.unwrap_or_default()
                ));
            }
            if s.code == 1045 || s.code == 1227 {
                return SourceError::Server(format!(
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
        // TIMESTAMP arrives as Unix seconds with a fraction, as text.
        (Conversion::UtcTime, _, My::Bytes(b)) => {
            let text = String::from_utf8_lossy(&b);
            return timestamp_text(&text).map(|ns| Some(Value::Time(ns)));
        }
        // MEDIUMINT is not sign-extended.
        (Conversion::Int, Some(MYSQL_TYPE_INT24), My::Int(v)) if v >= 1 << 23 => {
            My::Int(v - (1 << 24))
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
        // YEAR arrives as text.
        (Conversion::Int | Conversion::UInt, _, My::Bytes(b)) => {
            let text = String::from_utf8_lossy(&b);
            My::Int(
                text.trim()
                    .parse()
                    .map_err(|_| format!("{text:?} is not a number"))?,
            )
        }
        // ENUM arrives as its 1-based index, SET as a bit mask.
        (Conversion::Text, _, My::Int(v)) if d.members.is_some() => {
            let (set, members) = d.members.as_ref().expect("checked");
            My::Bytes(member_text(*set, members, v as u64)?.into_bytes())
        }
        (Conversion::Text, _, My::UInt(v)) if d.members.is_some() => {
            let (set, members) = d.members.as_ref().expect("checked");
            My::Bytes(member_text(*set, members, v)?.into_bytes())
        }
        (_, _, v) => v,
    };
    convert(value, d.conversion, offset_ns)
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
) -> Result<Option<Row>, String> {
    let Some(mut row) = row else { return Ok(None) };
    let mut values = Vec::with_capacity(t.decoders.len());
    for d in &t.decoders {
        let value = match row.take(d.index) {
            Some(v) => {
                decode_value(v, d, offset_ns).map_err(|e| format!("column {}: {e}", d.index + 1))?
            }
            None => {
                return Err(format!(
                "column {} is missing from the row image: the server needs binlog_row_image=FULL",
                d.index + 1
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
            return Err(SourceError::Server(format!(
                "the server at {} cannot feed CDC: {}",
                self.host,
                problems.join("; ")
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
            SourceError::Server("SHOW MASTER STATUS is empty: the binlog is off".into())
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
                _ => Err(SourceError::Server(
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

    async fn bytes_behind(&self, from: &LogPosition) -> Result<u64, SourceError> {
        let files = self.binary_logs().await?;
        let mut behind = 0u64;
        let mut after = false;
        for (name, size) in files {
            if name == from.file {
                behind += size.saturating_sub(from.offset);
                after = true;
            } else if after || name > from.file {
                behind += size;
            }
        }
        Ok(behind)
    }

    async fn follow(
        &self,
        from: LogPosition,
        out: &ChangeSender,
        dead_letters: &DeadLetters,
    ) -> Result<(), SourceError> {
        let server_id = self.server_id()?;
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
        let mut changes: Vec<RowChange> = Vec::with_capacity(CHANGES_PER_BATCH);
        let mut last_timestamp = 0u32;

        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(e) => e,
                Err(e) => return Err(self.stream_error(&from, e).await),
            };
            let header = event.header();
            let log_pos = header.log_pos() as u64;
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
                SourceError::Server(format!(
                    "cannot decode a binlog event at {}:{log_pos}: {e}",
                    cursor.file
                ))
            })?;
            match data {
                None => {
                    return Err(SourceError::Server(format!(
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
                    let mapped = self.decoders(&tme)?;
                    tables.insert(tme.table_id(), mapped);
                }
                Some(EventData::RowsEvent(rows)) => {
                    let table_id = rows.table_id();
                    let Some(Some(mapped)) = tables.get(&table_id) else {
                        continue;
                    };
                    let Some(tme) = stream.get_tme(table_id) else {
                        return Err(SourceError::Server(format!(
                            "rows at {}:{log_pos} have no table map (the stream started mid-transaction?)",
                            cursor.file
                        )));
                    };
                    if matches!(rows, RowsEventData::PartialUpdateRowsEvent(_)) {
                        return Err(SourceError::Server(
                            "partial JSON updates in the binlog (binlog_row_value_options=PARTIAL_JSON): tsmig needs full row images".into(),
                        ));
                    }
                    for images in rows.rows(tme) {
                        let (before, after) = images.map_err(|e| {
                            SourceError::Server(format!(
                                "cannot decode rows at {}:{log_pos}: {e}",
                                cursor.file
                            ))
                        })?;
                        let decoded = decode_row(before, mapped, self.offset_ns).and_then(|b| {
                            decode_row(after, mapped, self.offset_ns).map(|a| (b, a))
                        });
                        match decoded {
                            Ok((before, after)) => changes.push(RowChange { before, after }),
                            Err(reason) => dead_letters.record(
                                "source",
                                &reason,
                                serde_json::json!({
                                    "table": self.tables[mapped.table as usize].schema.name,
                                    "binlog": format!("{}:{log_pos}", cursor.file),
                                }),
                            ),
                        }
                    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
