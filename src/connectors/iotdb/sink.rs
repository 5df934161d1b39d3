//! The IoTDB sink: tablets per device, written on a pool of sessions; a batch's deletes in
//! one `deleteData` call per time range (`point_deletes`).

use super::client::SessionPool;
use super::config::IotdbSinkConfig;
use crate::mapping::Mappings;
use crate::model::{format_time, Name, Point};
use crate::sink::{Batch, BatchConfig, SeriesWindow, Sink, WriteError};
use iotdb::client::{MeasurementSchema, Session, Tablet, Value as Iot};
use iotdb::protocal::{TSCompressionType, TSDataType, TSEncoding};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// What every batch of a sink needs to know: field types and the time unit.
pub(super) struct Schema {
    /// Field name → IoTDB type, from the mappings.
    pub(super) types: HashMap<Name, TSDataType>,
    /// Nanoseconds per unit of the server's timestamps.
    pub(super) unit: i64,
}

/// Writes points to one IoTDB server.
pub struct IotdbSink {
    pub(super) pool: SessionPool,
    pub(super) schema: Arc<Schema>,
    pub(super) encodings: HashMap<String, TSEncoding>,
    pub(super) compressor: TSCompressionType,
    pub(super) databases: Vec<String>,
    pub(super) ttl_ms: Option<i64>,
    /// Series known to exist, so each is created once.
    pub(super) created: Mutex<HashSet<String>>,
    pub(super) batching: BatchConfig,
    pub(super) target: String,
}

impl IotdbSink {
    /// A sink for `config`, typing fields as `mappings` says.
    pub fn new(
        config: &IotdbSinkConfig,
        batching: &BatchConfig,
        mappings: &Mappings,
    ) -> Result<Self, String> {
        let mut types: HashMap<Name, TSDataType> = HashMap::new();
        let mut typed_at: HashMap<Name, String> = HashMap::new();
        for source in mappings.field_sources() {
            let t =
                super::encoding::field_type(&source).map_err(|e| format!("{}: {e}", source.key))?;
            if let Some(previous) = types.get(&source.field) {
                if *previous != t {
                    return Err(format!(
                        "{}: field `{}` is {} here but {} at {}; declare one type with `types:`",
                        source.key,
                        source.field,
                        super::encoding::type_name(&t),
                        super::encoding::type_name(previous),
                        typed_at[&source.field]
                    ));
                }
            }
            typed_at.insert(source.field.clone(), source.key.clone());
            types.insert(source.field.clone(), t);
        }
        let mut encodings = HashMap::new();
        for (data_type, name) in &config.encodings {
            let t = super::encoding::data_type(data_type)?;
            encodings.insert(
                super::encoding::type_name(&t).to_string(),
                super::encoding::encoding(name)?,
            );
        }
        let databases = match config.named_databases() {
            named if named.is_empty() => mappings.path_prefixes(),
            named => named,
        };
        let session_config = super::client::config(
            &config.host,
            config.port,
            &config.user,
            &config.password,
            batching.timeout,
        );
        Ok(Self {
            pool: SessionPool::new(session_config, config.sessions),
            schema: Arc::new(Schema {
                types,
                unit: config.precision.nanos(),
            }),
            encodings,
            compressor: super::encoding::compressor(&config.compressor)?,
            target: format!(
                "IoTDB at {}:{}, databases {}, precision {}",
                config.host,
                config.port,
                databases.join(", "),
                config.precision.as_str()
            ),
            databases,
            ttl_ms: config.ttl.map(|d| d.as_millis() as i64),
            created: Mutex::new(HashSet::new()),
            batching: batching.clone(),
        })
    }

    fn encoding_for(&self, t: &TSDataType) -> TSEncoding {
        self.encodings
            .get(super::encoding::type_name(t))
            .cloned()
            .unwrap_or_else(|| super::encoding::default_encoding(t))
    }

