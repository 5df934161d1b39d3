//! Reading InfluxDB back for the verify job, so memory holds summaries, not points.
//!
//! 1.x: the field types of each measurement (`SHOW FIELD KEYS`, so an integer stays an
//! integer), then every point (`SELECT * ... GROUP BY *`), streamed with `chunked=true` and
//! summarised chunk by chunk.
//!
//! 2.x: Flux through the influxdb2 crate, which reads each answer whole. So each
//! measurement is read window by window between its first and last time (two small
//! queries), and each window is counted before it is read: a window with more than
//! [`MAX_RECORDS_PER_READ`] records is halved and counted again, a sparse one lets the next
//! window grow. A window's records (one field of one point each) are gathered per series
//! and time into points and summarised before the next window is asked for. They are not
//! pivoted in Flux: a pivot leaves an empty cell where a point lacks a field, and the
//! crate panics on an empty number.
//!
//! ```text
//!  first()/last() ──► [first, last] ──► count(window) ──► > max? halve ──┐
//!                                            ▲     │ ≤ max                │
//!                                            │     ▼                      │
//!                                            │   read window ─► points ─► summaries
//!                                            └── next window (doubled while sparse)
//! ```

use super::client::{classify, without_url, InfluxClient};
use super::InfluxSink;
use crate::model::{format_time, Value};
use crate::sink::WriteError;
use crate::verify::{series_key, Canonical, Summaries};
use influxdb2::api::query::FluxRecord;
use influxdb2::models::Query;
use std::collections::HashMap;

/// A source value as InfluxDB stores it (1.x has no unsigned integers; DECIMAL is a float).
pub fn canonical(value: &Value) -> Canonical {
    match value {
        Value::Int(i) => Canonical::Int(*i),
        Value::UInt(u) => Canonical::Int(*u as i64),
        Value::Float(f) => Canonical::Float(*f),
        Value::Decimal(d) => Canonical::Float(d.parse().unwrap_or(f64::NAN)),
        Value::Bool(b) => Canonical::Bool(*b),
        Value::String(s) => Canonical::Text(s.to_string()),
        Value::Time(ns) => Canonical::Text(format_time(*ns)),
    }
}

/// A JSON value of a field of `field_type` (`float`, `integer`, `boolean`, `string`).
fn from_json(value: &serde_json::Value, field_type: &str) -> Option<Canonical> {
    Some(match field_type {
        "float" => Canonical::Float(value.as_f64()?),
        "integer" | "unsigned" => Canonical::Int(value.as_i64()?),
        "boolean" => Canonical::Bool(value.as_bool()?),
        _ => Canonical::Text(value.as_str()?.to_string()),
    })
}

