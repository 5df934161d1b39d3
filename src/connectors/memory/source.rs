//! The memory database as a source: key-range splits for the backfill, and its log for CDC.

use super::{Entry, MemoryDatabase, Values};
use crate::dead_letter::DeadLetters;
use crate::model::{Row, Value};
use crate::source::{
    BoundedSource, ChangeEvent, ChangeSender, ChangeSource, EncodedRows, LogPosition, LogStatus,
    RowChange, RowSender, SourceError, Split, SplitKey, TableSchema,
};
use std::sync::Arc;

/// The file name of every memory log position.
const LOG: &str = "memory";
/// Rows a read sends per batch: small, so that reads and epochs interleave.
const ROWS_PER_BATCH: usize = 3;

/// A memory database read as a source.
pub struct MemorySource {
    db: Arc<MemoryDatabase>,
    schema: Vec<TableSchema>,
    projections: Vec<Vec<usize>>,
}

impl MemorySource {
    /// The source over `db`, every column projected.
    pub fn new(db: Arc<MemoryDatabase>) -> Self {
        let schema: Vec<TableSchema> = db.tables().iter().map(|t| t.schema.clone()).collect();
        let projections = schema
            .iter()
            .map(|s| (0..s.columns.len()).collect())
            .collect();
        Self {
            db,
            schema,
            projections,
        }
    }

    fn row(&self, table: usize, values: &Values) -> Row {
        Row {
            table: table as u32,
            values: self.projections[table]
                .iter()
                .map(|&c| values[c].clone())
                .collect(),
        }
    }

    fn position(offset: u64) -> LogPosition {
        LogPosition {
            file: LOG.into(),
            offset,
        }
    }
}

#[async_trait::async_trait]
impl BoundedSource for MemorySource {
    fn schema(&self) -> &[TableSchema] {
        &self.schema
    }

    fn set_projection(&mut self, table: usize, columns: Vec<usize>) {
        self.projections[table] = columns;
    }

    /// Key ranges of `chunk_rows` keys at the snapshot, the first open below and the last
    /// open above (rows inserted later land in them).
    async fn plan(&self) -> Result<Vec<Split>, SourceError> {
        let snapshot = self
            .db
            .snapshot_at
            .load(std::sync::atomic::Ordering::SeqCst);
        let state = self.db.state_at(snapshot);
        let mut splits = Vec::new();
        for (t, rows) in state.iter().enumerate() {
            let keys: Vec<i64> = rows.keys().copied().collect();
            let bounds: Vec<i64> = keys
                .chunks(self.db.chunk_rows.max(1))
                .skip(1)
                .map(|c| c[0])
                .collect();
            let mut start = None;
            for end in bounds.into_iter().map(Some).chain([None]) {
                splits.push(Split {
                    id: splits.len() as u64,
                    table: t as u32,
                    partition: String::new(),
                    start,
                    end,
                    nulls: false,
                    estimated_rows: self.db.chunk_rows as u64,
                });
                start = end;
            }
        }
        Ok(splits)
    }

    async fn read(
        &self,
        split: &Split,
        out: &RowSender,
        _dead_letters: &DeadLetters,
    ) -> Result<u64, SourceError> {
        if let Some((id, message)) = self.db.faults().fail_split {
            if id == split.id {
                return Err(SourceError::Server(message));
            }
        }
        let at = self.db.chunk_position();
        let table = split.table as usize;
        let rows: Vec<Row> = self.db.state_at(at)[table]
            .range(split.start.unwrap_or(i64::MIN)..split.end.unwrap_or(i64::MAX))
            .map(|(_, values)| self.row(table, values))
            .collect();
        let n = rows.len() as u64;
        let malformed = self
            .db
            .faults()
            .malformed_split
            .filter(|(id, _)| *id == split.id)
            .map(|(_, message)| message);
        for (i, batch) in rows.chunks(ROWS_PER_BATCH).enumerate() {
            // Every other batch is handed over still "encoded", to be decoded by the
            // worker that takes it, as a MySQL source's are: both kinds of batch go
            // through the engine in every model run.
            if i % 2 == 0 {
                out.send_encoded(Box::new(Encoded {
                    table: table as u32,
                    rows: batch.to_vec(),
                    malformed: malformed.clone(),
                }))
                .await?;
            } else {
                out.send(batch.to_vec()).await?;
            }
            self.db
                .rows_read
                .fetch_add(batch.len() as u64, std::sync::atomic::Ordering::SeqCst);
            tokio::task::yield_now().await;
        }
        Ok(n)
    }
}

impl MemorySource {
    /// `rows` of table `table` as one batch still "encoded", as `read` hands over every
    /// other batch: for tests of what the engine does with encoded batches.
    pub fn encoded(table: u32, rows: Vec<Row>) -> Box<dyn EncodedRows> {
        Box::new(Encoded {
            table,
            rows,
            malformed: None,
        })
    }
}

