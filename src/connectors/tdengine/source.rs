//! The TDengine source: plans and reads sub-table × window splits over REST.

use super::client::RestClient;
use super::config::TdengineSourceConfig;
use super::encoding::{classify, convert, precision, time_nanos, to_units, Conversion};
use crate::dead_letter::DeadLetters;
use crate::job::{Job, TimeUnit};
use crate::model::{Row, Value};
use crate::source::{
    dead_letter_row, BoundedSource, Column, ColumnKind, RowSender, SourceError, Split, TableSchema,
};

/// Rows sent to the engine per batch.
const ROWS_PER_BATCH: usize = 1024;

/// The name of the column holding a row's sub-table.
pub const TBNAME: &str = "tbname";

struct Table {
    /// `db`.`table`, quoted.
    quoted: String,
    /// The timestamp column (the primary key), quoted.
    ts: String,
    schema: TableSchema,
    /// Per schema column.
    conversions: Vec<Conversion>,
    /// Projected schema columns, in row order.
    projection: Vec<usize>,
    /// What a read selects: the timestamp (for paging), then every other projected column
    /// but `tbname`.
    select: String,
    /// How many columns `select` names.
    width: usize,
    /// Per projected column: its position in a reply row, or `None` for `tbname`.
    slots: Vec<Option<usize>>,
}

/// A TDengine database and the tables a job reads from it.
pub struct TdengineSource {
    client: RestClient,
    database: String,
    precision: TimeUnit,
    /// Width of a split's window, in `precision` units.
    window: i64,
    page_rows: u64,
    tables: Vec<Table>,
    schemas: Vec<TableSchema>,
}

/// A name in backquotes, as TDengine quotes identifiers.
fn quote(name: &str) -> String {
    format!("`{name}`")
}

/// A string literal in single quotes.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A reply TDengine gave that tsmig cannot use: columns it did not ask for, a time it
/// cannot read, a sub-table list cut short by taosAdapter's `restfulRowLimit`. Fatal:
/// asking again, or restarting the job, gets the same reply.
fn bad_reply(what: &str, e: impl std::fmt::Display) -> SourceError {
    SourceError::Fatal(format!("TDengine: {what}: {e}"))
}

impl TdengineSource {
    /// Reads the database's precision and the schema of every table the job names.
    pub async fn open(job: &Job, config: &TdengineSourceConfig) -> Result<Self, SourceError> {
        let client = RestClient::new(config).map_err(|e| job.error_at("source.url", e))?;
        let db = &config.database;
        let precision = read_precision(&client, job, db).await?;
        let window = ((config.window.as_nanos() / precision.nanos() as u128) as i64).max(1);
        let mut tables = Vec::new();
        for (i, t) in config.tables.iter().enumerate() {
            let table = describe(&client, db, &t.name).await?;
            if table.schema.columns[0].kind != ColumnKind::Time {
                return Err(job
                    .error_at(
                        &format!("source.tables[{i}].name"),
                        format!(
                            "{} has no timestamp as its first column; is it a table of database {db}?",
                            t.name
                        ),
                    )
                    .into());
            }
            tables.push(table);
        }
        let schemas = tables.iter().map(|t| t.schema.clone()).collect();
        Ok(Self {
            client,
            database: db.clone(),
            precision,
            window,
            page_rows: config.page_rows,
            tables,
            schemas,
        })
    }