impl InfluxClient {
    /// Runs an InfluxQL query, passing each JSON chunk of the answer to `each`.
    async fn query_chunked(
        &self,
        q: &str,
        mut each: impl FnMut(serde_json::Value) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut answer = self.query_chunked_answer(q, 10_000, None).await?;
        while let Some(json) = answer.next().await? {
            each(json)?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl crate::sink::ReadBack for InfluxSink {
    fn canonical(&self, _field: &str, value: &Value) -> Canonical {
        canonical(value)
    }

    async fn target_summaries(&self, bucket_ns: i64) -> Result<Summaries, String> {
        if let InfluxClient::V2 { client, bucket, .. } = &self.client {
            let reader = FluxReader { client, bucket };
            let mut summaries = Summaries::new(bucket_ns);
            for measurement in &self.measurements {
                reader
                    .summarise(measurement, bucket_ns, &mut summaries)
                    .await?;
            }
            return Ok(summaries);
        }
        let mut summaries = Summaries::new(bucket_ns);
        for measurement in &self.measurements {
            let quoted = super::client::quote_ident(measurement);
            let mut types: HashMap<String, String> = HashMap::new();
            self.client
                .query_chunked(&format!("SHOW FIELD KEYS FROM {quoted}"), |json| {
                    for series in json["results"][0]["series"]
                        .as_array()
                        .into_iter()
                        .flatten()
                    {
                        for row in series["values"].as_array().into_iter().flatten() {
                            if let (Some(k), Some(t)) = (row[0].as_str(), row[1].as_str()) {
                                types.insert(k.to_string(), t.to_string());
                            }
                        }
                    }
                    Ok(())
                })
                .await?;
            self.client
                .query_chunked(&format!("SELECT * FROM {quoted} GROUP BY *"), |json| {
                    for series in json["results"][0]["series"]
                        .as_array()
                        .into_iter()
                        .flatten()
                    {
                        let tags: Vec<(String, String)> = series["tags"]
                            .as_object()
                            .into_iter()
                            .flatten()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                            .collect();
                        let key = series_key(
                            measurement,
                            tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                        );
                        let columns = super::client::series_columns(series);
                        for row in series["values"].as_array().into_iter().flatten() {
                            let Some(values) = row.as_array() else {
                                continue;
                            };
                            let Some(time) = values.first().and_then(|t| t.as_i64()) else {
                                continue;
                            };
                            let fields = columns.iter().zip(values).skip(1).filter_map(|(c, v)| {
                                let t = types.get(*c)?;
                                from_json(v, t).map(|canonical| (*c, canonical))
                            });
                            summaries.add(&key, time, fields);
                        }
                    }
                    Ok(())
                })
                .await?;
        }
        Ok(summaries)
    }
}

/// The most records (one field of one point each) a Flux answer may carry. The influxdb2
/// crate holds an answer whole, text and parsed records (about 1 KB a record) side by side.
const MAX_RECORDS_PER_READ: u64 = 50_000;

/// The earliest and latest times InfluxDB stores (Flux's `influxql.minTime` and
/// `influxql.maxTime`); `range` excludes its stop, hence one past the latest.
const ALL_TIME: &str =
    "start: 1677-09-21T00:12:43.145224194Z, stop: 2262-04-11T23:47:16.854775807Z";

/// Columns of a Flux record that are not tags.
const NOT_TAGS: [&str; 8] = [
    "_start",
    "_stop",
    "_time",
    "_measurement",
    "_field",
    "_value",
    "result",
    "table",
];

/// The windows one measurement is read in, from its first time to its last.
///
/// Each window is counted before it is read; one holding more than `max` records is halved
/// and counted again (down to a single nanosecond, which is read whatever it holds), and
/// after one holding under a quarter of `max` the next is twice as wide, so gaps in the
/// data are crossed in a few steps.
#[derive(Debug)]
struct Windows {
    /// Start of the next window, ns.
    next: i64,
    /// Just past the last time, ns.
    end: i64,
    /// Width of the next window, ns.
    width: i64,
    max: u64,
}

impl Windows {
    fn new(first: i64, last: i64, width: i64, max: u64) -> Self {
        Self {
            next: first,
            end: last.saturating_add(1),
            width: width.max(1),
            max,
        }
    }

    /// The window to count next, `[start, stop)`, or `None` when every one was read.
    fn current(&self) -> Option<(i64, i64)> {
        (self.next < self.end).then(|| {
            (
                self.next,
                self.next.saturating_add(self.width).min(self.end),
            )
        })
    }

    /// Takes the count of [`Self::current`]: `true` to read that window (and move past it),
    /// `false` when it was halved and must be counted again.
    fn counted(&mut self, records: u64) -> bool {
        let Some((start, stop)) = self.current() else {
            return false;
        };
        let width = (stop as i128 - start as i128) as u128;
        if records > self.max && width > 1 {
            self.width = (width / 2) as i64;
            return false;
        }
        self.next = stop;
        if records < self.max / 4 {
            self.width = self.width.saturating_mul(2);
        }
        true
    }
}

/// Reads one InfluxDB 2 bucket with Flux.
pub(super) struct FluxReader<'a> {
    pub(super) client: &'a influxdb2::Client,
    pub(super) bucket: &'a str,
}

impl FluxReader<'_> {
    /// For each of `points` (all of `measurement`), whether the bucket holds a point of
    /// exactly its series (the same tags, no more) at exactly its time. One query: the
    /// range from the first time to the last, the points' series (pushed down to storage
    /// as tag equalities), then their exact times; the records' tag sets are compared here,
    /// since Flux's pushed-down filters cannot say that a tag is absent.
    pub(super) async fn existing(
        &self,
        measurement: &str,
        points: &[&crate::model::Point],
    ) -> Result<Vec<bool>, WriteError> {
        let (Some(first), Some(last)) = (
            points.iter().map(|p| p.time).min(),
            points.iter().map(|p| p.time).max(),
        ) else {
            return Ok(Vec::new());
        };
        let series_of = |p: &crate::model::Point| -> String {
            let tags: Vec<String> = p
                .tags
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| format!("r[{}] == {}", flux_string(k), flux_string(v)))
                .collect();
            format!("({})", tags.join(" and "))
        };
        let mut flux = format!(
            "from(bucket: {})\n  |> range(start: {}, stop: {})\n  |> filter(fn: (r) => r._measurement == {})",
            flux_string(self.bucket),
            flux_time(first),
            flux_time(last.saturating_add(1)),
            flux_string(measurement)
        );
        // A point without tags matches every series: then the tags are compared here only.
        if points
            .iter()
            .all(|p| p.tags.iter().any(|(_, v)| !v.is_empty()))
        {
            let mut series: Vec<String> = points.iter().map(|p| series_of(p)).collect();
            series.sort();
            series.dedup();
            flux.push_str(&format!(
                "\n  |> filter(fn: (r) => {})",
                series.join(" or ")
            ));
        }
        let mut times: Vec<i64> = points.iter().map(|p| p.time).collect();
        times.sort_unstable();
        times.dedup();
        let times: Vec<String> = times
            .iter()
            .map(|t| format!("r._time == {}", flux_time(*t)))
            .collect();
        flux.push_str(&format!("\n  |> filter(fn: (r) => {})", times.join(" or ")));
        let records = self
            .records(flux)
            .await
            .map_err(|message| WriteError::Transient {
                message,
                retry_after: None,
            })?;
        // (tags, time, field) of every value found.
        type Found = (Vec<(String, String)>, i64, String);
        let mut present: std::collections::HashSet<Found> = Default::default();
        for record in &records {
            let time = time_of(record).map_err(|message| WriteError::Fatal { message })?;
            let field = record
                .values
                .get("_field")
                .and_then(|v| v.string())
                .unwrap_or_default();
            let mut tags: Vec<(String, String)> = record
                .values
                .iter()
                .filter(|(k, _)| !NOT_TAGS.contains(&k.as_str()))
                .filter_map(|(k, v)| Some((k.clone(), v.string()?)))
                .filter(|(_, v)| !v.is_empty())
                .collect();
            tags.sort();
            present.insert((tags, time, field));
        }
        Ok(points
            .iter()
            .map(|p| {
                let mut tags: Vec<(String, String)> = p
                    .tags
                    .iter()
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                tags.sort();
                // A point naming no field asks about the point itself.
                match p.fields.is_empty() {
                    true => present
                        .iter()
                        .any(|(t, time, _)| *t == tags && *time == p.time),
                    false => p
                        .fields
                        .iter()
                        .any(|(f, _)| present.contains(&(tags.clone(), p.time, f.to_string()))),
                }
            })
            .collect())
    }

