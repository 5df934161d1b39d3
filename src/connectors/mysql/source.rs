//! Planning and reading MySQL tables.
//!
//! Planning cuts each table on its `split_by` column: MIN and MAX bound the key range, the
//! table's row estimate gives a first even cut, and each piece is then sized by the
//! server's own range estimate (`EXPLAIN`, which samples the index) and cut again while it
//! holds more than twice `chunk_rows` — so a skewed key (a dense cluster, a huge gap) does
//! not make one giant chunk. Adjacent near-empty pieces are merged. The first chunk is
//! open below and the last open above, so rows added at either end while the job runs are
//! still read; rows whose key is NULL get a chunk of their own.
//!
//! Reading a chunk is one streaming `SELECT` over the binary protocol (typed values, no
//! text parsing), each row's packet sent on as it came, in batches through a bounded channel;
//! the engine splits a batch by the rows' device column (read alone, `binrow::column`) and
//! the worker that owns the devices decodes its part in place (`binrow.rs`) a row at a
//! time, right before mapping it; a lost connection re-reads
//! the chunk from its start, as the section's retry keys say (writes are idempotent, so
//! rows sent twice do no harm).

use super::binrow::{self, Layout};
use super::config::{parse_offset, MysqlSourceConfig};
use super::encoding::{classify, convert_raw, Conversion, Raw};
use crate::dead_letter::DeadLetters;
use crate::job::Job;
use crate::metrics::SOURCE_RETRIES;
use crate::model::Value;
use crate::retry::{retry, RetryError, RetryPolicy, Retryable};
use crate::source::{
    dead_letter_row, BoundedSource, Column, ColumnKind, EncodedRows, RowSender, SourceError, Split,
    SplitKey, TableSchema,
};
use mysql_async::prelude::*;
use std::sync::Arc;
use std::time::Duration;

/// Rows sent to the engine per batch.
const ROWS_PER_BATCH: usize = 1024;
/// Bytes of row packets after which a batch is sent even with fewer rows (wide rows).
const BYTES_PER_BATCH: usize = 1 << 20;
/// How many times the planner may cut a piece again.
const MAX_REFINE_DEPTH: u32 = 8;

pub(super) struct Table {
    /// Database name, as the binlog's table map names it.
    pub(super) db: String,
    /// Table name, as the binlog's table map names it.
    pub(super) name: String,
    /// `database`.`table`, quoted.
    quoted: String,
    /// The split column, quoted, and whether it may be NULL.
    split: Option<(String, bool)>,
    /// The columns that identify a row: the split column, else the primary key's.
    key: Vec<usize>,
    chunk_rows: u64,
    pub(super) schema: TableSchema,
    pub(super) conversions: Vec<Conversion>,
    /// Per column: `COLUMN_TYPE` (e.g. `enum('a','b')`), for values the binlog encodes.
    pub(super) column_types: Vec<String>,
    /// Per column: `DATA_TYPE` (e.g. `enum`), to check the binlog's table maps against.
    pub(super) data_types: Vec<String>,
    /// Per column: `CHARACTER_SET_NAME` (text columns), since the binlog holds text in the
    /// column's own charset where a query converts it to the connection's.
    pub(super) charsets: Vec<Option<String>>,
    /// Projected schema columns, in row order.
    pub(super) projection: Vec<usize>,
    /// `SELECT <projection> FROM <table>`.
    select: String,
}

/// A MySQL or MariaDB server and the tables a job reads from it.
pub struct MysqlSource {
    pub(super) pool: mysql_async::Pool,
    pub(super) tables: Vec<Table>,
    schemas: Vec<TableSchema>,
    pub(super) offset_ns: i64,
    /// The replica id of the binlog reader (CDC).
    pub(super) server_id: Option<u32>,
    /// Heartbeat period of the binlog stream (CDC).
    pub(super) heartbeat: Duration,
    /// `host:port`, for messages.
    pub(super) host: String,
    /// How a chunk read that lost its connection is tried again.
    retry: RetryPolicy,
}

pub(super) fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// A server error, without the URL (which may carry a password).
pub(super) fn server(context: &str, e: mysql_async::Error) -> SourceError {
    SourceError::Server(format!(
        "{context}: {}",
        crate::sink::deliver::error_chain(&e)
    ))
}

/// How a chunk read failed.
struct ReadError(mysql_async::Error);

/// Only a lost connection is worth reading the chunk again for (the connection, not the
/// query, failed); a server's error is returned at once.
impl Retryable for ReadError {
    fn is_transient(&self) -> bool {
        matches!(
            self.0,
            mysql_async::Error::Io(_) | mysql_async::Error::Driver(_)
        )
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::sink::deliver::error_chain(&self.0))
    }
}

