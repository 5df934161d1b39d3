//! Planning and reading InfluxDB 1.x measurements: every query bounded, gated and retried
//! (the shape is drawn in the module docs of [`super`]).
//!
//! What each planning query costs the server, per measurement (after one `SHOW DATABASES`
//! and, without a list of measurements, `SHOW MEASUREMENTS` paged by 10,000):
//! - `SHOW FIELD KEYS` and `SHOW TAG KEYS`: index lookups.
//! - first and last time: `SELECT * ... ORDER BY time ASC|DESC LIMIT 1`, one row each,
//!   but the server opens a cursor per series to find it (one block read per series).
//! - `COUNT(*) ... GROUP BY time(bucket) FILL(none) LIMIT 10000`, paged on from the last
//!   bucket answered: decodes every block once (counts are not kept in TSM indexes),
//!   answers one row per non-empty bucket. This is the expensive one: about as much
//!   server work as reading the data, in few small answers.
//! - only for buckets over the bound: one `COUNT(*)` per halving; where a bucket is
//!   divided by series, `SHOW SERIES EXACT CARDINALITY` once per measurement (an index
//!   scan) and one `COUNT(*) ... GROUP BY * SLIMIT` page per 10,000 series of the
//!   measurement (SLIMIT counts series without points in the range too).
//!
//! Planning holds the series counts of one oversized bucket at a time in memory (a
//! predicate per series with points in it); reading holds one chunk.

use super::decode::FieldType;
use super::source_config::InfluxSourceConfig;
use crate::connectors::influxdb::client::{
    quote_ident, series_columns, series_predicate, ChunkedAnswer, InfluxClient, QueryError,
};
use crate::dead_letter::DeadLetters;
use crate::job::{Job, MappingConfig, TimeUnit};
use crate::metrics::SOURCE_RETRIES;
use crate::model::{Row, Value};
use crate::retry::{retry, RetryError, RetryPolicy, Retryable};
use crate::source::{
    BoundedSource, Column, ColumnKind, RowSender, SourceError, Split, TableSchema,
};
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, SemaphorePermit};

/// Narrowest time range planning halves a bucket down to before it divides it by series
/// (a single series is halved further, down to one nanosecond).
const MIN_TIME_SPLIT_NS: i64 = 1_000_000_000;
/// Series one split's predicate names at most: the query text grows with each.
const MAX_SERIES_PER_SPLIT: usize = 100;
/// Rows one planning query answers at most (histogram buckets, series counts, measurement
/// names), or `max_points_per_query` if that is smaller.
const MAX_PLANNING_ROWS: u64 = 10_000;

/// Rows per chunk of a planning query's answer.
const PLANNING_CHUNK_SIZE: usize = 100;

/// The name of the time column of every measurement's schema.
pub const TIME_COLUMN: &str = "time";

/// One measurement and how to read it.
struct Measurement {
    /// `"rp"."measurement"`, or `"measurement"` for the default policy.
    from: String,
    /// Tag keys, sorted (schema columns `1..=tags.len()`).
    tags: Vec<String>,
    /// Field keys and types, sorted (schema columns after the tags).
    fields: Vec<(String, FieldType)>,
    /// Projected schema columns, in row order.
    projection: Vec<usize>,
}

/// Paces rows to at most `rate_limit` a second, across every task that shares it (one
/// GCRA limiter of governor's per process). Its burst is one chunk, or a second's worth of
/// rows where that is less, so no stretch of time sees more than one burst above the rate.
struct RowRate {
    limiter: governor::DefaultDirectRateLimiter,
    /// The most rows one wait may ask for: the limiter's burst.
    burst: NonZeroU32,
}

impl RowRate {
    fn new(per_second: NonZeroU32, chunk_size: usize) -> Self {
        let chunk = NonZeroU32::new(chunk_size.clamp(1, u32::MAX as usize) as u32)
            .unwrap_or(NonZeroU32::MIN);
        let burst = per_second.min(chunk);
        let quota = governor::Quota::per_second(per_second).allow_burst(burst);
        Self {
            limiter: governor::RateLimiter::direct(quota),
            burst,
        }
    }

    /// Waits until `rows` more rows may go, a burst at a time.
    async fn take(&self, rows: usize) {
        let mut left = rows;
        while let Some(n) = NonZeroU32::new(left.min(self.burst.get() as usize) as u32) {
            // Never more than the burst, the one thing until_n_ready refuses.
            let _ = self.limiter.until_n_ready(n).await;
            left -= n.get() as usize;
        }
    }
}

/// How one attempt at a query failed.
enum Attempt {
    /// Worth repeating; `sent` rows of it had already gone to the engine.
    Transient { message: String, sent: u64 },
    /// The job must fail (or stop).
    Fail(SourceError),
}