    /// The splits of one table: per sub-table, the windows between its first and last row.
    /// With `range` (`[from, to)` in the database's precision, a polling round), only the
    /// rows in it, and each sub-table's splits cover the whole range, so a row written in it
    /// after planning is still read.
    async fn plan_table(
        &self,
        t: usize,
        next_id: &mut u64,
        range: Option<(i64, i64)>,
    ) -> Result<Vec<Split>, SourceError> {
        let table = &self.tables[t];
        let what = format!("finding the sub-tables of {}", table.schema.name);
        let filter = range
            .map(|(from, to)| format!(" WHERE {ts} >= {from} AND {ts} < {to}", ts = table.ts))
            .unwrap_or_default();
        // The rows of the whole table first: the sub-tables found must account for them.
        let total = self
            .client
            .query(
                &format!("SELECT COUNT(*) FROM {}{filter}", table.quoted),
                &what,
            )
            .await?
            .data
            .first()
            .and_then(|row| row.first())
            .and_then(|count| count.as_u64())
            .unwrap_or(0);
        let reply = self
            .client
            .query(
                &format!(
                    "SELECT tbname, FIRST({ts}), LAST({ts}), COUNT(*) FROM {}{filter} PARTITION BY tbname",
                    table.quoted,
                    ts = table.ts
                ),
                &what,
            )
            .await?;
        if reply.columns.len() != 4 {
            return Err(bad_reply(&what, "expected 4 columns"));
        }
        let mut ranges = Vec::new();
        for row in &reply.data {
            let name = row[0]
                .as_str()
                .ok_or_else(|| bad_reply(&what, format!("sub-table name {}", row[0])))?;
            if row[1].is_null() {
                continue; // no rows
            }
            let units = |v| {
                time_nanos(v, self.precision)
                    .and_then(|ns| to_units(ns, self.precision))
                    .map_err(|e| bad_reply(&what, e))
            };
            let (first, last) = (units(&row[1])?, units(&row[2])?);
            let count = row[3].as_u64().unwrap_or(0);
            ranges.push((name.to_string(), first, last, count));
        }
        // Rows written while planning only add to the sub-tables' counts; fewer rows than
        // the table holds means the list was cut short (taosAdapter's `restfulRowLimit`
        // cuts replies without a word), and reading on would skip sub-tables.
        let found: u64 = ranges.iter().map(|r| r.3).sum();
        if found < total {
            return Err(bad_reply(
                &what,
                format!(
                    "the sub-tables listed hold {found} of the table's {total} rows: the reply \
                     was cut short (is taosAdapter's restfulRowLimit below the number of \
                     sub-tables?); raise the limit and plan again"
                ),
            ));
        }
        ranges.sort();
        let mut splits = Vec::new();
        for (name, first, last, count) in ranges {
            let windows = windows(first, last, self.window);
            let n = windows.len();
            let each = count.div_ceil(n as u64);
            for (i, (start, end)) in windows.into_iter().enumerate() {
                splits.push(Split {
                    id: *next_id,
                    table: t as u32,
                    partition: name.clone(),
                    // The first window open below and the last open above (or at the
                    // round's bounds), so rows written at either end are still read.
                    start: if i > 0 {
                        Some(start)
                    } else {
                        range.map(|r| r.0)
                    },
                    end: if i + 1 < n {
                        Some(end)
                    } else {
                        range.map(|r| r.1)
                    },
                    nulls: false,
                    estimated_rows: each,
                });
                *next_id += 1;
            }
        }
        Ok(splits)
    }

    /// The projected values of one reply row, and why a value was refused (naming its
    /// column) if one was: the row then goes to the dead-letter file.
    fn convert_row(
        &self,
        table: &Table,
        sub_table: &str,
        row: &[serde_json::Value],
    ) -> (Vec<Option<Value>>, Option<String>) {
        let mut values = Vec::with_capacity(table.slots.len());
        let mut failure = None;
        for (&column, slot) in table.projection.iter().zip(&table.slots) {
            let converted = match slot {
                None => Ok(Some(Value::String(sub_table.into()))),
                Some(at) => convert(&row[*at], table.conversions[column], self.precision),
            };
            match converted {
                Ok(v) => values.push(v),
                Err(reason) => {
                    failure = Some(format!(
                        "sub-table {sub_table}, column `{}`: {reason}",
                        table.schema.columns[column].name
                    ));
                    values.push(None);
                }
            }
        }
        (values, failure)
    }
}