/// A batch of a memory table's rows handed over as a source's encoded rows are: decoded
/// (here: given back as they are, or refused as malformed) by the worker that takes it.
#[derive(Clone)]
struct Encoded {
    table: u32,
    rows: Vec<Row>,
    /// The scripted fault: the batch's bytes are no row.
    malformed: Option<String>,
}

impl EncodedRows for Encoded {
    fn for_each_row(
        self: Box<Self>,
        _dead_letters: &DeadLetters,
        values: &mut Vec<Option<Value>>,
        each: &mut dyn FnMut(u32, &mut Vec<Option<Value>>),
    ) -> Result<(), SourceError> {
        if let Some(message) = self.malformed {
            return Err(SourceError::Fatal(message));
        }
        for row in self.rows {
            values.clear();
            values.extend(row.values);
            each(row.table, values);
        }
        Ok(())
    }

    fn len(&self) -> usize {
        self.rows.len()
    }

    fn table(&self) -> u32 {
        self.table
    }

    fn split(
        self: Box<Self>,
        column: usize,
        parts: usize,
        part: &mut dyn FnMut(SplitKey<'_>) -> usize,
    ) -> Vec<Option<Box<dyn EncodedRows>>> {
        let mut split: Vec<Option<Encoded>> = (0..parts).map(|_| None).collect();
        for row in self.rows {
            // Bytes that are no row have no device to read: the part for "none" takes them.
            let key = match (&self.malformed, row.values.get(column)) {
                (None, Some(Some(Value::String(s)))) => SplitKey::Text(s.as_bytes()),
                (None, Some(Some(v))) => SplitKey::Value(v),
                _ => SplitKey::None,
            };
            let at = part(key);
            split[at]
                .get_or_insert_with(|| Encoded {
                    table: self.table,
                    rows: Vec::new(),
                    malformed: self.malformed.clone(),
                })
                .rows
                .push(row);
        }
        split
            .into_iter()
            .map(|p| p.map(|p| Box::new(p) as Box<dyn EncodedRows>))
            .collect()
    }

    fn clone_box(&self) -> Box<dyn EncodedRows> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl ChangeSource for MemorySource {
    async fn check_change_log(&self) -> Result<(), SourceError> {
        Ok(())
    }

    async fn log_end(&self) -> Result<LogPosition, SourceError> {
        Ok(Self::position(self.db.end()))
    }

    async fn snapshot_position(&self) -> Result<LogPosition, SourceError> {
        Ok(Self::position(
            self.db
                .snapshot_at
                .load(std::sync::atomic::Ordering::SeqCst),
        ))
    }

    async fn status(&self, from: &LogPosition) -> Result<LogStatus, SourceError> {
        let end = self.db.end();
        Ok(LogStatus {
            end: Self::position(end),
            bytes_behind: end.saturating_sub(from.offset),
            server_time_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64,
        })
    }

    /// Sends the log from `from`, a transaction at a time, then a heartbeat at its end,
    /// and waits for more.
    async fn follow(
        &self,
        from: LogPosition,
        out: &ChangeSender,
        _dead_letters: &DeadLetters,
    ) -> Result<(), SourceError> {
        if from.file != LOG {
            return Err(SourceError::Server(format!(
                "{from} is not a position of a memory log"
            )));
        }
        let mut next = from.offset as usize;
        let mut in_transaction = false;
        loop {
            let appended = self.db.appended.notified();
            let entries: Vec<Entry> = {
                let log = self.db.lock_log();
                log[next.min(log.len())..].to_vec()
            };
            let mut rows = Vec::new();
            let fail_at = self.db.faults().fail_log_at;
            for entry in entries {
                if let Some((at, message)) = &fail_at {
                    if next as u64 >= *at {
                        return Err(SourceError::Server(message.clone()));
                    }
                }
                next += 1;
                in_transaction = matches!(entry, Entry::Change { .. });
                match entry {
                    Entry::Change {
                        table,
                        before,
                        after,
                    } => {
                        let t = table as usize;
                        rows.push(RowChange {
                            before: before.map(|v| self.row(t, &v)),
                            after: after.map(|v| self.row(t, &v)),
                        });
                        if rows.len() >= ROWS_PER_BATCH {
                            out.send_batch(ChangeEvent::Rows(std::mem::take(&mut rows)))
                                .await?;
                        }
                    }
                    Entry::Commit { timestamp } => {
                        if !rows.is_empty() {
                            out.send_batch(ChangeEvent::Rows(std::mem::take(&mut rows)))
                                .await?;
                        }
                        out.send_batch(ChangeEvent::Commit {
                            position: Self::position(next as u64),
                            timestamp,
                        })
                        .await?;
                    }
                }
            }
            if !rows.is_empty() {
                out.send_batch(ChangeEvent::Rows(rows)).await?;
            }
            // A log that ends inside a transaction has the rest yet to come: no heartbeat.
            if !in_transaction {
                out.send_batch(ChangeEvent::Idle {
                    position: Self::position(next as u64),
                })
                .await?;
            }
            appended.await;
        }
    }
}