/// Only [`Attempt::Transient`] is sent again.
impl Retryable for Attempt {
    fn is_transient(&self) -> bool {
        matches!(self, Attempt::Transient { .. })
    }
}

impl std::fmt::Display for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Attempt::Transient { message, sent: 0 } => f.write_str(message),
            // Rows sent twice are counted in rows_read: say where they come from.
            Attempt::Transient { message, sent } => write!(f, "{message} (after {sent} rows)"),
            Attempt::Fail(e) => e.fmt(f),
        }
    }
}

impl From<QueryError> for Attempt {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Transient(message) => Attempt::Transient { message, sent: 0 },
            QueryError::Definite(message) => Attempt::Fail(SourceError::Fatal(message)),
        }
    }
}

/// A failure to read the schema, said as such.
fn cannot_open(e: SourceError) -> SourceError {
    match e {
        SourceError::Server(m) => SourceError::Server(format!(
            "cannot read the schema from InfluxDB (source.url, source.database): {m}"
        )),
        SourceError::Fatal(m) => SourceError::Fatal(format!(
            "cannot read the schema from InfluxDB (source.url, source.database): {m}"
        )),
        other => other,
    }
}

/// An InfluxDB 1.x database and the measurements a job reads from it.
pub struct InfluxSource {
    client: InfluxClient,
    measurements: Vec<Measurement>,
    schemas: Vec<TableSchema>,
    bucket_ns: i64,
    max_points: u64,
    chunk_size: usize,
    stall: Duration,
    retry: RetryPolicy,
    /// Queries in flight, process-wide: every worker's reads share this source.
    gate: Semaphore,
    rate: Option<RowRate>,
    /// Queries sent so far (planning and reading), for the logs.
    queries: AtomicU64,
}

impl InfluxSource {
    /// Connects, finds the measurements to read and reads their schemas.
    pub async fn open(job: &Job, config: &InfluxSourceConfig) -> Result<Self, SourceError> {
        let client = InfluxClient::v1(
            config.url.trim_end_matches('/'),
            &config.database,
            config.retention_policy.as_deref(),
            TimeUnit::Nanos,
            config
                .username
                .clone()
                .map(|u| (u, config.password.clone().unwrap_or_default())),
            config.query_timeout,
        )
        .map_err(|e| job.error_at("source.url", e))?;
        let mut source = InfluxSource {
            client,
            measurements: Vec::new(),
            schemas: Vec::new(),
            bucket_ns: config.bucket_ns(),
            max_points: config.max_points_per_query,
            chunk_size: config.chunk_size,
            stall: config.timeout,
            // Opening fails at once: a wrong URL or database should not take minutes of
            // retries to say so. Once open, transient failures are retried.
            retry: config.retry.without_retries(),
            gate: Semaphore::new(config.concurrency),
            rate: config
                .rate_limit
                .and_then(|r| NonZeroU32::new(r.min(u32::MAX as u64) as u32))
                .map(|r| RowRate::new(r, config.chunk_size)),
            queries: AtomicU64::new(0),
        };

        // Which measurements, and the job-file key to blame if one is not there.
        let named: Vec<(String, String)> = match &config.measurements {
            Some(list) => list
                .iter()
                .enumerate()
                .map(|(i, m)| (m.clone(), format!("source.measurements[{i}]")))
                .collect(),
            None if !job.file.mappings.is_empty() => {
                let mut seen = Vec::new();
                for (i, m) in job.file.mappings.iter().enumerate() {
                    if !seen.iter().any(|(n, _)| *n == m.table) {
                        seen.push((m.table.clone(), format!("mappings[{i}].table")));
                    }
                }
                seen
            }
            None => Vec::new(),
        };
        let databases = source.query("SHOW DATABASES").await.map_err(cannot_open)?;
        let exists = databases.iter().any(|s| {
            s["values"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|row| row[0].as_str() == Some(config.database.as_str()))
        });
        if !exists {
            return Err(job
                .error_at(
                    "source.database",
                    format!(
                        "database `{}` does not exist (or the user may not read it)",
                        config.database
                    ),
                )
                .into());
        }
        let discover = named.is_empty();
        let names = if discover {
            source.show_measurements().await.map_err(cannot_open)?
        } else {
            named.iter().map(|(n, _)| n.clone()).collect()
        };

        for (t, name) in names.iter().enumerate() {
            let from = match &config.retention_policy {
                Some(rp) => format!("{}.{}", quote_ident(rp), quote_ident(name)),
                None => quote_ident(name),
            };
            let fields = source.field_keys(name, &from).await.map_err(cannot_open)?;
            if fields.is_empty() {
                if discover {
                    tracing::warn!(measurement = %name, "measurement has no field keys (no data): skipped");
                    continue;
                }
                return Err(job
                    .error_at(
                        &named[t].1,
                        format!(
                            "measurement `{name}` has no fields in database `{}`{}: it does not exist or holds no data",
                            config.database,
                            config
                                .retention_policy
                                .as_ref()
                                .map(|rp| format!(", retention policy `{rp}`"))
                                .unwrap_or_default()
                        ),
                    )
                    .into());
            }
            let tags = source.tag_keys(&from).await?;
            if let Some(both) = tags.iter().find(|t| fields.iter().any(|(f, _)| f == *t)) {
                return Err(SourceError::Fatal(format!(
                    "measurement `{name}`: `{both}` is both a tag key and a field key; tsmig cannot tell them apart in an answer"
                )));
            }
            if tags.iter().any(|t| t == TIME_COLUMN) {
                return Err(SourceError::Fatal(format!(
                    "measurement `{name}` has a tag key `time`, which InfluxQL cannot select"
                )));
            }
            let mut columns = vec![Column {
                name: TIME_COLUMN.into(),
                kind: ColumnKind::Time,
                source_type: "timestamp (ns)".into(),
            }];
            columns.extend(tags.iter().map(|t| Column {
                name: t.clone(),
                kind: ColumnKind::Text,
                source_type: "tag".into(),
            }));
            columns.extend(fields.iter().map(|(f, ty)| Column {
                name: f.clone(),
                kind: ty.kind(),
                source_type: ty.source_type().into(),
            }));
            source.schemas.push(TableSchema {
                name: name.clone(),
                columns,
            });
            source.measurements.push(Measurement {
                from,
                tags,
                fields,
                projection: Vec::new(),
            });
        }
        source.retry = config.retry.clone();
        Ok(source)
    }