    /// `TEXT GORILLA, DOUBLE GORILLA`: the type and encoding of each type among
    /// `new_series`, for the message when IoTDB refuses to create them.
    fn describe_new_series(&self, new_series: &[(String, TSDataType)]) -> String {
        let mut pairs: Vec<String> = new_series
            .iter()
            .map(|(_, t)| {
                format!(
                    "{} {}",
                    super::encoding::type_name(t),
                    super::encoding::encoding_name(&self.encoding_for(t))
                )
            })
            .collect();
        pairs.sort();
        pairs.dedup();
        pairs.join(", ")
    }
}

/// IoTDB's refusal to create the series of a batch, naming the schema tsmig asked for when
/// IoTDB refused an encoding (its 507 "encoding X does not support T"): the job file's
/// `sink.encodings` chose it, and no write of that type can succeed until it changes.
fn refused_schema(error: WriteError, schema: &str) -> WriteError {
    match error {
        WriteError::Fatal { message } if message.contains("does not support") => {
            WriteError::Fatal {
                message: format!(
                    "IoTDB refused to create series as {schema}: {message}; choose another \
                     encoding for that type in sink.encodings"
                ),
            }
        }
        other => other,
    }
}

/// One device's rows that share a set of measurements.
struct Rows {
    device: Name,
    measurements: Vec<(Name, TSDataType)>,
    times: Vec<i64>,
    /// Column-major values, one column per measurement.
    columns: Vec<Vec<Iot>>,
    /// Which push of the batch added each row ([`Batch::pushed_order`]).
    pushed: Vec<usize>,
}

/// Tablets of one request.
pub struct TabletBatch {
    schema: Arc<Schema>,
    tablets: Vec<Rows>,
    /// (device, measurement names) → tablet.
    index: HashMap<(Name, Vec<Name>), usize>,
    rows: usize,
}

impl Batch for TabletBatch {
    fn push(&mut self, point: &Point) -> Result<(), String> {
        if point.time % self.schema.unit != 0 {
            return Err(format!(
                "time {} is finer than the sink's precision; set precision to a finer unit",
                format_time(point.time)
            ));
        }
        let mut values = Vec::with_capacity(point.fields.len());
        let mut names = Vec::with_capacity(point.fields.len());
        for (name, value) in &point.fields {
            let t = self
                .schema
                .types
                .get(name)
                .ok_or_else(|| format!("field `{name}` has no IoTDB type"))?;
            let v = super::encoding::convert(value, t)
                .map_err(|e| format!("{}.{name}: {e}", point.measurement))?;
            values.push(v);
            names.push(name.clone());
        }
        let key = (point.measurement.clone(), names);
        let at = match self.index.get(&key) {
            Some(&at) => at,
            None => {
                let measurements = key
                    .1
                    .iter()
                    .map(|n| (n.clone(), self.schema.types[n].clone()))
                    .collect();
                self.tablets.push(Rows {
                    device: key.0.clone(),
                    measurements,
                    times: Vec::new(),
                    columns: vec![Vec::new(); key.1.len()],
                    pushed: Vec::new(),
                });
                self.index.insert(key, self.tablets.len() - 1);
                self.tablets.len() - 1
            }
        };
        let rows = &mut self.tablets[at];
        rows.times.push(point.time / self.schema.unit);
        for (column, v) in rows.columns.iter_mut().zip(values) {
            column.push(v);
        }
        rows.pushed.push(self.rows);
        self.rows += 1;
        Ok(())
    }

    fn len(&self) -> usize {
        self.rows
    }

    fn bytes(&self) -> usize {
        self.tablets
            .iter()
            .map(|t| t.times.len() * (8 + 8 * t.columns.len()))
            .sum()
    }