    /// Adds every point of `measurement` to `summaries`, window by window.
    async fn summarise(
        &self,
        measurement: &str,
        bucket_ns: i64,
        summaries: &mut Summaries,
    ) -> Result<(), String> {
        let source = format!("from(bucket: {})", flux_string(self.bucket));
        let filter = format!(
            "filter(fn: (r) => r._measurement == {})",
            flux_string(measurement)
        );
        let edge = |selector: &str, aggregate: &str| {
            format!(
                "{source}\n  |> range({ALL_TIME})\n  |> {filter}\n  |> {selector}()\n  |> keep(columns: [\"_time\"])\n  |> group()\n  |> {aggregate}(column: \"_time\")"
            )
        };
        let Some(first) = self.time(edge("first", "min")).await? else {
            return Ok(()); // nothing of this measurement in the bucket
        };
        let Some(last) = self.time(edge("last", "max")).await? else {
            return Ok(());
        };
        let mut windows = Windows::new(
            first,
            last,
            bucket_ns.saturating_mul(24),
            MAX_RECORDS_PER_READ,
        );
        while let Some((start, stop)) = windows.current() {
            let range = format!(
                "range(start: {}, stop: {})",
                flux_time(start),
                flux_time(stop)
            );
            let count = self
                .records(format!(
                    "{source}\n  |> {range}\n  |> {filter}\n  |> count()\n  |> group()\n  |> sum()"
                ))
                .await?
                .iter()
                .filter_map(|r| r.values.get("_value").and_then(|v| v.i64()))
                .sum::<i64>()
                .max(0) as u64;
            if !windows.counted(count) || count == 0 {
                continue;
            }
            let records = self
                .records(format!("{source}\n  |> {range}\n  |> {filter}"))
                .await?;
            add_points(measurement, records, summaries)?;
        }
        Ok(())
    }