    /// Runs `attempt` until it succeeds, retrying transient failures ([`retry`], counted
    /// in `source_retries=`).
    async fn with_retries<T, F, Fut>(&self, what: &str, attempt: F) -> Result<T, SourceError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Attempt>>,
    {
        retry(&self.retry, what, SOURCE_RETRIES.as_atomic(), attempt)
            .await
            .map_err(|e| match e {
                RetryError::Final(Attempt::Fail(SourceError::Fatal(m))) => {
                    SourceError::Fatal(format!("{what}: {m}"))
                }
                RetryError::Final(Attempt::Fail(e)) => e,
                RetryError::Final(transient @ Attempt::Transient { .. }) => {
                    SourceError::Server(format!("{what}: {transient}"))
                }
                RetryError::Exhausted(exhausted) => SourceError::Server(exhausted.to_string()),
            })
    }

    /// Sends a query once a place at the gate is free; the place is held as long as the
    /// permit handed back with the answer, which is until the answer is read.
    async fn send(
        &self,
        q: &str,
        chunk_size: usize,
    ) -> Result<(SemaphorePermit<'_>, ChunkedAnswer), Attempt> {
        let permit = self
            .gate
            .acquire()
            .await
            .map_err(|_| Attempt::Fail(SourceError::Stopped))?;
        self.queries.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(query = q, "querying InfluxDB");
        let answer = self
            .client
            .query_chunked_answer(q, chunk_size, Some(self.stall))
            .await?;
        Ok((permit, answer))
    }

    /// The series objects of a (small) planning query's answer, all chunks together.
    async fn query(&self, q: &str) -> Result<Vec<serde_json::Value>, SourceError> {
        self.with_retries(&format!("query `{q}`"), || async {
            // Small chunks: an aggregate's rows come as they are computed, so a long count
            // keeps showing progress instead of stalling until its last bucket.
            let chunk_size = self.chunk_size.min(PLANNING_CHUNK_SIZE);
            let (_permit, mut answer) = self.send(q, chunk_size).await?;
            let mut series = Vec::new();
            while let Some(json) = answer.next().await? {
                if let Some(list) = json["results"][0]["series"].as_array() {
                    series.extend(list.iter().cloned());
                }
            }
            Ok(series)
        })
        .await
    }

    /// Rows a planning query may answer.
    fn planning_page(&self) -> u64 {
        self.max_points.clamp(1, MAX_PLANNING_ROWS)
    }

    /// Every measurement of the database, sorted, paged so no answer is large.
    async fn show_measurements(&self) -> Result<Vec<String>, SourceError> {
        let page = self.planning_page();
        let mut names = Vec::new();
        let mut offset = 0;
        loop {
            let series = self
                .query(&format!("SHOW MEASUREMENTS LIMIT {page} OFFSET {offset}"))
                .await?;
            let before = names.len();
            for s in &series {
                for row in s["values"].as_array().into_iter().flatten() {
                    if let Some(name) = row[0].as_str() {
                        names.push(name.to_string());
                    }
                }
            }
            if ((names.len() - before) as u64) < page {
                return Ok(names);
            }
            offset += page;
        }
    }