impl MysqlSource {
    /// Connects and reads the schema of every table the job names.
    pub async fn open(job: &Job, config: &MysqlSourceConfig) -> Result<Self, SourceError> {
        let opts = mysql_async::Opts::from_url(&config.url)
            .map_err(|e| job.error_at("source.url", format!("not a MySQL URL: {e}")))?;
        let default_db = opts.db_name().map(str::to_string);
        let prefer_socket = names_prefer_socket(&config.url) && opts.prefer_socket();
        let opts = mysql_async::OptsBuilder::from_opts(opts)
            // TIMESTAMP values arrive in the session's zone: make that UTC.
            .init(vec!["SET time_zone = '+00:00'"])
            .stmt_cache_size(64)
            // Connect where the URL says. By default mysql_async asks the server for its
            // @@socket and reconnects through that path on this machine: behind a tunnel,
            // a proxy or a forwarded port, a server of this machine that owns that path
            // would be read instead, and a cut link would go unnoticed. `?prefer_socket=true`
            // asks for it; `?socket=PATH` names a socket.
            .prefer_socket(prefer_socket);
        let host = opts_host(&config.url);
        let pool = mysql_async::Pool::new(opts);
        let offset_ns = parse_offset(&config.time_zone)
            .map_err(|e| job.error_at("source.time_zone", e))? as i64
            * 1_000_000_000;

        let mut conn = pool.get_conn().await.map_err(|e| {
            SourceError::Server(format!(
                "cannot connect to MySQL at {host}: {}",
                crate::sink::deliver::error_chain(&e)
            ))
        })?;
        let mut tables = Vec::new();
        for (i, t) in config.tables.iter().enumerate() {
            let key = format!("source.tables[{i}]");
            let (db, name) =
                match t.name.split_once('.') {
                    Some((db, name)) => (db.to_string(), name.to_string()),
                    None => match &default_db {
                        Some(db) => (db.clone(), t.name.clone()),
                        None => return Err(job
                            .error_at(
                                &format!("{key}.name"),
                                "name the database: in the URL (…/database) or as database.table",
                            )
                            .into()),
                    },
                };
            let columns: Vec<(String, String, String, String, Option<String>, String)> = conn
                .exec(
                    "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, CHARACTER_SET_NAME, COLUMN_KEY \
                     FROM information_schema.COLUMNS \
                     WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                    (&db, &name),
                )
                .await
                .map_err(|e| server("reading the table schema", e))?;
            if columns.is_empty() {
                return Err(job
                    .error_at(
                        &format!("{key}.name"),
                        format!("table {db}.{name} does not exist (or the user may not read it)"),
                    )
                    .into());
            }
            let mut schema = TableSchema {
                name: t.name.clone(),
                columns: Vec::new(),
            };
            let mut conversions = Vec::new();
            for (column, data_type, column_type, ..) in &columns {
                let (conversion, kind) = classify(data_type, column_type);
                schema.columns.push(Column {
                    name: column.clone(),
                    kind,
                    source_type: column_type.clone(),
                });
                conversions.push(conversion);
            }
            let split = match &t.split_by {
                None => None,
                Some(column) => {
                    let Some((_, data_type, _, nullable, ..)) =
                        columns.iter().find(|c| &c.0 == column)
                    else {
                        return Err(job
                            .error_at(
                                &format!("{key}.split_by"),
                                format!("column `{column}` is not in table {db}.{name}"),
                            )
                            .into());
                    };
                    if !matches!(
                        data_type.as_str(),
                        "tinyint" | "smallint" | "mediumint" | "int" | "bigint"
                    ) {
                        return Err(job
                            .error_at(
                                &format!("{key}.split_by"),
                                format!(
                                    "`{column}` is {data_type}; split_by needs an integer column"
                                ),
                            )
                            .into());
                    }
                    let indexed: Option<String> = conn
                        .exec_first(
                            "SELECT INDEX_NAME FROM information_schema.STATISTICS \
                             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND COLUMN_NAME = ? AND SEQ_IN_INDEX = 1 LIMIT 1",
                            (&db, &name, column),
                        )
                        .await
                        .map_err(|e| server("reading the table's indexes", e))?;
                    if indexed.is_none() {
                        return Err(job
                            .error_at(
                                &format!("{key}.split_by"),
                                format!("`{column}` leads no index of {db}.{name}: every chunk would scan the whole table. Split by the primary key or an indexed column"),
                            )
                            .into());
                    }
                    Some((quote(column), nullable == "YES"))
                }
            };
            // What identifies a row in a dead letter: the split key, else the primary key.
            let key = match &t.split_by {
                Some(column) => columns
                    .iter()
                    .position(|c| &c.0 == column)
                    .into_iter()
                    .collect(),
                None => columns
                    .iter()
                    .enumerate()
                    .filter(|(c, column)| {
                        column.5 == "PRI"
                            && !matches!(schema.columns[*c].kind, ColumnKind::Unsupported(_))
                    })
                    .map(|(c, _)| c)
                    .collect(),
            };
            tables.push(Table {
                quoted: format!("{}.{}", quote(&db), quote(&name)),
                key,
                column_types: columns.iter().map(|c| c.2.clone()).collect(),
                data_types: columns.iter().map(|c| c.1.to_ascii_lowercase()).collect(),
                charsets: columns.iter().map(|c| c.4.clone()).collect(),
                db,
                name,
                split,
                chunk_rows: t.chunk_rows,
                schema: schema.clone(),
                conversions,
                projection: Vec::new(),
                select: String::new(),
            });
        }
        drop(conn);
        let schemas = tables.iter().map(|t| t.schema.clone()).collect();
        Ok(Self {
            pool,
            tables,
            schemas,
            offset_ns,
            server_id: config.server_id,
            heartbeat: config.heartbeat,
            host,
            retry: config.retry.clone(),
        })
    }