    fn split(mut self) -> Option<(Self, Self)> {
        if self.rows < 2 {
            return None;
        }
        let mut right = TabletBatch {
            schema: self.schema.clone(),
            tablets: Vec::new(),
            index: HashMap::new(),
            rows: 0,
        };
        if self.tablets.len() > 1 {
            right.tablets = self.tablets.split_off(self.tablets.len() / 2);
        } else {
            let rows = &mut self.tablets[0];
            let half = rows.times.len() / 2;
            right.tablets.push(Rows {
                device: rows.device.clone(),
                measurements: rows.measurements.clone(),
                times: rows.times.split_off(half),
                columns: rows.columns.iter_mut().map(|c| c.split_off(half)).collect(),
                pushed: rows.pushed.split_off(half),
            });
        }
        for batch in [&mut self, &mut right] {
            batch.rows = batch.tablets.iter().map(|t| t.times.len()).sum();
            batch.index = batch
                .tablets
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    (
                        (
                            t.device.clone(),
                            t.measurements.iter().map(|m| m.0.clone()).collect(),
                        ),
                        i,
                    )
                })
                .collect();
        }
        Some((self, right))
    }

    fn records(&self) -> Vec<serde_json::Value> {
        let mut out = Vec::with_capacity(self.rows);
        for t in &self.tablets {
            for (row, time) in t.times.iter().enumerate() {
                let fields: serde_json::Map<String, serde_json::Value> = t
                    .measurements
                    .iter()
                    .zip(&t.columns)
                    .map(|((name, _), column)| {
                        (
                            name.to_string(),
                            serde_json::Value::String(column[row].to_string()),
                        )
                    })
                    .collect();
                out.push(serde_json::json!({"device": &*t.device, "time": time, "fields": fields}));
            }
        }
        out
    }

    /// Rows are grouped per tablet (device and measurements): records come tablet by
    /// tablet, not in push order.
    fn pushed_order(&self) -> Vec<usize> {
        self.tablets
            .iter()
            .flat_map(|t| t.pushed.iter().copied())
            .collect()
    }

    fn clear(&mut self) {
        self.tablets.clear();
        self.index.clear();
        self.rows = 0;
    }
}

impl IotdbSink {
    /// Deletes exactly the point of each measurement at one time (what a CDC delete needs):
    /// `deleteData(paths, t, t)`. IoTDB's two-argument form deletes everything up to `t`,
    /// which is never what a deleted row means.
    pub async fn delete_point(
        &self,
        device: &str,
        measurements: &[&str],
        time_ns: i64,
    ) -> Result<(), WriteError> {
        let paths = measurements
            .iter()
            .map(|m| format!("{device}.{}", super::path::quote_node(m)));
        let calls = point_deletes(paths.map(|path| (path, time_ns)), self.schema.unit)?;
        self.delete_data(calls).await
    }

    /// Makes the `deleteData` calls, one after another on one session.
    async fn delete_data(&self, calls: Vec<DeleteCall>) -> Result<(), WriteError> {
        if calls.is_empty() {
            return Ok(());
        }
        self.pool
            .run(move |connection| {
                for call in &calls {
                    connection.call(|s| {
                        s.delete_data(
                            call.paths.iter().map(String::as_str).collect(),
                            call.first,
                            call.last,
                        )
                    })?;
                }
                Ok(())
            })
            .await
    }
}

/// Paths in one `deleteData` call at most: a call's frame stays small.
const PATHS_PER_DELETE: usize = 500;

/// One `deleteData(paths, first, last)`: every series of `paths` at each time from `first`
/// to `last`, both included, in the server's unit.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DeleteCall {
    paths: Vec<String>,
    first: i64,
    last: i64,
}