    /// Field keys and types of a measurement, sorted by key. A key stored with different
    /// types in different shards fails the job: its values could not be one column.
    async fn field_keys(
        &self,
        name: &str,
        from: &str,
    ) -> Result<Vec<(String, FieldType)>, SourceError> {
        let series = self.query(&format!("SHOW FIELD KEYS FROM {from}")).await?;
        let mut fields: Vec<(String, FieldType)> = Vec::new();
        for s in &series {
            for row in s["values"].as_array().into_iter().flatten() {
                let (Some(key), Some(type_name)) = (row[0].as_str(), row[1].as_str()) else {
                    continue;
                };
                let Some(ty) = FieldType::parse(type_name) else {
                    return Err(SourceError::Fatal(format!(
                        "measurement `{name}`: field `{key}` has type `{type_name}`, which tsmig does not know"
                    )));
                };
                match fields.iter().find(|(k, _)| k == key) {
                    Some((_, other)) if *other != ty => {
                        let mut types = [other.name(), ty.name()];
                        types.sort();
                        return Err(SourceError::Fatal(format!(
                            "measurement `{name}`: field `{key}` is stored as {} in some shards and as {} in others; \
                             copy the shards apart (a measurement per retention policy or time range) or rewrite one type first",
                            types[0], types[1]
                        )));
                    }
                    Some(_) => {}
                    None => fields.push((key.to_string(), ty)),
                }
            }
        }
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(fields)
    }

    /// Tag keys of a measurement, sorted.
    async fn tag_keys(&self, from: &str) -> Result<Vec<String>, SourceError> {
        let series = self.query(&format!("SHOW TAG KEYS FROM {from}")).await?;
        let mut tags: Vec<String> = series
            .iter()
            .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
            .filter_map(|row| row[0].as_str().map(str::to_string))
            .collect();
        tags.sort();
        tags.dedup();
        Ok(tags)
    }

    /// The time of the first (`ASC`) or last (`DESC`) point of a measurement.
    async fn edge_time(&self, m: &Measurement, order: &str) -> Result<Option<i64>, SourceError> {
        let series = self
            .query(&format!(
                "SELECT * FROM {} ORDER BY time {order} LIMIT 1",
                m.from
            ))
            .await?;
        Ok(series.first().and_then(|s| s["values"][0][0].as_i64()))
    }

    /// The most rows a read of `[start, end)` (within `predicate`) can answer: the sum of
    /// every field's count.
    async fn count(
        &self,
        m: &Measurement,
        start: i64,
        end: i64,
        predicate: &str,
    ) -> Result<Count, SourceError> {
        let series = self
            .query(&format!(
                "SELECT COUNT(*) FROM {} WHERE {}",
                m.from,
                condition(start, end, predicate)
            ))
            .await?;
        Ok(series
            .iter()
            .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
            .map(|row| Count::of(&row))
            .fold(Count::default(), Count::add))
    }

    /// The splits of one measurement, in time order: every point, or with `range` (a
    /// polling round of `backfill+follow`) the points with a time in `[from, to)`.
    async fn plan_measurement(
        &self,
        table: u32,
        range: Option<(i64, i64)>,
    ) -> Result<Vec<Split>, SourceError> {
        let m = &self.measurements[table as usize];
        let (start, end) = match range {
            Some(range) => range,
            None => {
                let (Some(first), Some(last)) = (
                    self.edge_time(m, "ASC").await?,
                    self.edge_time(m, "DESC").await?,
                ) else {
                    return Ok(Vec::new());
                };
                bucket_range(first, last, self.bucket_ns)
            }
        };
        let page = self.planning_page();
        let mut splits = Vec::new();
        let mut series_total = None;
        let mut from = start;
        // Non-empty buckets only (FILL(none)), a page at a time: a gap of years costs
        // nothing, and no answer holds more than a page of buckets.
        while from < end {
            let series = self
                .query(&format!(
                    "SELECT COUNT(*) FROM {} WHERE {} GROUP BY time({}ns) FILL(none) LIMIT {page}",
                    m.from,
                    condition(from, end, ""),
                    self.bucket_ns
                ))
                .await?;
            let mut buckets = 0u64;
            let mut next = end;
            for s in &series {
                for row in s["values"].as_array().into_iter().flatten() {
                    let Some(bucket) = row[0].as_i64() else {
                        continue;
                    };
                    buckets += 1;
                    let estimate = Count::of(row);
                    let bucket_end = bucket.saturating_add(self.bucket_ns);
                    next = bucket_end;
                    // A round's range need not fall on buckets: its first and last are cut.
                    let piece = (bucket.max(start), bucket_end.min(end), estimate);
                    self.refine(m, table, piece, &mut series_total, &mut splits)
                        .await?;
                }
            }
            if buckets < page {
                break;
            }
            from = next;
        }
        Ok(splits)
    }