    /// The `_time` of the one record `flux` answers, `None` if it answers nothing.
    async fn time(&self, flux: String) -> Result<Option<i64>, String> {
        match self.records(flux).await?.first() {
            None => Ok(None),
            Some(record) => time_of(record).map(Some),
        }
    }

    /// Runs a Flux query. The crate panics on some answers it cannot read (a body cut off,
    /// a value not of its column's type): the query runs as a task of its own so that such
    /// an answer fails the verify job with a message instead.
    async fn records(&self, flux: String) -> Result<Vec<FluxRecord>, String> {
        self.query(flux).await.map_err(|e| {
            let why = match e {
                WriteError::Transient { message, .. }
                | WriteError::TooLarge { message }
                | WriteError::Rejected { message }
                | WriteError::Fatal { message } => message,
                WriteError::Partial { .. } => "a partial answer".into(),
            };
            format!("reading InfluxDB 2 bucket {}: {why}", self.bucket)
        })
    }

    /// Runs a Flux query; a failure classified as a write's would be (an HTTP status as
    /// [`classify`] says, the network transient, an answer that cannot be read definite).
    async fn query(&self, flux: String) -> Result<Vec<FluxRecord>, WriteError> {
        let client = self.client.clone();
        let task = tokio::spawn(async move { client.query_raw(Some(Query::new(flux))).await });
        let answer = task.await.map_err(|e| WriteError::Fatal {
            message: format!(
                "the answer could not be read{}",
                if e.is_panic() {
                    " (the influxdb2 client panicked)"
                } else {
                    ""
                }
            ),
        })?;
        answer.map_err(|e| match e {
            influxdb2::RequestError::Http { status, text } => classify(
                reqwest::StatusCode::from_u16(status.as_u16())
                    .unwrap_or(reqwest::StatusCode::INTERNAL_SERVER_ERROR),
                &text,
                None,
            ),
            influxdb2::RequestError::ReqwestProcessing { source } => WriteError::Transient {
                message: without_url(&source),
                retry_after: None,
            },
            // A Flux error met while answering comes as an error table in the CSV.
            influxdb2::RequestError::Deserializing { text } => WriteError::Rejected {
                message: format!("the query failed or its answer could not be read: {text}"),
            },
            other => WriteError::Fatal {
                message: other.to_string(),
            },
        })
    }
}

/// Gathers one window's records (one field of one point each) into points and adds them.
fn add_points(
    measurement: &str,
    records: Vec<FluxRecord>,
    summaries: &mut Summaries,
) -> Result<(), String> {
    let mut points: HashMap<(String, i64), Vec<(String, Canonical)>> = HashMap::new();
    for record in records {
        let time = time_of(&record)?;
        let field = record
            .values
            .get("_field")
            .and_then(|v| v.string())
            .ok_or("InfluxDB 2 answered a record without _field")?;
        let value = canonical_of(&record).ok_or_else(|| {
            format!("InfluxDB 2 answered a value of field {field} of an unknown type")
        })?;
        let tags: Vec<(&str, String)> = record
            .values
            .iter()
            .filter(|(k, _)| !NOT_TAGS.contains(&k.as_str()))
            .filter_map(|(k, v)| Some((k.as_str(), v.string()?)))
            .collect();
        let series = series_key(measurement, tags.iter().map(|(k, v)| (*k, v.as_str())));
        points
            .entry((series, time))
            .or_default()
            .push((field, value));
    }
    for ((series, time), fields) in points {
        summaries.add(&series, time, fields);
    }
    Ok(())
}