    /// Rows the server expects in `table` between `start` and `end`, by `EXPLAIN`.
    async fn estimate(
        &self,
        conn: &mut mysql_async::Conn,
        table: &Table,
        start: i64,
        end: i64,
    ) -> Result<u64, SourceError> {
        let (column, _) = table
            .split
            .as_ref()
            .expect("only split tables are estimated");
        let sql = format!(
            "EXPLAIN SELECT {column} FROM {} WHERE {column} >= {start} AND {column} < {end}",
            table.quoted
        );
        let row: Option<mysql_async::Row> = conn
            .query_first(sql)
            .await
            .map_err(|e| server("estimating a chunk", e))?;
        Ok(row
            .and_then(|r| {
                r.get_opt::<Option<u64>, _>("rows")
                    .and_then(Result::ok)
                    .flatten()
            })
            .unwrap_or(0))
    }

    async fn plan_table(&self, t: usize, next_id: &mut u64) -> Result<Vec<Split>, SourceError> {
        let table = &self.tables[t];
        let mut conn = self
            .pool
            .get_conn()
            .await
            .map_err(|e| server("connecting", e))?;
        let table_rows: Option<u64> = conn
            .exec_first(
                "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE CONCAT('`', REPLACE(TABLE_SCHEMA, '`', '``'), '`.`', REPLACE(TABLE_NAME, '`', '``'), '`') = ?",
                (&table.quoted,),
            )
            .await
            .map_err(|e| server("reading the table's size", e))?
            .flatten();
        let table_rows = table_rows.unwrap_or(0);
        let mut split = |start, end, nulls, estimated_rows| {
            let s = Split {
                id: *next_id,
                table: t as u32,
                partition: String::new(),
                start,
                end,
                nulls,
                estimated_rows,
            };
            *next_id += 1;
            s
        };
        let Some((column, nullable)) = &table.split else {
            return Ok(vec![split(None, None, false, table_rows)]);
        };
        let (min, max): (Option<i64>, Option<i64>) = conn
            .query_first(format!(
                "SELECT MIN({column}), MAX({column}) FROM {}",
                table.quoted
            ))
            .await
            .map_err(|e| server("reading the split key's range", e))?
            .unwrap_or((None, None));
        let mut splits = Vec::new();
        if let (Some(min), Some(max)) = (min, max) {
            let chunk = table.chunk_rows;
            let end = max as i128 + 1;
            let first_cut = (table_rows / chunk).max(1) as i128;
            let mut todo: Vec<(i64, i64, u32)> = Vec::new();
            let mut first: Vec<(i64, i64, u64)> = Vec::new();
            for (a, b) in even_cuts(min as i128, end, first_cut) {
                first.push((a, b, self.estimate(&mut conn, table, a, b).await?));
            }
            // Range estimates are only relative (InnoDB's are often 2x off); the table's
            // own row count scales them.
            let sum: u64 = first.iter().map(|p| p.2).sum();
            let scale = if sum > 0 && table_rows > 0 {
                table_rows as f64 / sum as f64
            } else {
                1.0
            };
            let scaled = |rows: u64| (rows as f64 * scale).round() as u64;
            // [start, end) pieces with their estimates, refined until none is too big.
            let mut pieces: Vec<(i64, i64, u64, u32)> = Vec::new();
            let mut consider =
                |a: i64, b: i64, rows: u64, depth: u32, todo: &mut Vec<(i64, i64, u32)>| {
                    let width = b as i128 - a as i128;
                    if rows > 2 * chunk && width > 1 && depth < MAX_REFINE_DEPTH {
                        let parts = (rows.div_ceil(chunk) as i128).min(width).max(2);
                        for (x, y) in even_cuts(a as i128, b as i128, parts).into_iter().rev() {
                            todo.push((x, y, depth + 1));
                        }
                    } else {
                        pieces.push((a, b, rows, depth));
                    }
                };
            for (a, b, rows) in first {
                consider(a, b, scaled(rows), 0, &mut todo);
            }
            while let Some((a, b, depth)) = todo.pop() {
                let rows = scaled(self.estimate(&mut conn, table, a, b).await?);
                consider(a, b, rows, depth, &mut todo);
            }
            pieces.sort_by_key(|p| p.0);
            // Merge neighbours while they stay within one chunk.
            let mut merged: Vec<(i64, i64, u64)> = Vec::new();
            for (a, b, rows, _) in pieces {
                match merged.last_mut() {
                    Some(last) if last.2 + rows <= chunk => {
                        last.1 = b;
                        last.2 += rows;
                    }
                    _ => merged.push((a, b, rows)),
                }
            }
            let n = merged.len();
            for (i, (a, b, rows)) in merged.into_iter().enumerate() {
                let start = (i > 0).then_some(a);
                let end = (i + 1 < n).then_some(b);
                splits.push(split(start, end, false, rows));
            }
        } else {
            splits.push(split(None, None, false, 0));
        }
        if *nullable {
            splits.push(split(None, None, true, 0));
        }
        Ok(splits)
    }