    /// Cuts `[start, end)` until no piece can answer more than `max_points_per_query`
    /// rows: halves in time down to [`MIN_TIME_SPLIT_NS`], then divides by series.
    /// `piece` is `(start, end, estimate)`; `series_total` caches the measurement's series
    /// count once a piece needed it.
    async fn refine(
        &self,
        m: &Measurement,
        table: u32,
        (start, end, estimate): (i64, i64, Count),
        series_total: &mut Option<u64>,
        out: &mut Vec<Split>,
    ) -> Result<(), SourceError> {
        struct Piece {
            start: i64,
            end: i64,
            predicate: String,
            single_series: bool,
            estimate: Count,
        }
        let mut stack = vec![Piece {
            start,
            end,
            predicate: String::new(),
            single_series: false,
            estimate,
        }];
        while let Some(p) = stack.pop() {
            if p.estimate.bound == 0 {
                continue;
            }
            let width = p.end - p.start;
            let halve = p.estimate.bound > self.max_points
                && (width > MIN_TIME_SPLIT_NS || (p.single_series && width > 1));
            if halve {
                let mid = p.start + width / 2;
                // Right half first: the stack gives the left back first, keeping time order.
                for (a, b) in [(mid, p.end), (p.start, mid)] {
                    let estimate = self.count(m, a, b, &p.predicate).await?;
                    stack.push(Piece {
                        start: a,
                        end: b,
                        predicate: p.predicate.clone(),
                        single_series: p.single_series,
                        estimate,
                    });
                }
            } else if p.estimate.bound > self.max_points && p.predicate.is_empty() {
                let total = match *series_total {
                    Some(total) => total,
                    None => {
                        let total = self.series_cardinality(m).await?;
                        *series_total = Some(total);
                        total
                    }
                };
                let series = self.series_counts(m, p.start, p.end, total).await?;
                let found: u64 = series.iter().map(|(_, n)| n.bound).sum();
                if found < p.estimate.bound {
                    // Never plan around points no split would read.
                    return Err(SourceError::Server(format!(
                        "planning {}: its series in [{}, {}) hold {found} values, but the range counts {}; \
                         series were added while planning: run the job again",
                        m.from, p.start, p.end, p.estimate.bound
                    )));
                }
                for group in pack_series(series, self.max_points, MAX_SERIES_PER_SPLIT)
                    .into_iter()
                    .rev()
                {
                    stack.push(Piece {
                        start: p.start,
                        end: p.end,
                        single_series: group.series == 1,
                        predicate: group.predicate,
                        estimate: group.estimate,
                    });
                }
            } else {
                // Under the bound, or a single series down to one nanosecond (one point).
                out.push(Split {
                    id: 0,
                    table,
                    partition: p.predicate,
                    start: Some(p.start),
                    end: Some(p.end),
                    nulls: false,
                    estimated_rows: p.estimate.rows,
                });
            }
        }
        Ok(())
    }

    /// The measurement's number of series (`SHOW SERIES EXACT CARDINALITY`).
    async fn series_cardinality(&self, m: &Measurement) -> Result<u64, SourceError> {
        let series = self
            .query(&format!("SHOW SERIES EXACT CARDINALITY FROM {}", m.from))
            .await?;
        Ok(series
            .iter()
            .filter_map(|s| s["values"][0][0].as_u64())
            .sum())
    }