/// The database's `precision` from `information_schema.ins_databases`.
async fn read_precision(client: &RestClient, job: &Job, db: &str) -> Result<TimeUnit, SourceError> {
    let what = "reading the database's precision";
    let reply = client
        .query(
            &format!(
                "SELECT name, `precision` FROM information_schema.ins_databases WHERE name = {}",
                literal(db)
            ),
            what,
        )
        .await?;
    let Some(row) = reply.data.first() else {
        return Err(job
            .error_at(
                "source.database",
                format!("database {db} does not exist (or the user may not see it)"),
            )
            .into());
    };
    let at = reply.column("precision").map_err(|e| bad_reply(what, e))?;
    match row[at].as_str() {
        Some(text) => precision(text).map_err(|e| bad_reply(what, e)),
        None => Err(bad_reply(what, format!("precision {}", row[at]))),
    }
}

/// A table's schema from `DESCRIBE`: the timestamp and data columns, the TAG columns
/// (`note` = `TAG`), then `tbname`.
async fn describe(client: &RestClient, db: &str, name: &str) -> Result<Table, SourceError> {
    let quoted = format!("{}.{}", quote(db), quote(name));
    let what = format!("reading the schema of table {name}");
    let reply = client.query(&format!("DESCRIBE {quoted}"), &what).await?;
    let at = |column| reply.column(column).map_err(|e| bad_reply(&what, e));
    let (field, kind, length, note) = (at("field")?, at("type")?, at("length")?, at("note")?);
    let text = |row: &[serde_json::Value], c: usize| match &row[c] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    let mut columns = Vec::new();
    let mut tags = Vec::new();
    for row in &reply.data {
        let type_name = text(row, kind);
        let mut source_type = match type_name.as_str() {
            "BINARY" | "VARCHAR" | "NCHAR" | "VARBINARY" => {
                format!("{type_name}({})", text(row, length))
            }
            _ => type_name.clone(),
        };
        let is_tag = text(row, note).eq_ignore_ascii_case("TAG");
        if is_tag {
            source_type.push_str(" TAG");
        }
        let (conversion, kind) = classify(&type_name);
        let column = Column {
            name: text(row, field),
            kind,
            source_type,
        };
        if is_tag { &mut tags } else { &mut columns }.push((column, conversion));
    }
    if columns.is_empty() {
        return Err(bad_reply(&what, "DESCRIBE shows no columns"));
    }
    let ts = quote(&columns[0].0.name);
    columns.extend(tags);
    columns.push((
        Column {
            name: TBNAME.into(),
            kind: ColumnKind::Text,
            source_type: "tbname (the sub-table)".into(),
        },
        Conversion::Text,
    ));
    let (columns, conversions) = columns.into_iter().unzip();
    Ok(Table {
        quoted,
        ts,
        schema: TableSchema {
            name: name.to_string(),
            columns,
        },
        conversions,
        projection: Vec::new(),
        select: String::new(),
        width: 0,
        slots: Vec::new(),
    })
}

/// The windows of `width` (aligned to multiples of it) that cover `first..=last`.
fn windows(first: i64, last: i64, width: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut start = first.div_euclid(width) * width;
    while start <= last {
        let end = start.saturating_add(width);
        out.push((start, end));
        if end == i64::MAX {
            break;
        }
        start = end;
    }
    out
}

#[async_trait::async_trait]
impl BoundedSource for TdengineSource {
    fn schema(&self) -> &[TableSchema] {
        &self.schemas
    }

    fn set_projection(&mut self, table: usize, columns: Vec<usize>) {
        let t = &mut self.tables[table];
        let mut select = vec![t.ts.clone()];
        t.slots = columns
            .iter()
            .map(|&c| match c {
                // The timestamp is already first, for paging.
                0 => Some(0),
                _ if t.schema.columns[c].name == TBNAME => None,
                _ => {
                    select.push(quote(&t.schema.columns[c].name));
                    Some(select.len() - 1)
                }
            })
            .collect();
        t.select = select.join(", ");
        t.width = select.len();
        t.projection = columns;
    }

    async fn plan(&self) -> Result<Vec<Split>, SourceError> {
        let mut next_id = 0;
        let mut splits = Vec::new();
        for t in 0..self.tables.len() {
            splits.extend(self.plan_table(t, &mut next_id, None).await?);
        }
        Ok(splits)
    }