    async fn read_once(&self, split: &Split, out: &RowSender) -> Result<u64, mysql_async::Error> {
        let table = &self.tables[split.table as usize];
        let mut sql = table.select.clone();
        let mut params: Vec<mysql_async::Value> = Vec::new();
        if let Some((column, _)) = &table.split {
            if split.nulls {
                sql.push_str(&format!(" WHERE {column} IS NULL"));
            } else {
                let mut conditions = Vec::new();
                if let Some(start) = split.start {
                    conditions.push(format!("{column} >= ?"));
                    params.push(start.into());
                }
                if let Some(end) = split.end {
                    conditions.push(format!("{column} < ?"));
                    params.push(end.into());
                }
                if !conditions.is_empty() {
                    sql.push_str(" WHERE ");
                    sql.push_str(&conditions.join(" AND "));
                }
            }
        }
        let mut conn = self.pool.get_conn().await?;
        let mut result = conn.exec_iter(sql, params).await?;
        let columns = result.columns().unwrap_or_else(|| Vec::new().into());
        // Not a lost connection: reading the chunk again would not help.
        let definite = |reason: String| mysql_async::Error::Other(reason.into());
        let layout = Layout::new(&columns).map_err(definite)?;
        if layout.len() != table.projection.len() {
            return Err(definite(format!(
                "the server answered {} columns for the {} selected",
                layout.len(),
                table.projection.len()
            )));
        }
        // Each row's packet is copied as it came into a batch (no mysql_async `Row` is
        // built); the worker that maps a row decodes it (binrow.rs).
        let decoder = Arc::new(ChunkDecoder {
            table: split.table,
            layout,
            conversions: table
                .projection
                .iter()
                .map(|&c| table.conversions[c])
                .collect(),
            projection: table.projection.clone(),
            schema: table.schema.clone(),
            offset_ns: self.offset_ns,
        });
        let mut batch = PackedRows::new(decoder.clone(), 0);
        let mut sent = 0u64;
        while let Some(()) = result.next_raw(|packet| batch.push(packet)).await? {
            if batch.ends.len() == ROWS_PER_BATCH || batch.bytes.len() >= BYTES_PER_BATCH {
                sent += batch.ends.len() as u64;
                let next = PackedRows::new(decoder.clone(), batch.bytes.len());
                let full = std::mem::replace(&mut batch, next);
                if out.send_encoded(Box::new(full.finish())).await.is_err() {
                    return Ok(sent);
                }
            }
        }
        if !batch.ends.is_empty() {
            sent += batch.ends.len() as u64;
            let _ = out.send_encoded(Box::new(batch.finish())).await;
        }
        Ok(sent)
    }
}