    /// Each series with points in `[start, end)` as (predicate, most rows), paged by series.
    /// `SLIMIT` counts every series of the measurement, those without points in the range
    /// too, so a page may come back empty: pages run up to the measurement's `total`.
    async fn series_counts(
        &self,
        m: &Measurement,
        start: i64,
        end: i64,
        total: u64,
    ) -> Result<Vec<(String, Count)>, SourceError> {
        let page = self.planning_page();
        let mut out = Vec::new();
        let mut offset = 0;
        while offset < total {
            let series = self
                .query(&format!(
                    "SELECT COUNT(*) FROM {} WHERE {} GROUP BY * SLIMIT {page} SOFFSET {offset}",
                    m.from,
                    condition(start, end, "")
                ))
                .await?;
            for s in &series {
                let tags: Vec<(&str, &str)> = m
                    .tags
                    .iter()
                    .map(|k| (k.as_str(), s["tags"][k.as_str()].as_str().unwrap_or("")))
                    .collect();
                let count = s["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(Count::of)
                    .fold(Count::default(), Count::add);
                out.push((series_predicate(&tags), count));
            }
            offset += page;
        }
        Ok(out)
    }

    /// Every measurement's splits (all points, or those in `range`), numbered from 0.
    async fn plan_range(&self, range: Option<(i64, i64)>) -> Result<Vec<Split>, SourceError> {
        let before = self.queries.load(Ordering::Relaxed);
        let mut splits = Vec::new();
        for table in 0..self.measurements.len() {
            splits.extend(self.plan_measurement(table as u32, range).await?);
        }
        for (id, split) in splits.iter_mut().enumerate() {
            split.id = id as u64;
        }
        let queries = self.queries.load(Ordering::Relaxed) - before;
        let bound = self.max_points;
        if range.is_none() {
            tracing::info!(
                splits = splits.len(),
                queries,
                "planned: no query answers more than {bound} points"
            );
        } else {
            // A polling round: every few seconds, not worth a line each.
            tracing::debug!(splits = splits.len(), queries, "round planned");
        }
        Ok(splits)
    }

    /// The query reading one split: the projected fields, tags from the series.
    fn select(&self, m: &Measurement, split: &Split) -> String {
        let first_field = 1 + m.tags.len();
        let mut fields: Vec<String> = m
            .projection
            .iter()
            .filter(|&&c| c >= first_field)
            .map(|&c| quote_ident(&m.fields[c - first_field].0))
            .collect();
        if fields.is_empty() {
            fields = m.fields.iter().map(|(f, _)| quote_ident(f)).collect();
        }
        format!(
            "SELECT {} FROM {} WHERE {} GROUP BY *",
            fields.join(","),
            m.from,
            condition(
                split.start.unwrap_or(i64::MIN),
                split.end.unwrap_or(i64::MAX),
                &split.partition
            )
        )
    }

    /// One attempt at reading a split: streams its chunks into `out`.
    async fn read_once(
        &self,
        m: &Measurement,
        table: u32,
        q: &str,
        out: &RowSender,
        dead_letters: &DeadLetters,
    ) -> Result<u64, Attempt> {
        let (_permit, mut answer) = self.send(q, self.chunk_size).await?;
        let mut sent = 0u64;
        let mut skipped = 0u64;
        loop {
            let json = match answer.next().await {
                Ok(Some(json)) => json,
                Ok(None) => break,
                Err(QueryError::Transient(message)) => {
                    return Err(Attempt::Transient { message, sent })
                }
                Err(e) => return Err(e.into()),
            };
            let mut rows = Vec::new();
            for series in json["results"][0]["series"]
                .as_array()
                .into_iter()
                .flatten()
            {
                rows_of_series(m, table, series, &mut rows, &mut skipped, dead_letters);
            }
            if rows.is_empty() {
                continue;
            }
            if let Some(rate) = &self.rate {
                rate.take(rows.len()).await;
            }
            let n = rows.len() as u64;
            out.send(rows).await.map_err(Attempt::Fail)?;
            sent += n;
        }
        if skipped > 0 {
            tracing::debug!(skipped, "rows with none of the mapped fields skipped");
        }
        Ok(sent)
    }
}

/// The rows of one series object of an answer, in the measurement's projection.
fn rows_of_series(
    m: &Measurement,
    table: u32,
    series: &serde_json::Value,
    rows: &mut Vec<Row>,
    skipped: &mut u64,
    dead_letters: &DeadLetters,
) {
    enum Slot {
        Time,
        Tag(Option<String>),
        Field(Option<usize>, FieldType),
    }
    let columns = series_columns(series);
    let first_field = 1 + m.tags.len();
    let slots: Vec<Slot> = m
        .projection
        .iter()
        .map(|&c| {
            if c == 0 {
                Slot::Time
            } else if c < first_field {
                let value = series["tags"][m.tags[c - 1].as_str()]
                    .as_str()
                    .filter(|v| !v.is_empty());
                Slot::Tag(value.map(str::to_string))
            } else {
                let (name, ty) = &m.fields[c - first_field];
                Slot::Field(columns.iter().position(|col| col == name), *ty)
            }
        })
        .collect();
    for values in series["values"].as_array().into_iter().flatten() {
        let Some(time) = values[0].as_i64() else {
            dead_letters.record(
                "source",
                "a row without an integer time",
                serde_json::json!({"series": series["tags"], "values": values}),
            );
            continue;
        };
        let mut row = Vec::with_capacity(slots.len());
        let mut any_field = false;
        let mut bad = None;
        for slot in &slots {
            row.push(match slot {
                Slot::Time => Some(Value::Time(time)),
                Slot::Tag(v) => v.as_deref().map(|v| Value::String(v.into())),
                Slot::Field(None, _) => None,
                Slot::Field(Some(at), ty) => match ty.convert(&values[*at]) {
                    Ok(v) => {
                        any_field |= v.is_some();
                        v
                    }
                    Err(e) => {
                        bad = Some(format!("field `{}`: {e}", columns[*at]));
                        None
                    }
                },
            });
        }
        if let Some(reason) = bad {
            dead_letters.record(
                "source",
                &reason,
                serde_json::json!({
                    "measurement": series["name"],
                    "tags": series["tags"],
                    "columns": series["columns"],
                    "values": values,
                }),
            );
            continue;
        }
        if !any_field {
            // A point has at least one field; a row without any of the mapped ones is no
            // point of this mapping (InfluxDB answers only rows with a selected field).
            *skipped += 1;
            continue;
        }
        rows.push(Row { table, values: row });
    }
}

#[async_trait::async_trait]
impl BoundedSource for InfluxSource {
    fn schema(&self) -> &[TableSchema] {
        &self.schemas
    }