/// The `deleteData` calls that delete exactly the points `(series path, time in ns)`,
/// and no other, in as few calls as that allows. A call takes many paths but one time
/// range, and deletes each path at every time of it, so:
/// - the series deleted at the same time go in one call (many devices, many fields);
/// - a series' times that are consecutive units (t, t+1, t+2 ms at ms precision) are one
///   range: no point of the series can lie between them. Times further apart are separate
///   ranges, whatever the target holds between them.
///
/// Deletes commute with one another, so the calls' order is free. A time that is no whole
/// unit refuses the whole delete before any call: the caller then deletes point by point
/// and dead-letters that one.
fn point_deletes(
    points: impl IntoIterator<Item = (String, i64)>,
    unit: i64,
) -> Result<Vec<DeleteCall>, WriteError> {
    let mut times: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for (path, time_ns) in points {
        if time_ns % unit != 0 {
            return Err(WriteError::Rejected {
                message: format!(
                    "time {} is finer than the sink's precision",
                    format_time(time_ns)
                ),
            });
        }
        times.entry(path).or_default().insert(time_ns / unit);
    }
    let mut by_range: BTreeMap<(i64, i64), Vec<String>> = BTreeMap::new();
    for (path, times) in times {
        let mut runs: Vec<(i64, i64)> = Vec::new();
        for t in times {
            match runs.last_mut() {
                Some((_, last)) if last.checked_add(1) == Some(t) => *last = t,
                _ => runs.push((t, t)),
            }
        }
        for run in runs {
            by_range.entry(run).or_default().push(path.clone());
        }
    }
    Ok(in_calls(by_range))
}