/// What decoding a chunk's rows needs; shared by the chunk's batches.
struct ChunkDecoder {
    /// The table's index in the job file.
    table: u32,
    /// The result set's wire types.
    layout: Layout,
    /// Per result column: how its values are converted.
    conversions: Vec<Conversion>,
    /// Per result column: the schema column it is (for dead letters).
    projection: Vec<usize>,
    schema: TableSchema,
    offset_ns: i64,
}

/// A batch of a chunk's rows as the server sent them: binary-protocol row packets one after
/// the other in `bytes`, the `i`-th ending at `ends[i]`, as the read task fills it; sent
/// as a [`PackedPart`].
struct PackedRows {
    decoder: Arc<ChunkDecoder>,
    bytes: Vec<u8>,
    ends: Vec<u32>,
}

impl PackedRows {
    fn new(decoder: Arc<ChunkDecoder>, bytes: usize) -> Self {
        Self {
            decoder,
            bytes: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(ROWS_PER_BATCH),
        }
    }

    fn push(&mut self, packet: &[u8]) {
        self.bytes.extend_from_slice(packet);
        // A batch is sent once it passes BYTES_PER_BATCH and a packet is at most 1 GiB
        // (the server's `max_allowed_packet` limit), so an end always fits in a u32.
        self.ends.push(self.bytes.len() as u32);
    }
}

impl PackedRows {
    /// The batch as the engine takes it: its bytes shared (a split copies none) and each
    /// row's packet as its start and end in them.
    fn finish(self) -> PackedPart {
        let mut start = 0;
        let spans = self
            .ends
            .iter()
            .map(|&end| {
                let span = (start, end);
                start = end;
                span
            })
            .collect();
        PackedPart {
            decoder: self.decoder,
            bytes: Arc::new(self.bytes),
            spans,
        }
    }
}

/// A chunk's rows as the engine takes them ([`PackedRows::finish`]), or some of them (those
/// [`EncodedRows::split`] gave one worker): the batch's bytes, shared by its parts, and
/// where each row lies in them. Splitting copies no packet; the worker that maps a row
/// decodes it.
#[derive(Clone)]
struct PackedPart {
    decoder: Arc<ChunkDecoder>,
    bytes: Arc<Vec<u8>>,
    spans: Vec<(u32, u32)>,
}

impl EncodedRows for PackedPart {
    fn for_each_row(
        self: Box<Self>,
        dead_letters: &DeadLetters,
        values: &mut Vec<Option<Value>>,
        each: &mut dyn FnMut(u32, &mut Vec<Option<Value>>),
    ) -> Result<(), SourceError> {
        let packets = self
            .spans
            .iter()
            .map(|&(a, b)| &self.bytes[a as usize..b as usize]);
        decode_packets(&self.decoder, packets, dead_letters, values, each)
    }

    fn len(&self) -> usize {
        self.spans.len()
    }

    fn table(&self) -> u32 {
        self.decoder.table
    }

    fn split(
        self: Box<Self>,
        column: usize,
        parts: usize,
        part: &mut dyn FnMut(SplitKey<'_>) -> usize,
    ) -> Vec<Option<Box<dyn EncodedRows>>> {
        let PackedPart {
            decoder,
            bytes,
            spans,
        } = *self;
        split_packets(decoder, bytes, spans, column, parts, part)
    }

    fn clone_box(&self) -> Box<dyn EncodedRows> {
        Box::new(self.clone())
    }
}

/// Decodes `packets` as [`EncodedRows::for_each_row`] says.
fn decode_packets<'a>(
    d: &ChunkDecoder,
    packets: impl Iterator<Item = &'a [u8]>,
    dead_letters: &DeadLetters,
    values: &mut Vec<Option<Value>>,
    each: &mut dyn FnMut(u32, &mut Vec<Option<Value>>),
) -> Result<(), SourceError> {
    for packet in packets {
        values.clear();
        values.reserve(d.layout.len());
        let mut failure = None;
        binrow::decode(packet, &d.layout, |i, raw| {
            match convert_raw(raw, d.conversions[i], d.offset_ns) {
                Ok(v) => values.push(v),
                Err(reason) => {
                    failure = Some(format!(
                        "column `{}`: {reason}",
                        d.schema.columns[d.projection[i]].name
                    ));
                    values.push(None);
                }
            }
        })
        .map_err(|binrow::Malformed(reason)| {
            SourceError::Fatal(format!(
                "table {}: the server sent a malformed row: {reason}",
                d.schema.name
            ))
        })?;
        if let Some(reason) = failure {
            dead_letter_row(dead_letters, &d.schema, &d.projection, values, &reason);
            continue;
        }
        each(d.table, values);
    }
    Ok(())
}