    fn set_projection(&mut self, table: usize, columns: Vec<usize>) {
        self.measurements[table].projection = columns;
    }

    fn default_mappings(&self) -> Option<Vec<MappingConfig>> {
        Some(
            self.schemas
                .iter()
                .zip(&self.measurements)
                .map(|(schema, m)| MappingConfig {
                    table: schema.name.clone(),
                    measurement: Some(schema.name.clone()),
                    timestamp_field: TIME_COLUMN.into(),
                    tags: m.tags.clone(),
                    fields: m.fields.iter().map(|(f, _)| f.clone()).collect(),
                    ..Default::default()
                })
                .collect(),
        )
    }

    async fn plan(&self) -> Result<Vec<Split>, SourceError> {
        self.plan_range(None).await
    }

    fn follows_by_time(&self) -> bool {
        true
    }

    async fn plan_window(&self, from_ns: i64, to_ns: i64) -> Result<Vec<Split>, SourceError> {
        if from_ns >= to_ns {
            return Ok(Vec::new());
        }
        self.plan_range(Some((from_ns, to_ns))).await
    }

    async fn read(
        &self,
        split: &Split,
        out: &RowSender,
        dead_letters: &DeadLetters,
    ) -> Result<u64, SourceError> {
        let m = &self.measurements[split.table as usize];
        let q = self.select(m, split);
        // Every row sent counts, those of attempts that failed half-way included.
        let total = AtomicU64::new(0);
        self.with_retries(&format!("reading split {}", split.id), || async {
            let result = self.read_once(m, split.table, &q, out, dead_letters).await;
            match &result {
                Ok(n) | Err(Attempt::Transient { sent: n, .. }) => {
                    total.fetch_add(*n, Ordering::Relaxed);
                }
                Err(Attempt::Fail(_)) => {}
            }
            result
        })
        .await?;
        Ok(total.into_inner())
    }
}

/// `time >= start AND time < end`, and the series predicate if there is one.
fn condition(start: i64, end: i64, predicate: &str) -> String {
    if predicate.is_empty() {
        format!("time >= {start} AND time < {end}")
    } else {
        format!("time >= {start} AND time < {end} AND ({predicate})")
    }
}

/// What a `COUNT(*)` row (one count per field, after its time) says of the rows a read
/// of the same range answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Count {
    /// At most: the sum of the fields' counts (a row has at least one field). Splits are
    /// cut on this, so no read can answer more than the bound.
    bound: u64,
    /// At least, and the estimate shown: the largest field's count (exact where every
    /// point has that field).
    rows: u64,
}

impl Count {
    fn of(row: &serde_json::Value) -> Count {
        let counts = row
            .as_array()
            .into_iter()
            .flatten()
            .skip(1)
            .filter_map(|v| v.as_u64());
        counts.fold(Count::default(), |c, n| Count {
            bound: c.bound + n,
            rows: c.rows.max(n),
        })
    }

    /// Two disjoint ranges (other times, or other series) together.
    fn add(self, other: Count) -> Count {
        Count {
            bound: self.bound + other.bound,
            rows: self.rows + other.rows,
        }
    }
}

/// The buckets `[start, end)` of width `bucket` (aligned to the Unix epoch, as InfluxQL's
/// `GROUP BY time()` aligns them) that cover `first..=last`.
fn bucket_range(first: i64, last: i64, bucket: i64) -> (i64, i64) {
    let start = first.div_euclid(bucket).saturating_mul(bucket);
    let end = last
        .div_euclid(bucket)
        .saturating_add(1)
        .saturating_mul(bucket);
    // The bucket of the last representable instant ends past i64: read to the end.
    (start, if end <= last { i64::MAX } else { end })
}