/// `_value` as InfluxDB 1.x's reader and [`canonical`] give it (unsigned as signed).
fn canonical_of(record: &FluxRecord) -> Option<Canonical> {
    let v = record.values.get("_value")?;
    v.f64()
        .map(Canonical::Float)
        .or_else(|| v.i64().map(Canonical::Int))
        .or_else(|| v.u64().map(|u| Canonical::Int(u as i64)))
        .or_else(|| v.bool().map(Canonical::Bool))
        .or_else(|| v.string().map(Canonical::Text))
}

/// `_time` in ns. The influxdb2 crate neither exports its value type nor reads a time out
/// of it, so this reads the value's `Debug` text, `TimeRFC(<chrono's RFC 3339>)`; the test
/// against the InfluxDB 2 stand-in goes through it, and anything else is an error here,
/// never a wrong time.
fn time_of(record: &FluxRecord) -> Result<i64, String> {
    let value = record
        .values
        .get("_time")
        .ok_or("InfluxDB 2 answered a record without _time")?;
    let text = format!("{value:?}");
    text.strip_prefix("TimeRFC(")
        .and_then(|t| t.strip_suffix(')'))
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .and_then(|t| t.timestamp_nanos_opt())
        .ok_or_else(|| format!("InfluxDB 2 answered a _time that could not be read: {text}"))
}

/// A Flux string literal.
fn flux_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // `${` opens an interpolation in a Flux string.
            '$' if chars.peek() == Some(&'{') => out.push_str("\\$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A Flux time literal of `ns`, to the nanosecond.
fn flux_time(ns: i64) -> String {
    let t = chrono::DateTime::from_timestamp(
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000) as u32,
    )
    .unwrap_or_default();
    t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks the windows over data with `records_in(start, stop)` records in `[start, stop)`;
    /// returns the windows read.
    fn walk(
        first: i64,
        last: i64,
        width: i64,
        max: u64,
        records_in: impl Fn(i64, i64) -> u64,
    ) -> Vec<(i64, i64)> {
        let mut windows = Windows::new(first, last, width, max);
        let mut read = Vec::new();
        let mut counts = 0;
        while let Some((start, stop)) = windows.current() {
            counts += 1;
            assert!(counts < 10_000, "the walk does not end: {windows:?}");
            if windows.counted(records_in(start, stop)) {
                read.push((start, stop));
            }
        }
        read
    }

    #[test]
    fn windows_cover_first_to_last_once_and_stay_under_the_limit() {
        // 10 records per ns between 1,000 and 2,000, nothing elsewhere.
        let dense = |start: i64, stop: i64| (stop.min(2_000) - start.max(1_000)).max(0) as u64 * 10;
        let read = walk(0, 9_999, 100, 500, dense);
        assert_eq!(read.first().unwrap().0, 0);
        assert_eq!(read.last().unwrap().1, 10_000);
        for pair in read.windows(2) {
            assert_eq!(pair[0].1, pair[1].0, "no gap, no overlap");
        }
        assert!(read.iter().all(|&(s, e)| dense(s, e) <= 500));
    }

    #[test]
    fn sparse_data_is_crossed_in_few_windows() {
        // One record at each end of 50 years.
        let first = 0;
        let last = 50 * 365 * 86_400_000_000_000i64;
        let read = walk(first, last, 3_600_000_000_000 * 24, 50_000, |s, e| {
            (s <= first && first < e) as u64 + (s <= last && last < e) as u64
        });
        assert!(read.len() < 20, "{} windows", read.len());
        assert_eq!(read.last().unwrap().1, last + 1);
    }

    #[test]
    fn a_single_instant_over_the_limit_is_still_read() {
        let read = walk(5, 5, 1_000, 10, |_, _| 1_000);
        assert_eq!(read, vec![(5, 6)]);
    }

    #[test]
    fn flux_literals_are_escaped() {
        assert_eq!(flux_string(r#"a"b\c ${x} $y"#), r#""a\"b\\c \${x} $y""#);
        assert_eq!(
            flux_time(1_767_225_600_000_000_000),
            "2026-01-01T00:00:00.000000000Z"
        );
        assert_eq!(flux_time(-1), "1969-12-31T23:59:59.999999999Z");
    }
}