/// One call per range with its paths, [`PATHS_PER_DELETE`] at most in each.
fn in_calls(by_range: BTreeMap<(i64, i64), Vec<String>>) -> Vec<DeleteCall> {
    by_range
        .into_iter()
        .flat_map(|((first, last), paths)| {
            paths
                .chunks(PATHS_PER_DELETE)
                .map(|paths| DeleteCall {
                    paths: paths.to_vec(),
                    first,
                    last,
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The times in `unit`s (ns each) of `[start, end)` ns, as IoTDB's inclusive `[first,
/// last]`; `None` when no whole unit lies in it.
fn inclusive_range(start: i64, end: i64, unit: i64) -> Option<(i64, i64)> {
    let ceil = |ns: i64| ns.div_euclid(unit) + i64::from(ns.rem_euclid(unit) != 0);
    let (first, after) = (ceil(start), ceil(end));
    (first < after).then(|| (first, after - 1))
}

impl IotdbSink {
    /// For each of `points` (all of `device`), whether the device still has a value of any
    /// of its fields at its time. One query, `SELECT <the fields> FROM <device> WHERE time
    /// = t1 OR time = t2 ...` (IoTDB's time filter takes `=` and `OR`: User Guide, Query
    /// Data, "Where Condition"), in the server's unit; a point whose time is no whole unit
    /// was never written, so it is not there.
    async fn existing(
        &self,
        device: &str,
        points: &[&Point],
        unit: i64,
    ) -> Result<Vec<bool>, WriteError> {
        let mut fields: Vec<&str> = points
            .iter()
            .flat_map(|p| p.fields.iter().map(|(k, _)| k.as_str()))
            .collect();
        fields.sort_unstable();
        fields.dedup();
        let mut times: Vec<i64> = points
            .iter()
            .filter(|p| p.time % unit == 0)
            .map(|p| p.time / unit)
            .collect();
        times.sort_unstable();
        times.dedup();
        if fields.is_empty() || times.is_empty() {
            return Ok(vec![false; points.len()]);
        }
        let columns: Vec<String> = fields
            .iter()
            .map(|f| super::path::quote_node(f).into_owned())
            .collect();
        let statement = format!(
            "SELECT {} FROM {device} WHERE {}",
            columns.join(", "),
            times
                .iter()
                .map(|t| format!("time = {t}"))
                .collect::<Vec<_>>()
                .join(" OR ")
        );
        // (time in units, full path of a series) that hold a value.
        let held: HashSet<(i64, String)> = self
            .pool
            .run(move |connection| {
                connection.call(|s| {
                    let rows = s.execute_query_statement(&statement, None)?;
                    let names = rows.get_column_names();
                    let mut held = HashSet::new();
                    for row in rows {
                        // The client puts the time among the values for some answers.
                        let offset = names.len() - row.values.len();
                        for (name, value) in names.iter().skip(offset).zip(&row.values) {
                            if !matches!(value, Iot::Null) {
                                held.insert((row.timestamp, name.clone()));
                            }
                        }
                    }
                    Ok(held)
                })
            })
            .await?;
        Ok(points
            .iter()
            .map(|p| {
                p.time % unit == 0
                    && p.fields.iter().any(|(f, _)| {
                        held.contains(&(
                            p.time / unit,
                            format!("{device}.{}", super::path::quote_node(f)),
                        ))
                    })
            })
            .collect())
    }
}

#[async_trait::async_trait]
impl Sink for IotdbSink {
    type Batch = TabletBatch;

    fn new_batch(&self) -> TabletBatch {
        TabletBatch {
            schema: self.schema.clone(),
            tablets: Vec::new(),
            index: HashMap::new(),
            rows: 0,
        }
    }

    fn batching(&self) -> &BatchConfig {
        &self.batching
    }

    async fn prepare(&self) -> Result<(), WriteError> {
        let databases = self.databases.clone();
        let ttl = self.ttl_ms;
        self.pool
            .run(move |connection| {
                for db in &databases {
                    connection.call(|s| match s.set_storage_group(db) {
                        Err(e) if super::client::only_already_exists(&e.to_string()) => Ok(()),
                        other => other,
                    })?;
                    if let Some(ms) = ttl {
                        let statement = format!("SET TTL TO {db} {ms}");
                        connection.call(|s| s.execute_update_statement(&statement).map(|_| ()))?;
                    }
                }
                Ok(())
            })
            .await
    }

    async fn write(&self, batch: &TabletBatch) -> Result<(), WriteError> {
        // Series seen for the first time are created with their types first.
        let mut new_series: Vec<(String, TSDataType)> = Vec::new();
        {
            let created = self.created.lock().unwrap_or_else(|p| p.into_inner());
            for t in &batch.tablets {
                for (m, data_type) in &t.measurements {
                    let series = format!("{}.{}", t.device, super::path::quote_node(m));
                    if !created.contains(&series) && !new_series.iter().any(|(s, _)| *s == series) {
                        new_series.push((series, data_type.clone()));
                    }
                }
            }
        }
        let tablets: Vec<Tablet> = batch
            .tablets
            .iter()
            .map(|t| {
                let schemas = t
                    .measurements
                    .iter()
                    .map(|(m, data_type)| {
                        MeasurementSchema::new(
                            super::path::quote_node(m).into_owned(),
                            data_type.clone(),
                            self.encoding_for(data_type),
                            self.compressor.clone(),
                            None,
                        )
                    })
                    .collect();
                let mut tablet = Tablet::new(&t.device, schemas);
                for (row, time) in t.times.iter().enumerate() {
                    let values = t.columns.iter().map(|c| c[row].clone()).collect();
                    // Arity matches by construction.
                    let _ = tablet.add_row(values, *time);
                }
                tablet
            })
            .collect();
        let encodings: Vec<TSEncoding> = new_series
            .iter()
            .map(|(_, t)| self.encoding_for(t))
            .collect();
        let schema_of_new = self.describe_new_series(&new_series);
        let compressor = self.compressor.clone();
        let to_create = new_series.clone();
        self.pool
            .run(move |connection| {
                if !to_create.is_empty() {
                    let paths: Vec<&str> = to_create.iter().map(|(p, _)| p.as_str()).collect();
                    let types: Vec<TSDataType> = to_create.iter().map(|(_, t)| t.clone()).collect();
                    let compressors = vec![compressor; to_create.len()];
                    connection
                        .call(|s| {
                            match s.create_multi_timeseries(
                                paths,
                                types,
                                encodings,
                                compressors,
                                None,
                                None,
                                None,
                                None,
                            ) {
                                Err(e) if super::client::only_already_exists(&e.to_string()) => {
                                    Ok(())
                                }
                                other => other,
                            }
                        })
                        .map_err(|e| refused_schema(e, &schema_of_new))?;
                }
                // A 400 from a cluster's DataNode is a write that succeeded.
                connection.call(|s| match s.insert_tablets(tablets.iter().collect()) {
                    Err(e) if super::client::is_redirection(&e.to_string()) => Ok(()),
                    other => other,
                })
            })
            .await?;
        let mut created = self.created.lock().unwrap_or_else(|p| p.into_inner());
        created.extend(new_series.into_iter().map(|(s, _)| s));
        Ok(())
    }

    async fn delete(&self, points: &[Point]) -> Result<(), WriteError> {
        // Every field of each point: its series under the point's device.
        let series = points.iter().flat_map(|p| {
            p.fields.iter().map(|(field, _)| {
                (
                    format!("{}.{}", p.measurement, super::path::quote_node(field)),
                    p.time,
                )
            })
        });
        let calls = point_deletes(series, self.schema.unit)?;
        self.delete_data(calls).await
    }

    async fn surviving(&self, points: &[Point]) -> Result<Vec<Point>, WriteError> {
        let unit = self.schema.unit;
        let mut by_device: BTreeMap<&str, Vec<&Point>> = BTreeMap::new();
        for p in points {
            by_device.entry(&p.measurement).or_default().push(p);
        }
        let mut surviving = Vec::new();
        for (device, points) in by_device {
            for chunk in points.chunks(200) {
                let found = self.existing(device, chunk, unit).await?;
                surviving.extend(
                    chunk
                        .iter()
                        .zip(found)
                        .filter(|(_, found)| *found)
                        .map(|(p, _)| (*p).clone()),
                );
            }
        }
        Ok(surviving)
    }

    async fn delete_range(&self, windows: &[SeriesWindow]) -> Result<(), WriteError> {
        // IoTDB deletes [start, end], both included, in its own unit: the window's first
        // and last instants that are whole units. Windows of one range go in one call.
        let unit = self.schema.unit;
        let mut by_range: BTreeMap<(i64, i64), Vec<String>> = BTreeMap::new();
        for w in windows {
            if let Some(range) = inclusive_range(w.start, w.end, unit) {
                // Every measurement of the device: `*` is one level, the device's series.
                by_range
                    .entry(range)
                    .or_default()
                    .push(format!("{}.*", w.measurement));
            }
        }
        self.delete_data(in_calls(by_range)).await
    }

    fn describe(&self) -> String {
        let mut types: Vec<String> = self
            .schema
            .types
            .iter()
            .map(|(f, t)| format!("{f}: {}", super::encoding::type_name(t)))
            .collect();
        types.sort();
        format!("{} (measurements {})", self.target, types.join(", "))
    }

    fn read_back(&self) -> Result<&dyn crate::sink::ReadBack, String> {
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;

    /// Rows are grouped per device: each still says which push added it, halves included.
    #[test]
    fn rows_grouped_per_device_keep_their_push_order() {
        let mut b = TabletBatch {
            schema: Arc::new(Schema {
                types: [(Name::from("v"), TSDataType::Int64)].into_iter().collect(),
                unit: 1,
            }),
            tablets: Vec::new(),
            index: HashMap::new(),
            rows: 0,
        };
        for (i, device) in ["root.a", "root.b", "root.a", "root.b", "root.a"]
            .iter()
            .enumerate()
        {
            b.push(&Point {
                measurement: Name::from(*device),
                tags: vec![],
                fields: vec![(Name::from("v"), Value::Int(i as i64))],
                time: i as i64,
                device_hash: 0,
            })
            .unwrap();
        }
        assert_eq!(b.pushed_order(), vec![0, 2, 4, 1, 3]);
        let (left, right) = b.split().unwrap();
        let mut halves = left.pushed_order();
        halves.extend(right.pushed_order());
        assert_eq!(halves, vec![0, 2, 4, 1, 3]);
    }

    #[test]
    fn a_window_becomes_the_whole_units_inside_it_both_ends_included() {
        const MS: i64 = 1_000_000;
        const HOUR: i64 = 3_600_000 * MS;
        // An hour at ms precision: its first to its last millisecond.
        assert_eq!(
            inclusive_range(5 * HOUR, 6 * HOUR, MS),
            Some((5 * 3_600_000, 6 * 3_600_000 - 1))
        );
        // Ends that are not whole units keep only the units inside.
        assert_eq!(inclusive_range(1, 3 * MS + 1, MS), Some((1, 3)));
        assert_eq!(inclusive_range(-HOUR, 0, MS), Some((-3_600_000, -1)));
        // Less than one unit: nothing to delete.
        assert_eq!(inclusive_range(MS + 1, 2 * MS, MS), None);
        assert_eq!(inclusive_range(7, 8, 1), Some((7, 7)));
    }

    #[test]
    fn deletes_of_one_time_share_a_call_and_consecutive_units_one_range() {
        const MS: i64 = 1_000_000;
        let call = |paths: &[&str], first, last| DeleteCall {
            paths: paths.iter().map(|p| p.to_string()).collect(),
            first,
            last,
        };
        let points = [
            // Two devices at 5 ms, one of them with two fields: one call.
            ("root.f.d1.a", 5),
            ("root.f.d1.b", 5),
            ("root.f.d2.a", 5),
            // d3.a at 7, 8, 9 ms: one range; at 11 ms: 10 ms lies between, its own call.
            ("root.f.d3.a", 9),
            ("root.f.d3.a", 7),
            ("root.f.d3.a", 8),
            ("root.f.d3.a", 11),
            // d2.a again at 6 ms: 5 and 6 are one range for d2.a, 5 stays for the others.
            ("root.f.d2.a", 6),
            // The same point twice is one delete.
            ("root.f.d3.a", 11),
        ];
        let calls = point_deletes(points.iter().map(|(p, t)| (p.to_string(), t * MS)), MS).unwrap();
        assert_eq!(
            calls,
            [
                call(&["root.f.d1.a", "root.f.d1.b"], 5, 5),
                call(&["root.f.d2.a"], 5, 6),
                call(&["root.f.d3.a"], 7, 9),
                call(&["root.f.d3.a"], 11, 11),
            ]
        );
        // Exactly the points asked for: every (path, time) of every call, and no other.
        let mut covered: Vec<(String, i64)> = calls
            .iter()
            .flat_map(|c| {
                c.paths
                    .iter()
                    .flat_map(move |p| (c.first..=c.last).map(move |t| (p.clone(), t)))
            })
            .collect();
        covered.sort();
        let mut asked: Vec<(String, i64)> =
            points.iter().map(|(p, t)| (p.to_string(), *t)).collect();
        asked.sort();
        asked.dedup();
        assert_eq!(covered, asked);

        // Many paths at one time: calls of PATHS_PER_DELETE paths at most.
        let many = (0..1_200).map(|i| (format!("root.f.d{i}.a"), 3 * MS));
        let sizes: Vec<usize> = point_deletes(many, MS)
            .unwrap()
            .iter()
            .map(|c| c.paths.len())
            .collect();
        assert_eq!(sizes, [500, 500, 200]);

        // A time finer than the unit refuses the whole delete, before any call.
        let fine = [
            ("root.f.d1.a".to_string(), 5 * MS),
            ("root.f.d1.a".to_string(), MS + 1),
        ];
        assert!(matches!(
            point_deletes(fine, MS),
            Err(WriteError::Rejected { message }) if message.contains("finer than the sink's precision")
        ));
        // Times at the ends of i64 do not overflow.
        let ends = [("p".to_string(), i64::MAX), ("p".to_string(), i64::MIN)];
        assert_eq!(point_deletes(ends, 1).unwrap().len(), 2);
    }
}