/// A group of whole series read by one split.
#[derive(Debug, PartialEq)]
struct SeriesGroup {
    /// `(series 1) OR (series 2) ...`.
    predicate: String,
    /// Series in the group.
    series: usize,
    /// What the group's read can answer.
    estimate: Count,
}

/// Packs series, in order, into groups of at most `max_series` whose bounds add up to at
/// most `max_points`; a series over `max_points` alone is a group of its own (to be halved
/// in time).
fn pack_series(
    series: Vec<(String, Count)>,
    max_points: u64,
    max_series: usize,
) -> Vec<SeriesGroup> {
    let mut groups = Vec::new();
    let mut members: Vec<String> = Vec::new();
    let mut estimate = Count::default();
    let flush = |members: &mut Vec<String>, estimate: &mut Count, groups: &mut Vec<SeriesGroup>| {
        if members.is_empty() {
            return;
        }
        let predicate = if members.len() == 1 {
            members[0].clone()
        } else {
            members
                .iter()
                .map(|p| format!("({p})"))
                .collect::<Vec<_>>()
                .join(" OR ")
        };
        groups.push(SeriesGroup {
            predicate,
            series: members.len(),
            estimate: *estimate,
        });
        members.clear();
        *estimate = Count::default();
    };
    for (predicate, count) in series {
        if count.bound == 0 {
            continue;
        }
        if members.len() >= max_series || estimate.bound + count.bound > max_points {
            flush(&mut members, &mut estimate, &mut groups);
        }
        members.push(predicate);
        estimate = estimate.add(count);
    }
    flush(&mut members, &mut estimate, &mut groups);
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_epoch_aligned_and_cover_first_to_last() {
        let h = 3_600_000_000_000;
        assert_eq!(bucket_range(h + 5, 3 * h - 1, h), (h, 3 * h));
        assert_eq!(bucket_range(3 * h, 3 * h, h), (3 * h, 4 * h));
        assert_eq!(bucket_range(-1, 0, h), (-h, h));
        assert_eq!(bucket_range(i64::MAX - 1, i64::MAX, h).1, i64::MAX);
    }

    #[test]
    fn series_are_packed_under_both_bounds_and_big_ones_stand_alone() {
        let series: Vec<(String, Count)> = [
            ("a", 40),
            ("b", 50),
            ("c", 500),
            ("d", 10),
            ("e", 10),
            ("f", 10),
            ("g", 0),
        ]
        .iter()
        .map(|(p, n)| {
            let count = Count {
                bound: *n,
                rows: *n / 2,
            };
            (p.to_string(), count)
        })
        .collect();
        let groups = pack_series(series, 100, 2);
        assert_eq!(
            groups[0].estimate,
            Count {
                bound: 90,
                rows: 45
            }
        );
        let got: Vec<(&str, usize, u64)> = groups
            .iter()
            .map(|g| (g.predicate.as_str(), g.series, g.estimate.bound))
            .collect();
        assert_eq!(
            got,
            vec![
                ("(a) OR (b)", 2, 90),
                ("c", 1, 500),
                ("(d) OR (e)", 2, 20),
                ("f", 1, 10),
            ]
        );
    }

    #[tokio::test]
    async fn rows_are_paced_to_the_rate_a_chunk_at_most_ahead() {
        use std::time::Instant;
        // 10,000 rows a second in chunks of 500: 6,000 rows take 0.55 s (the first chunk
        // goes at once), however many tasks share the limit.
        let rate = std::sync::Arc::new(RowRate::new(NonZeroU32::new(10_000).unwrap(), 500));
        assert_eq!(rate.burst.get(), 500);
        let started = Instant::now();
        let tasks: Vec<_> = (0..3)
            .map(|_| {
                let rate = rate.clone();
                tokio::spawn(async move {
                    for _ in 0..4 {
                        rate.take(500).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(500) && took < Duration::from_millis(900),
            "{took:?}"
        );
        // A chunk larger than a second's rows waits its share, a second's worth at a time.
        let slow = RowRate::new(NonZeroU32::new(100).unwrap(), 10_000);
        assert_eq!(slow.burst.get(), 100);
        let started = Instant::now();
        slow.take(150).await;
        assert!(
            started.elapsed() >= Duration::from_millis(450),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn count_rows_sum_every_field_and_skip_nulls() {
        assert_eq!(
            Count::of(&serde_json::json!([0, 2, null, 5])),
            Count { bound: 7, rows: 5 }
        );
        assert_eq!(condition(1, 2, ""), "time >= 1 AND time < 2");
        assert_eq!(
            condition(1, 2, "x = 'y'"),
            "time >= 1 AND time < 2 AND (x = 'y')"
        );
    }
}