/// Sorts the rows at `spans` of `bytes` into parts as [`EncodedRows::split`] says, reading
/// only each row's column `column`.
fn split_packets(
    decoder: Arc<ChunkDecoder>,
    bytes: Arc<Vec<u8>>,
    spans: Vec<(u32, u32)>,
    column: usize,
    parts: usize,
    part: &mut dyn FnMut(SplitKey<'_>) -> usize,
) -> Vec<Option<Box<dyn EncodedRows>>> {
    let d = &*decoder;
    let conversion = d.conversions[column];
    let mut split: Vec<Vec<(u32, u32)>> = (0..parts)
        .map(|_| Vec::with_capacity(spans.len() / parts.max(1) + 16))
        .collect();
    for (a, b) in spans {
        let packet = &bytes[a as usize..b as usize];
        let to = match binrow::column(packet, &d.layout, column) {
            // Text is its bytes (no copy, no check: decoding checks it).
            Ok(Raw::Bytes(text)) if conversion == Conversion::Text => part(SplitKey::Text(text)),
            Ok(raw) => match convert_raw(raw, conversion, d.offset_ns) {
                Ok(Some(value)) => part(SplitKey::Value(&value)),
                Ok(None) | Err(_) => part(SplitKey::None),
            },
            Err(_) => part(SplitKey::None),
        };
        split[to].push((a, b));
    }
    split
        .into_iter()
        .map(|spans| {
            (!spans.is_empty()).then(|| {
                Box::new(PackedPart {
                    decoder: decoder.clone(),
                    bytes: bytes.clone(),
                    spans,
                }) as Box<dyn EncodedRows>
            })
        })
        .collect()
}

/// `[start, end)` cut into `parts` even pieces (fewer if the range is narrower).
fn even_cuts(start: i128, end: i128, parts: i128) -> Vec<(i64, i64)> {
    let width = end - start;
    let parts = parts.clamp(1, width.max(1));
    let step = (width + parts - 1) / parts;
    let mut cuts = Vec::new();
    let mut a = start;
    while a < end {
        let b = (a + step).min(end);
        cuts.push((a as i64, b.min(i64::MAX as i128) as i64));
        a = b;
    }
    cuts
}

/// Whether a MySQL URL sets `prefer_socket` itself (mysql_async's default is true).
fn names_prefer_socket(url: &str) -> bool {
    url.split_once('?').is_some_and(|(_, query)| {
        query
            .split('&')
            .any(|kv| kv.split('=').next() == Some("prefer_socket"))
    })
}

/// `host:port` of a MySQL URL, for messages (never the credentials).
fn opts_host(url: &str) -> String {
    mysql_async::Opts::from_url(url)
        .map(|o| format!("{}:{}", o.ip_or_hostname(), o.tcp_port()))
        .unwrap_or_else(|_| "?".into())
}

#[async_trait::async_trait]
impl BoundedSource for MysqlSource {
    fn schema(&self) -> &[TableSchema] {
        &self.schemas
    }

    fn row_key(&self, table: usize) -> Vec<usize> {
        self.tables[table].key.clone()
    }

    fn set_projection(&mut self, table: usize, columns: Vec<usize>) {
        let t = &mut self.tables[table];
        let list: Vec<String> = columns
            .iter()
            .map(|&c| quote(&t.schema.columns[c].name))
            .collect();
        t.select = format!("SELECT {} FROM {}", list.join(", "), t.quoted);
        t.projection = columns;
    }

    async fn plan(&self) -> Result<Vec<Split>, SourceError> {
        let mut next_id = 0;
        let mut splits = Vec::new();
        for t in 0..self.tables.len() {
            splits.extend(self.plan_table(t, &mut next_id).await?);
        }
        Ok(splits)
    }

    async fn read(
        &self,
        split: &Split,
        out: &RowSender,
        // Rows are decoded, and dead-lettered, by the worker that maps them.
        _dead_letters: &DeadLetters,
    ) -> Result<u64, SourceError> {
        let table = &self.tables[split.table as usize].schema.name;
        let what = format!("reading chunk {} of table {table}", split.id);
        // A lost connection reads the chunk again from its start: rows sent twice are
        // harmless, since writes are idempotent.
        let read = || async { self.read_once(split, out).await.map_err(ReadError) };
        retry(&self.retry, &what, SOURCE_RETRIES.as_atomic(), read)
            .await
            .map_err(|e| match e {
                RetryError::Final(ReadError(e)) => server(&what, e),
                RetryError::Exhausted(exhausted) => SourceError::Server(exhausted.to_string()),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::{even_cuts, ChunkDecoder, Conversion, Layout};
    use crate::dead_letter::DeadLetters;
    use crate::source::TableSchema;
    use mysql_async::consts::ColumnType;
    use std::path::PathBuf;
    use std::sync::Arc;

    /// What decoding a chunk of table `table` needs: result columns of wire types `types`,
    /// converted by `conversions`, which are `schema`'s columns `projection`.
    fn decoder(
        table: u32,
        types: &[ColumnType],
        conversions: Vec<Conversion>,
        projection: Vec<usize>,
        schema: TableSchema,
    ) -> Arc<ChunkDecoder> {
        let metadata: Vec<_> = types.iter().map(|&t| mysql_async::Column::new(t)).collect();
        Arc::new(ChunkDecoder {
            table,
            layout: Layout::new(&metadata).unwrap(),
            conversions,
            projection,
            schema,
            offset_ns: 0,
        })
    }

    /// Dead letters in a fresh directory of their own (removed by the caller).
    fn dead_letters(name: &str) -> (PathBuf, DeadLetters) {
        let dir = std::env::temp_dir().join(format!("tsmig-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let dead_letters = DeadLetters::new("j", &dir.join("dl.jsonl"));
        (dir, dead_letters)
    }

    /// A batch decoded on a worker: its rows in order, a row with a value that cannot be
    /// converted dead-lettered with its column named (the rows around it kept), and bytes
    /// that are no row refused as a fatal error naming the table.
    #[test]
    fn a_packed_batch_decodes_on_the_worker_and_dead_letters_a_bad_row() {
        use super::PackedRows;
        use crate::model::Value;
        use crate::source::{ColumnKind, EncodedRows, SourceError};

        // The table has a column the job does not read: projection [0, 2].
        let schema = TableSchema::of(
            "readings",
            [
                ("id", ColumnKind::Int),
                ("unread", ColumnKind::Int),
                ("ok", ColumnKind::Bool),
            ],
        );
        let types = [ColumnType::MYSQL_TYPE_LONGLONG, ColumnType::MYSQL_TYPE_TINY];
        let decoder = decoder(
            3,
            &types,
            vec![Conversion::Int, Conversion::Bool],
            vec![0, 2],
            schema,
        );
        let row = |id: i64, ok: u8| {
            let mut packet = vec![0x00, 0x00];
            packet.extend_from_slice(&id.to_le_bytes());
            packet.push(ok);
            packet
        };
        let (dir, dead_letters) = dead_letters("packed");

        let mut batch = PackedRows::new(decoder.clone(), 0);
        batch.push(&row(1, 1));
        batch.push(&row(2, 7)); // 7 in a TINYINT(1) is no boolean
        batch.push(&row(3, 0));
        let rows = Box::new(batch.finish()).decode(&dead_letters).unwrap();
        let got: Vec<_> = rows.iter().map(|r| (r.table, r.values.clone())).collect();
        assert_eq!(
            got,
            vec![
                (3, vec![Some(Value::Int(1)), Some(Value::Bool(true))]),
                (3, vec![Some(Value::Int(3)), Some(Value::Bool(false))]),
            ]
        );
        dead_letters.sync().unwrap();
        let letter: serde_json::Value = serde_json::from_str(
            std::fs::read_to_string(dir.join("dl.jsonl"))
                .unwrap()
                .trim(),
        )
        .unwrap();
        assert_eq!(letter["stage"], "source");
        assert_eq!(
            letter["reason"],
            "table readings: column `ok`: 7 in a boolean column (TINYINT(1)) is neither 0 nor 1"
        );
        assert_eq!(letter["record"], serde_json::json!({"id": 2, "ok": null}));
        assert_eq!(dead_letters.count(), 1);

        let mut broken = PackedRows::new(decoder, 0);
        broken.push(&row(4, 1)[..6]);
        match Box::new(broken.finish()).decode(&dead_letters) {
            Err(SourceError::Fatal(message)) => assert_eq!(
                message,
                "table readings: the server sent a malformed row: the row ends 4 bytes early"
            ),
            other => panic!(
                "a malformed row must fail the batch, got {:?}",
                other.map(|r| r.len())
            ),
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// A batch split by a column's value: each part holds the rows given it, in order, and
    /// decodes to exactly them; a row whose column is NULL or cannot be read goes where
    /// the router sends "none" (and still fails or is dead-lettered where it is decoded);
    /// a part split again splits the same way.
    #[test]
    fn a_packed_batch_splits_by_a_column_without_copying_a_row_twice() {
        use super::PackedRows;
        use crate::model::Value;
        use crate::source::{ColumnKind, EncodedRows, SourceError, SplitKey};

        let schema = TableSchema::of(
            "readings",
            [("id", ColumnKind::Int), ("device", ColumnKind::Text)],
        );
        let types = [
            ColumnType::MYSQL_TYPE_LONGLONG,
            ColumnType::MYSQL_TYPE_VAR_STRING,
        ];
        let decoder = decoder(
            1,
            &types,
            vec![Conversion::Int, Conversion::Text],
            vec![0, 1],
            schema,
        );
        // id, then the device (NULL where `None`).
        let row = |id: i64, device: Option<&str>| {
            let mut packet = vec![0x00, if device.is_none() { 0b1000 } else { 0 }];
            packet.extend_from_slice(&id.to_le_bytes());
            if let Some(d) = device {
                packet.push(d.len() as u8);
                packet.extend_from_slice(d.as_bytes());
            }
            packet
        };
        let mut batch = PackedRows::new(decoder.clone(), 0);
        for (id, device) in [
            (1, Some("a")),
            (2, Some("b")),
            (3, None),
            (4, Some("a")),
            (5, Some("c")),
        ] {
            batch.push(&row(id, device));
        }
        let (dir, dead_letters) = dead_letters("split");
        // "a" → part 0, anything else → 1, none → 2.
        let mut route = |key: SplitKey<'_>| match key {
            SplitKey::Text(b"a") => 0,
            SplitKey::Text(_) | SplitKey::Value(_) => 1,
            SplitKey::None => 2,
        };
        let ids = |part: Box<dyn EncodedRows>| -> Vec<i64> {
            let rows = part.decode(&dead_letters).unwrap();
            assert!(rows.iter().all(|r| r.table == 1));
            rows.iter()
                .map(|r| match r.values[0] {
                    Some(Value::Int(id)) => id,
                    ref other => panic!("id {other:?}"),
                })
                .collect()
        };
        let batch = batch.finish();
        assert_eq!(batch.len(), 5);
        let mut parts = Box::new(batch).split(1, 3, &mut route).into_iter();
        let (a, other, none) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        assert_eq!(
            (a.as_ref().unwrap().len(), other.as_ref().unwrap().len()),
            (2, 2)
        );
        assert_eq!(ids(a.unwrap()), vec![1, 4]);
        assert_eq!(ids(none.unwrap()), vec![3]);
        // A part splits again by the same rule; a part that gets no row is `None`.
        let again = other.unwrap().split(1, 3, &mut route);
        assert!(again[0].is_none() && again[2].is_none());
        assert_eq!(ids(again.into_iter().nth(1).flatten().unwrap()), vec![2, 5]);

        // A row too short to hold its device goes to "none", where decoding it fails.
        let mut broken = PackedRows::new(decoder, 0);
        broken.push(&row(6, Some("a")));
        broken.push(&row(7, Some("abc"))[..12]);
        let parts = Box::new(broken.finish()).split(1, 3, &mut route);
        assert_eq!(parts[0].as_ref().map(|p| p.len()), Some(1));
        let none = parts.into_iter().nth(2).flatten().unwrap();
        assert!(matches!(
            none.decode(&dead_letters),
            Err(SourceError::Fatal(_))
        ));
        assert_eq!(dead_letters.count(), 0);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_socket_is_preferred_only_when_the_url_says_so() {
        use super::names_prefer_socket;
        assert!(!names_prefer_socket("mysql://u:p@127.0.0.1:3306/db"));
        assert!(!names_prefer_socket(
            "mysql://u:p@127.0.0.1:3306/db?socket=/x.sock"
        ));
        assert!(names_prefer_socket("mysql://u:p@h/db?prefer_socket=true"));
        assert!(names_prefer_socket(
            "mysql://u:p@h/db?a=1&prefer_socket=false"
        ));
    }

    #[test]
    fn even_cuts_cover_the_range_exactly() {
        assert_eq!(even_cuts(0, 10, 3), vec![(0, 4), (4, 8), (8, 10)]);
        assert_eq!(even_cuts(5, 7, 10), vec![(5, 6), (6, 7)]);
        assert_eq!(even_cuts(-3, 3, 1), vec![(-3, 3)]);
        let cuts = even_cuts(i64::MIN as i128, i64::MAX as i128 + 1, 4);
        assert_eq!(cuts.first().unwrap().0, i64::MIN);
        assert_eq!(cuts.last().unwrap().1, i64::MAX);
    }
}