    fn follows_by_time(&self) -> bool {
        true
    }

    async fn plan_window(&self, from_ns: i64, to_ns: i64) -> Result<Vec<Split>, SourceError> {
        // Whole units, rounded down at both ends: consecutive rounds stay contiguous.
        let unit = self.precision.nanos();
        let range = (from_ns.div_euclid(unit), to_ns.div_euclid(unit));
        let mut next_id = 0;
        let mut splits = Vec::new();
        if range.0 < range.1 {
            for t in 0..self.tables.len() {
                splits.extend(self.plan_table(t, &mut next_id, Some(range)).await?);
            }
        }
        Ok(splits)
    }

    async fn read(
        &self,
        split: &Split,
        out: &RowSender,
        dead_letters: &DeadLetters,
    ) -> Result<u64, SourceError> {
        let table = &self.tables[split.table as usize];
        let from = format!("{}.{}", quote(&self.database), quote(&split.partition));
        let what = format!(
            "reading split {} of {} (sub-table {}, {}..{})",
            split.id,
            table.schema.name,
            split.partition,
            split.start.map(|v| v.to_string()).unwrap_or_default(),
            split.end.map(|v| v.to_string()).unwrap_or_default(),
        );
        let ts = &table.ts;
        let mut lower = split.start.map(|s| format!("{ts} >= {s}"));
        let upper = split.end.map(|e| format!("{ts} < {e}"));
        let mut batch = Vec::with_capacity(ROWS_PER_BATCH);
        let mut sent = 0u64;
        loop {
            let conditions: Vec<&str> = lower.iter().chain(&upper).map(String::as_str).collect();
            let filter = if conditions.is_empty() {
                String::new()
            } else {
                format!(" WHERE {}", conditions.join(" AND "))
            };
            let sql = format!(
                "SELECT {} FROM {from}{filter} ORDER BY {ts} LIMIT {}",
                table.select, self.page_rows
            );
            let reply = self.client.query(&sql, &what).await?;
            let expected = table.width;
            if reply.columns.len() != expected {
                return Err(bad_reply(
                    &what,
                    format!(
                        "{} columns in the reply, {expected} asked for",
                        reply.columns.len()
                    ),
                ));
            }
            let mut last = None;
            for row in &reply.data {
                // The paging key: a row whose time cannot be read stops the read, since
                // the next page could not start after it.
                let units = time_nanos(&row[0], self.precision)
                    .and_then(|ns| to_units(ns, self.precision))
                    .map_err(|e| bad_reply(&what, e))?;
                last = Some(units);
                let (values, failure) = self.convert_row(table, &split.partition, row);
                if let Some(reason) = failure {
                    dead_letter_row(
                        dead_letters,
                        &table.schema,
                        &table.projection,
                        &values,
                        &reason,
                    );
                    continue;
                }
                batch.push(Row {
                    table: split.table,
                    values,
                });
                if batch.len() == ROWS_PER_BATCH {
                    sent += batch.len() as u64;
                    out.send(std::mem::replace(
                        &mut batch,
                        Vec::with_capacity(ROWS_PER_BATCH),
                    ))
                    .await?;
                }
            }
            // Only an empty page ends the window: taosAdapter cuts replies at its
            // `restfulRowLimit` without saying so, so a short page proves nothing.
            match last {
                Some(last) => lower = Some(format!("{ts} > {last}")),
                None => break,
            }
        }
        sent += batch.len() as u64;
        out.send(batch).await?;
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::windows;

    #[test]
    fn windows_are_aligned_and_cover_every_row() {
        assert_eq!(windows(5, 5, 10), vec![(0, 10)]);
        assert_eq!(windows(5, 25, 10), vec![(0, 10), (10, 20), (20, 30)]);
        assert_eq!(windows(10, 19, 10), vec![(10, 20)]);
        assert_eq!(windows(-5, 3, 10), vec![(-10, 0), (0, 10)]);
        assert_eq!(windows(i64::MAX - 1, i64::MAX - 1, i64::MAX / 2).len(), 1);
    }
}
