//! Mapping: source rows → points, as the job file's `mappings` say.
//!
//! A mapping is compiled once against the source's schema: column names become positions
//! in the row, names become shared [`Name`]s, tags are sorted by key (InfluxDB's order).
//! Compiling is where the job file meets the database, so every error names the key of
//! the job file that is wrong. Applying a mapping is then one pass over the row with no
//! lookups; a row that cannot become a point is rejected with the reason.

use crate::job::{Job, JobError, MappingConfig, OnDelete, OnUpdate, TimeUnit};
use crate::model::{device_hash, Name, Point, Row, Text, Value};
use crate::source::RowChange;
use crate::source::{ColumnKind, TableSchema};

/// How a sink that reads `path:` templates (IoTDB's device paths,
/// `root.factory.{device_id}`) names their levels: the mapping renders one path per row
/// with it, and knows nothing else of the target.
pub trait PathNames: std::fmt::Debug + Send + Sync {
    /// The template's levels as written: each literal (checked valid) or `{column}`; `Err`
    /// says what is wrong with the template.
    fn levels(&self, template: &str) -> Result<Vec<String>, String>;
    /// A column's value as a level (quoted where the target needs it).
    fn quote(&self, value: &str) -> String;
}

/// Where a point's time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeSource {
    /// A DATETIME/TIMESTAMP/DATE column, already in nanoseconds.
    Instant,
    /// An integer column counting `TimeUnit`s since the Unix epoch.
    Epoch(TimeUnit),
}

/// One level of an IoTDB device path template.
#[derive(Debug, Clone)]
enum PathLevel {
    /// Written as is (already a valid node).
    Literal(String),
    /// The value of the column at this row position, quoted where IoTDB needs it.
    Column(usize, Name),
}

/// Where a field comes from, for sinks that declare types (IoTDB).
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSource {
    /// The field (measurement) name.
    pub field: Name,
    /// What the source column holds.
    pub kind: ColumnKind,
    /// The source's own type, e.g. `int(11)`.
    pub source_type: String,
    /// A type the job file declares for it (`types:`), if any.
    pub declared: Option<String>,
    /// Where it is declared or read, for error messages: `mappings[0].fields[2]`.
    pub key: String,
}

/// One compiled entry of `mappings`.
#[derive(Debug, Clone)]
struct Compiled {
    measurement: Name,
    /// IoTDB device path template (`path:`); when set, it is the point's measurement.
    path: Option<(Vec<PathLevel>, std::sync::Arc<dyn PathNames>)>,
    /// Where each field comes from.
    sources: Vec<FieldSource>,
    /// The device column (its position in the row, its name); `None`: the device is the
    /// series, measurement (or IoTDB path) and tag set.
    device: Option<(usize, Name)>,
    time: usize,
    time_column: Name,
    time_source: TimeSource,
    /// (tag key, position in the row), sorted by key; includes the device.
    tags: Vec<(Name, usize)>,
    /// (field key, position in the row), in the job file's order.
    fields: Vec<(Name, usize)>,
    /// CDC: UPDATE handling.
    on_update: OnUpdate,
    /// CDC: DELETE handling.
    on_delete: OnDelete,
    /// CDC: skip consolidation.
    append_only: bool,
}

/// One point-level update of a CDC change: +1 the point now exists, -1 it no longer does.
/// `direct` updates (append-only tables) skip consolidation and go to the sink in order.
#[derive(Debug, Clone, PartialEq)]
pub struct PointUpdate {
    /// The point.
    pub point: Point,
    /// +1 or -1.
    pub diff: i8,
    /// From an append-only mapping.
    pub direct: bool,
}

/// All mappings of a job, compiled against the source schema.
#[derive(Debug, Clone)]
pub struct Mappings {
    /// Per source table: the mappings that read it.
    per_table: Vec<Vec<Compiled>>,
    /// Per source table: the schema columns rows carry, in row order.
    projections: Vec<Vec<usize>>,
    /// Per source table: the names of the projected columns (for dead letters).
    column_names: Vec<Vec<String>>,
}

/// A row the mapping could not turn into a point.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// Why.
    pub reason: String,
    /// The row, column → value, as JSON.
    pub row: serde_json::Value,
}

impl Mappings {
    /// Compiles `job`'s mappings against `schema` (one entry per source table, in the job
    /// file's order).
    pub fn compile(job: &Job, schema: &[TableSchema]) -> Result<Mappings, JobError> {
        Self::compile_entries(job, &job.file.mappings, schema, None)
    }

    /// Compiles `job`'s mappings for a sink that reads `path:` templates, naming their
    /// levels with `paths` (IoTDB's device paths).
    pub fn compile_for(
        job: &Job,
        schema: &[TableSchema],
        paths: Option<std::sync::Arc<dyn PathNames>>,
    ) -> Result<Mappings, JobError> {
        Self::compile_entries(job, &job.file.mappings, schema, paths)
    }

    /// Compiles `entries` — the job file's mappings, or those a source offers as its own
    /// (`mappings: auto`) — against `schema`. Errors name keys as if `entries` were the
    /// job file's `mappings:`. `paths` names the levels of `path:` templates, for a sink
    /// that reads them; without it a `path:` is refused.
    pub fn compile_entries(
        job: &Job,
        entries: &[MappingConfig],
        schema: &[TableSchema],
        paths: Option<std::sync::Arc<dyn PathNames>>,
    ) -> Result<Mappings, JobError> {
        let tables: Vec<String> = schema.iter().map(|t| t.name.clone()).collect();
        let mut per_table: Vec<Vec<Compiled>> = vec![Vec::new(); tables.len()];
        let mut projections: Vec<Vec<usize>> = vec![Vec::new(); tables.len()];

        for (i, m) in entries.iter().enumerate() {
            let key = |k: &str| format!("mappings[{i}].{k}");
            let Some(table_index) = tables.iter().position(|t| *t == m.table) else {
                return Err(job.error_at(
                    &key("table"),
                    format!(
                        "table `{}` is not one of the source's tables ({})",
                        m.table,
                        tables.join(", ")
                    ),
                ));
            };
            let table = &schema[table_index];
            let projection = &mut projections[table_index];
            // Resolves a column name to its position in the row, adding it to the projection.
            let mut column = |name: &str,
                              at: String|
             -> Result<(usize, ColumnKind, String), JobError> {
                let Some(c) = table.columns.iter().position(|c| c.name == name) else {
                    let known: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
                    return Err(job.error_at(
                        &at,
                        format!(
                            "column `{name}` is not in table `{}` (its columns: {})",
                            table.name,
                            known.join(", ")
                        ),
                    ));
                };
                let kind = table.columns[c].kind.clone();
                if let ColumnKind::Unsupported(t) = &kind {
                    return Err(job.error_at(
                        &at,
                        format!("column `{name}` has type {t}, which tsmig cannot map"),
                    ));
                }
                let position = match projection.iter().position(|p| *p == c) {
                    Some(p) => p,
                    None => {
                        projection.push(c);
                        projection.len() - 1
                    }
                };
                Ok((position, kind, table.columns[c].source_type.clone()))
            };

            let device = match &m.device_field {
                Some(name) => Some((
                    column(name, key("device_field"))?.0,
                    Name::from(name.as_str()),
                )),
                None => None,
            };
            let (time, time_kind, _) = column(&m.timestamp_field, key("timestamp_field"))?;
            let time_source = match (&time_kind, m.timestamp_unit) {
                (ColumnKind::Time, None) => TimeSource::Instant,
                (ColumnKind::Time, Some(_)) => {
                    return Err(job.error_at(
                        &key("timestamp_unit"),
                        format!(
                            "`{}` is a date/time column; timestamp_unit applies to integer columns only",
                            m.timestamp_field
                        ),
                    ))
                }
                (ColumnKind::Int | ColumnKind::UInt, Some(unit)) => TimeSource::Epoch(unit),
                (ColumnKind::Int | ColumnKind::UInt, None) => {
                    return Err(job.error_at(
                        &key("timestamp_field"),
                        format!(
                            "`{}` is an integer column: say its unit with timestamp_unit: s, ms, us or ns",
                            m.timestamp_field
                        ),
                    ))
                }
                (other, _) => {
                    return Err(job.error_at(
                        &key("timestamp_field"),
                        format!(
                            "`{}` holds {other:?} values; a timestamp must be DATETIME, TIMESTAMP, DATE or an integer epoch",
                            m.timestamp_field
                        ),
                    ))
                }
            };

            let path = match &m.path {
                None => None,
                Some(template) => {
                    if m.measurement.is_some() {
                        return Err(job.error_at(&key("path"), "a mapping writes to a measurement (InfluxDB) or a path (IoTDB), not both"));
                    }
                    if !m.tags.is_empty() {
                        return Err(job.error_at(&key("tags"), "IoTDB has no tags: name the columns in the path instead, e.g. root.factory.{site}.{device_id}"));
                    }
                    let Some(names) = paths.clone() else {
                        return Err(job.error_at(
                            &key("path"),
                            "this sink takes no `path:` (an IoTDB device path); name a `measurement:`",
                        ));
                    };
                    let nodes = names
                        .levels(template)
                        .map_err(|e| job.error_at(&key("path"), e))?;
                    let mut levels = Vec::new();
                    for node in nodes {
                        if let Some(name) = node.strip_prefix('{').and_then(|n| n.strip_suffix('}'))
                        {
                            let (at, ..) = column(name, key("path"))?;
                            levels.push(PathLevel::Column(at, Name::from(name)));
                        } else if node.contains(['{', '}']) {
                            return Err(job.error_at(&key("path"), format!("level `{node}`: a level is either literal or exactly one {{column}}")));
                        } else {
                            levels.push(PathLevel::Literal(node));
                        }
                    }
                    Some((levels, names))
                }
            };

            // An IoTDB device is its path; InfluxDB's device is a tag.
            let mut tags: Vec<(Name, usize)> = match (&path, &device) {
                (None, Some((at, name))) => vec![(name.clone(), *at)],
                _ => Vec::new(),
            };
            for (t, name) in m.tags.iter().enumerate() {
                if m.device_field.as_deref() == Some(name.as_str()) {
                    continue;
                }
                if tags.iter().any(|(k, _)| &**k == name.as_str()) {
                    return Err(job.error_at(
                        &key(&format!("tags[{t}]")),
                        format!("tag `{name}` is listed twice"),
                    ));
                }
                let (at, ..) = column(name, key(&format!("tags[{t}]")))?;
                tags.push((Name::from(name.as_str()), at));
            }
            tags.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));

            for declared in m.types.keys() {
                if !m.fields.contains(declared) {
                    return Err(job.error_at(
                        &key(&format!("types.{declared}")),
                        format!("`{declared}` is not one of the mapping's fields"),
                    ));
                }
            }
            let mut fields: Vec<(Name, usize)> = Vec::with_capacity(m.fields.len());
            let mut sources = Vec::with_capacity(m.fields.len());
            for (f, name) in m.fields.iter().enumerate() {
                let at = key(&format!("fields[{f}]"));
                if tags.iter().any(|(k, _)| &**k == name.as_str()) {
                    return Err(job.error_at(
                        &at,
                        format!("`{name}` is already a tag; a column is either a tag or a field"),
                    ));
                }
                if fields.iter().any(|(k, _)| &**k == name.as_str()) {
                    return Err(job.error_at(&at, format!("field `{name}` is listed twice")));
                }
                let (position, kind, source_type) = column(name, at.clone())?;
                fields.push((Name::from(name.as_str()), position));
                let declared = m.types.get(name).cloned();
                let key = if declared.is_some() {
                    key(&format!("types.{name}"))
                } else {
                    at
                };
                sources.push(FieldSource {
                    field: Name::from(name.as_str()),
                    kind,
                    source_type,
                    declared,
                    key,
                });
            }

            per_table[table_index].push(Compiled {
                measurement: Name::from(m.measurement.as_deref().unwrap_or(&m.table)),
                path,
                sources,
                device,
                time,
                time_column: Name::from(m.timestamp_field.as_str()),
                time_source,
                tags,
                fields,
                on_update: m.on_update,
                on_delete: m.on_delete,
                append_only: m.append_only,
            });
        }

        for (t, mappings) in per_table.iter().enumerate() {
            if mappings.is_empty() {
                return Err(job.error_at(
                    &format!("source.tables[{t}]"),
                    format!("no mapping reads table `{}`", tables[t]),
                ));
            }
        }
        let column_names = projections
            .iter()
            .zip(schema)
            .map(|(p, s)| p.iter().map(|&c| s.columns[c].name.clone()).collect())
            .collect();
        Ok(Mappings {
            per_table,
            projections,
            column_names,
        })
    }

    /// The schema columns rows of `table` must carry, in row order.
    pub fn projection(&self, table: usize) -> &[usize] {
        &self.projections[table]
    }

    /// Makes rows of `table` carry `columns` (indices into `schema`, the table's) too,
    /// mapped or not: the row's key, so that a dead letter names the row it was. They go
    /// after the mapped columns, whose positions stay as compiled.
    pub fn carry(&mut self, table: usize, schema: &TableSchema, columns: &[usize]) {
        for &c in columns {
            if c < schema.columns.len() && !self.projections[table].contains(&c) {
                self.projections[table].push(c);
                self.column_names[table].push(schema.columns[c].name.clone());
            }
        }
    }

    /// Where every field of every mapping comes from (for sinks that declare types).
    pub fn field_sources(&self) -> Vec<FieldSource> {
        self.per_table
            .iter()
            .flatten()
            .flat_map(|m| m.sources.iter().cloned())
            .collect()
    }

    /// The InfluxDB measurements the mappings write (those without `path:`).
    pub fn measurements(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .per_table
            .iter()
            .flatten()
            .filter(|m| m.path.is_none())
            .map(|m| m.measurement.to_string())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The IoTDB path templates' literal prefixes up to the first column, e.g. `root.factory`.
    pub fn path_prefixes(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .per_table
            .iter()
            .flatten()
            .filter_map(|m| m.path.as_ref())
            .map(|(levels, _)| {
                levels
                    .iter()
                    .map_while(|l| match l {
                        PathLevel::Literal(s) => Some(s.as_str()),
                        PathLevel::Column(..) => None,
                    })
                    .collect::<Vec<_>>()
                    .join(".")
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The measurements written, for `plan`.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (t, mappings) in self.per_table.iter().enumerate() {
            for m in mappings {
                let tags: Vec<&str> = m.tags.iter().map(|(k, _)| &**k).collect();
                let fields: Vec<&str> = m.fields.iter().map(|(k, _)| &**k).collect();
                out.push(format!(
                    "table {} → measurement {} (device {}, time {}{}) tags [{}] fields [{}]",
                    t,
                    m.measurement,
                    m.device
                        .as_ref()
                        .map(|(_, name)| name.as_str())
                        .unwrap_or("the series"),
                    m.time_column,
                    match m.time_source {
                        TimeSource::Instant => String::new(),
                        TimeSource::Epoch(u) => format!(" in {}", u.as_str()),
                    },
                    tags.join(", "),
                    fields.join(", ")
                ));
            }
        }
        out
    }

    /// Turns `row` into points (one per mapping of its table), passing each to `emit`, or
    /// rejections to `reject`.
    pub fn apply(
        &self,
        mut row: Row,
        emit: &mut impl FnMut(Point),
        reject: &mut impl FnMut(Rejected),
    ) {
        self.apply_values(row.table, &mut row.values, emit, reject)
    }

    /// [`Mappings::apply`] for a row of table `table` whose values are in `values`, which
    /// it may take values out of (a source decoding rows into a buffer it reuses).
    pub fn apply_values(
        &self,
        table: u32,
        values: &mut [Option<Value>],
        emit: &mut impl FnMut(Point),
        reject: &mut impl FnMut(Rejected),
    ) {
        let mut point = Point::default();
        self.apply_values_into(
            table,
            values,
            &mut point,
            &mut |p| emit(std::mem::take(p)),
            reject,
        )
    }

    /// [`Mappings::apply_values`] into one point the caller keeps: each point of the row is
    /// made in `point` (its vectors emptied and filled again, no allocation once they are
    /// large enough) and lent to `emit`, which must be done with it when it returns. A
    /// sink that encodes each point as it comes makes every point of a batch in one place.
    pub fn apply_values_into(
        &self,
        table: u32,
        values: &mut [Option<Value>],
        point: &mut Point,
        emit: &mut impl FnMut(&mut Point),
        reject: &mut impl FnMut(Rejected),
    ) {
        let table = table as usize;
        let Some(mappings) = self.per_table.get(table) else {
            reject(Rejected {
                reason: format!("row of unknown table index {table}"),
                row: serde_json::Value::Null,
            });
            return;
        };
        let last = mappings.len() - 1;
        for (i, m) in mappings.iter().enumerate() {
            // The last mapping may move values out of the row; earlier ones copy.
            match m.point_into(values, i == last, point) {
                Ok(()) => emit(point),
                Err(reason) => reject(Rejected {
                    reason,
                    row: self.row_json(table, values),
                }),
            }
        }
    }

    /// The device hash the point of `row` will have, where it can be known without mapping
    /// the row: its table has one mapping, whose device column holds text or an integer.
    /// The backfill routes rows by it, so that each point is made on the worker that writes
    /// it; `None` (several mappings, no device column, a NULL or other value) leaves that
    /// to the points' own exchange.
    pub fn device_hash_of(&self, row: &Row) -> Option<u64> {
        let at = self.device_column(row.table)?;
        Self::device_hash_of_value(row.values.get(at)?.as_ref()?)
    }

    /// The column (in the source's projection of table `table`) whose value alone tells
    /// the device hash of a row's point ([`Mappings::device_hash_of_value`]): where the
    /// table has one mapping and it names a device column.
    pub fn device_column(&self, table: u32) -> Option<usize> {
        let [m] = self.per_table.get(table as usize)?.as_slice() else {
            return None;
        };
        m.device.as_ref().map(|(at, _)| *at)
    }

    /// The device hash a point gets from `value` in its device column, for text and
    /// integers (`None` for other values, which the points' own exchange routes):
    /// `Compiled::point` hashes these by this same function, other values by their text as
    /// `Value::render` writes it, which is what this hashes (without rendering) too.
    pub fn device_hash_of_value(value: &Value) -> Option<u64> {
        match value {
            Value::String(s) => Self::device_hash_of_text(s.as_bytes()),
            Value::Int(v) => Some(device_hash(itoa::Buffer::new().format(*v).as_bytes())),
            Value::UInt(v) => Some(device_hash(itoa::Buffer::new().format(*v).as_bytes())),
            _ => None,
        }
    }

    /// [`Mappings::device_hash_of_value`] for text, given as its bytes (`None` when empty:
    /// a point has no empty device).
    pub fn device_hash_of_text(text: &[u8]) -> Option<u64> {
        (!text.is_empty()).then(|| device_hash(text))
    }

    /// Turns a row change into point updates by each mapping of its table: the before
    /// image's point with -1, the after image's with +1, as `on_update` / `on_delete` say.
    pub fn apply_change(
        &self,
        change: RowChange,
        emit: &mut impl FnMut(PointUpdate),
        reject: &mut impl FnMut(Rejected),
    ) {
        let Some(table) = change
            .after
            .as_ref()
            .or(change.before.as_ref())
            .map(|r| r.table as usize)
        else {
            return;
        };
        let Some(mappings) = self.per_table.get(table) else {
            reject(Rejected {
                reason: format!("change of unknown table index {table}"),
                row: serde_json::Value::Null,
            });
            return;
        };
        let RowChange {
            mut before,
            mut after,
        } = change;
        let update = before.is_some() && after.is_some();
        let delete = after.is_none();
        let applies = |m: &Compiled| {
            !((update && m.on_update == OnUpdate::Ignore)
                || (delete && m.on_delete == OnDelete::Ignore))
        };
        // As in `apply`: the last mapping that reads the change may move values out of its
        // rows; earlier ones copy.
        let last = mappings.iter().rposition(&applies);
        for (at, m) in mappings.iter().enumerate() {
            if !applies(m) {
                continue;
            }
            for (image, diff) in [(&mut before, -1i8), (&mut after, 1)] {
                let Some(row) = image else { continue };
                match m.point(&mut row.values, Some(at) == last) {
                    Ok(point) => emit(PointUpdate {
                        point,
                        diff,
                        direct: m.append_only,
                    }),
                    Err(reason) => reject(Rejected {
                        reason: if diff < 0 {
                            format!("{reason} (in the row before the change)")
                        } else {
                            reason
                        },
                        row: self.row_json(table, &row.values),
                    }),
                }
            }
        }
    }

    /// Every tag key of each measurement (InfluxDB), sorted: what a delete must name.
    pub fn tag_keys(&self) -> std::collections::BTreeMap<String, Vec<String>> {
        let mut out: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for m in self.per_table.iter().flatten() {
            let keys = out.entry(m.measurement.to_string()).or_default();
            for (k, _) in &m.tags {
                if !keys.iter().any(|e| e == k.as_str()) {
                    keys.push(k.to_string());
                }
            }
            keys.sort();
        }
        out
    }

    /// A row as a JSON object, column → value.
    pub fn row_json(&self, table: usize, values: &[Option<Value>]) -> serde_json::Value {
        let names = &self.column_names[table];
        let map: serde_json::Map<String, serde_json::Value> = names
            .iter()
            .zip(values)
            .map(|(n, v)| {
                (
                    n.clone(),
                    v.as_ref()
                        .map(Value::to_json)
                        .unwrap_or(serde_json::Value::Null),
                )
            })
            .collect();
        serde_json::Value::Object(map)
    }
}

impl Compiled {
    fn point(&self, values: &mut [Option<Value>], take: bool) -> Result<Point, String> {
        let mut point = Point::default();
        self.point_into(values, take, &mut point)?;
        Ok(point)
    }

    /// The point of the row in `values`, made in `out` (whatever it held is replaced; its
    /// vectors are reused). `take`: values that own memory may be moved out of the row. On
    /// `Err` the row is as it was and `out` holds nothing to use.
    fn point_into(
        &self,
        values: &mut [Option<Value>],
        take: bool,
        out: &mut Point,
    ) -> Result<(), String> {
        let time = match (&values[self.time], self.time_source) {
            (None, _) => return Err(format!("timestamp column `{}` is NULL", self.time_column)),
            (Some(Value::Time(ns)), TimeSource::Instant) => *ns,
            (Some(Value::Int(v)), TimeSource::Epoch(unit)) => v
                .checked_mul(unit.nanos())
                .ok_or_else(|| format!("timestamp {v}{} is out of range", unit.as_str()))?,
            (Some(Value::UInt(v)), TimeSource::Epoch(unit)) => i64::try_from(*v)
                .ok()
                .and_then(|v| v.checked_mul(unit.nanos()))
                .ok_or_else(|| format!("timestamp {v}{} is out of range", unit.as_str()))?,
            (Some(other), _) => {
                return Err(format!(
                    "timestamp column `{}` holds {other}, not a time",
                    self.time_column
                ))
            }
        };

        let device = match &self.device {
            None => None,
            Some((at, column)) => Some(match &values[*at] {
                None => return Err(format!("device column `{column}` is NULL")),
                Some(Value::String(s)) if s.is_empty() => {
                    return Err(format!("device column `{column}` is empty"))
                }
                // The rule the router sends rows by (text, integers), so that a row and
                // its point go to one worker; other values hashed as they render.
                Some(v) => Mappings::device_hash_of_value(v)
                    .unwrap_or_else(|| device_hash(v.to_string().as_bytes())),
            }),
        };

        // Checked before tags and fields move values out of the row: a refused row is left
        // as it was read, for its dead letter. Nothing below refuses.
        if self.fields.iter().all(|(_, at)| values[*at].is_none()) {
            return Err("every field is NULL: nothing to write".into());
        }
        // Before tags and fields may move values out of the row.
        let measurement = match &self.path {
            None => self.measurement.clone(),
            Some((levels, names)) => render_path(levels, &**names, values)?,
        };

        let tags = &mut out.tags;
        tags.clear();
        tags.reserve_exact(self.tags.len());
        for (key, at) in &self.tags {
            let text = match (&mut values[*at], take) {
                (None, _) => continue,
                // Moved only when it owns memory: a copy leaves the row as it is (below).
                (Some(Value::String(s)), true) if s.is_heap_allocated() => std::mem::take(s),
                (Some(Value::String(s)), _) => s.clone(),
                (Some(v), _) => Text::from(v.to_string()),
            };
            // InfluxDB has no empty tag values: an empty value is an absent tag.
            if !text.is_empty() {
                push_pair(tags, key.clone(), text);
            }
        }

        let fields = &mut out.fields;
        fields.clear();
        fields.reserve_exact(self.fields.len());
        for (key, at) in &self.fields {
            let value = if take {
                take_or_copy(&mut values[*at])
            } else {
                values[*at].clone()
            };
            if let Some(v) = value {
                push_pair(fields, key.clone(), v);
            }
        }
        // Without a device column the series is the device: one worker owns each series.
        out.device_hash =
            device.unwrap_or_else(|| crate::model::series_hash(&measurement, &out.tags));
        out.measurement = measurement;
        out.time = time;
        Ok(())
    }
}

/// The value in `slot`, moved out where it owns memory (a text too long to be inline),
/// else copied. A copy costs what a move does and leaves the row unwritten: a row that was
/// decoded on another worker's core is then only read here, not taken over line by line
/// (a write to it would pull each of its cache lines across).
fn take_or_copy(slot: &mut Option<Value>) -> Option<Value> {
    match slot {
        Some(Value::String(s) | Value::Decimal(s)) if s.is_heap_allocated() => slot.take(),
        other => other.clone(),
    }
}

/// Appends `(a, b)` to `pairs`, each half written straight into the vector's memory. A
/// `push` of the tuple builds it on the stack first and copies it with wide loads that
/// span the halves' separate stores: the CPU cannot forward those stores to the load and
/// waits for them to retire, once per tag and field of every point.
#[inline(always)]
fn push_pair<A, B>(pairs: &mut Vec<(A, B)>, a: A, b: B) {
    pairs.reserve(1);
    let len = pairs.len();
    // SAFETY: `reserve` left room for one more element at `len`; both halves are written
    // before the length counts it, and nothing can panic in between.
    unsafe {
        let slot = pairs.as_mut_ptr().add(len);
        std::ptr::addr_of_mut!((*slot).0).write(a);
        std::ptr::addr_of_mut!((*slot).1).write(b);
        pairs.set_len(len + 1);
    }
}

/// A device path for one row: literal levels as they are, column levels quoted.
fn render_path(
    levels: &[PathLevel],
    names: &dyn PathNames,
    values: &[Option<Value>],
) -> Result<Name, String> {
    let mut path = String::with_capacity(48);
    for (i, level) in levels.iter().enumerate() {
        if i > 0 {
            path.push('.');
        }
        match level {
            PathLevel::Literal(node) => path.push_str(node),
            PathLevel::Column(at, column) => {
                let text = match &values[*at] {
                    None => return Err(format!("path column `{column}` is NULL")),
                    Some(Value::String(s)) => std::borrow::Cow::Borrowed(s.as_str()),
                    Some(v) => std::borrow::Cow::Owned(v.to_string()),
                };
                if text.is_empty() {
                    return Err(format!("path column `{column}` is empty"));
                }
                path.push_str(&names.quote(&text));
            }
        }
    }
    Ok(Name::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn schema() -> Vec<TableSchema> {
        vec![TableSchema::of(
            "readings",
            [
                ("id", ColumnKind::Int),
                ("device", ColumnKind::Text),
                ("site", ColumnKind::Text),
                ("ts", ColumnKind::Time),
                ("temp", ColumnKind::Float),
                ("ok", ColumnKind::Bool),
                ("blob", ColumnKind::Unsupported("blob".into())),
            ],
        )]
    }

    fn job(mapping: &str) -> Result<Job, JobError> {
        let text = format!(
            "name: t\nsource:\n  type: mysql\n  url: mysql://u@h/db\n  tables:\n    - name: readings\nsink:\n  type: blackhole\nmappings:\n{mapping}"
        );
        Job::parse(Path::new("job.yaml"), &text, |_| None)
    }

    const GOOD: &str = "  - table: readings\n    measurement: m\n    device_field: device\n    timestamp_field: ts\n    tags: [site]\n    fields: [temp, ok]\n";

    #[test]
    fn maps_a_row_to_a_point_with_sorted_tags_and_no_nulls() {
        let job = job(GOOD).unwrap();
        let m = Mappings::compile(&job, &schema()).unwrap();
        // Row order follows first use: device, ts, site, temp, ok.
        assert_eq!(m.projection(0), &[1, 3, 2, 4, 5]);
        let row = Row {
            table: 0,
            values: vec![
                Some(Value::String("d1".into())),
                Some(Value::Time(5)),
                Some(Value::String(Text::default())),
                Some(Value::Float(1.5)),
                None,
            ],
        };
        let mut points = Vec::new();
        m.apply(row, &mut |p| points.push(p), &mut |r| panic!("{r:?}"));
        assert_eq!(points.len(), 1);
        let p = &points[0];
        assert_eq!(&*p.measurement, "m");
        assert_eq!(p.tags, vec![(Name::from("device"), Text::from("d1"))]);
        assert_eq!(p.fields, vec![(Name::from("temp"), Value::Float(1.5))]);
        assert_eq!(p.time, 5);
        assert_eq!(p.device_hash, device_hash(b"d1"));
    }

    #[test]
    fn a_row_is_routed_by_the_device_hash_its_point_will_have() {
        let good = job(GOOD).unwrap();
        let m = Mappings::compile(&good, &schema()).unwrap();
        let row = |device: Option<Value>| Row {
            table: 0,
            values: vec![
                device,
                Some(Value::Time(5)),
                Some(Value::String("s1".into())),
                Some(Value::Float(1.5)),
                None,
            ],
        };
        for device in [Value::String("d1".into()), Value::Int(-7), Value::UInt(7)] {
            let mut points = Vec::new();
            let r = row(Some(device.clone()));
            let routed = m.device_hash_of(&r);
            m.apply(r, &mut |p| points.push(p), &mut |r| panic!("{r:?}"));
            assert_eq!(routed, Some(points[0].device_hash), "{device:?}");
        }
        // Rows whose point is refused or hashed otherwise are left to the points' exchange.
        assert_eq!(m.device_hash_of(&row(None)), None);
        assert_eq!(
            m.device_hash_of(&row(Some(Value::String(Text::default())))),
            None
        );
        assert_eq!(m.device_hash_of(&row(Some(Value::Float(1.0)))), None);

        // Without a device column, or with two mappings of the table, it is not known.
        let series = job("  - table: readings\n    timestamp_field: ts\n    tags: [device]\n    fields: [temp]\n").unwrap();
        let series = Mappings::compile(&series, &schema()).unwrap();
        let r = Row {
            table: 0,
            values: vec![
                Some(Value::Time(5)),
                Some(Value::String("d1".into())),
                Some(Value::Float(1.5)),
            ],
        };
        assert_eq!(series.device_hash_of(&r), None);
        let two = job(&format!(
            "{GOOD}{}",
            GOOD.replace("measurement: m", "measurement: n")
        ))
        .unwrap();
        let two = Mappings::compile(&two, &schema()).unwrap();
        assert_eq!(
            two.device_hash_of(&row(Some(Value::String("d1".into())))),
            None
        );
    }

    /// CDC: the last mapping of a table may move values out of the change's rows; a
    /// mapping before it must still see every value, and a refused row's dead letter is the
    /// row as read, whichever mapping refused it.
    #[test]
    fn every_mapping_of_a_change_sees_the_whole_row() {
        let two = job(&format!(
            "{GOOD}{}",
            GOOD.replace("measurement: m", "measurement: n")
        ))
        .unwrap();
        let two = Mappings::compile(&two, &schema()).unwrap();
        let row = |site: &str, ts: Option<i64>, temp: f64| Row {
            table: 0,
            values: vec![
                Some(Value::String("d1".into())),
                ts.map(Value::Time),
                Some(Value::String(site.into())),
                Some(Value::Float(temp)),
                Some(Value::Bool(true)),
            ],
        };
        let (mut updates, mut rejected) = (Vec::new(), Vec::new());
        let update = RowChange {
            before: Some(row("a", Some(5), 1.0)),
            after: Some(row("b", Some(5), 2.0)),
        };
        two.apply_change(update, &mut |u| updates.push(u), &mut |r| rejected.push(r));
        assert!(rejected.is_empty(), "{rejected:?}");
        let shown: Vec<String> = updates
            .iter()
            .map(|u| {
                let p = &u.point;
                format!("{}{:+} {:?} {:?}", p.measurement, u.diff, p.tags, p.fields)
            })
            .collect();
        let tags = |site: &str| format!("[(\"device\", \"d1\"), (\"site\", \"{site}\")]");
        let fields = |t: f64| format!("[(\"temp\", Float({t:?})), (\"ok\", Bool(true))]");
        assert_eq!(
            shown,
            [
                format!("m-1 {} {}", tags("a"), fields(1.0)),
                format!("m+1 {} {}", tags("b"), fields(2.0)),
                format!("n-1 {} {}", tags("a"), fields(1.0)),
                format!("n+1 {} {}", tags("b"), fields(2.0)),
            ]
        );

        let refused = RowChange {
            before: None,
            after: Some(row("b", None, 2.0)),
        };
        two.apply_change(refused, &mut |u| updates.push(u), &mut |r| rejected.push(r));
        assert_eq!(rejected.len(), 2, "refused by both mappings");
        for r in &rejected {
            assert_eq!(r.row["device"], "d1");
            assert_eq!(r.row["site"], "b");
            assert_eq!(r.row["temp"], 2.0);
            assert_eq!(r.row["ok"], true);
        }
    }

    #[test]
    fn without_a_device_column_the_series_is_the_exchange_key() {
        let job = job("  - table: readings\n    timestamp_field: ts\n    tags: [site, device]\n    fields: [temp]\n").unwrap();
        let m = Mappings::compile(&job, &schema()).unwrap();
        let row = |site: &str| Row {
            table: 0,
            values: vec![
                Some(Value::Time(5)),
                Some(Value::String(site.into())),
                Some(Value::String("d1".into())),
                Some(Value::Float(1.5)),
            ],
        };
        let mut points = Vec::new();
        for site in ["s1", "s2", "s1"] {
            m.apply(row(site), &mut |p| points.push(p), &mut |r| panic!("{r:?}"));
        }
        assert_eq!(
            points[0].device_hash,
            device_hash(b"readings,device=d1,site=s1")
        );
        assert_eq!(points[0].device_hash, points[2].device_hash);
        assert_ne!(points[0].device_hash, points[1].device_hash);
        assert!(m.describe()[0].contains("device the series"));
    }

    #[test]
    fn mappings_auto_is_an_empty_list_only_where_the_source_offers_one() {
        let influx = |mappings: &str| {
            Job::parse(
                Path::new("job.yaml"),
                &format!("name: t\nsource:\n  type: influxdb\n  url: http://h:8086\n  database: d\nsink:\n  type: blackhole\n{mappings}"),
                |_| None,
            )
        };
        assert!(influx("mappings: auto\n").unwrap().file.mappings.is_empty());
        assert!(influx("").unwrap().file.mappings.is_empty());
        let err = influx("mappings: all\n").unwrap_err();
        assert!(
            err.message
                .contains("`all` is not a list of mappings or `auto`"),
            "{}",
            err.message
        );
        // An empty list parses; the source's connector decides whether that means
        // `auto` (connectors::tests).
        assert!(job("").unwrap().file.mappings.is_empty());
    }

    #[test]
    fn rows_that_cannot_be_points_are_rejected_with_reasons() {
        let job = job(GOOD).unwrap();
        let m = Mappings::compile(&job, &schema()).unwrap();
        let cases = [
            (
                vec![
                    None,
                    Some(Value::Time(1)),
                    None,
                    Some(Value::Float(1.0)),
                    None,
                ],
                "device column `device` is NULL",
            ),
            (
                vec![
                    Some(Value::String("d".into())),
                    None,
                    None,
                    Some(Value::Float(1.0)),
                    None,
                ],
                "timestamp column `ts` is NULL",
            ),
            (
                vec![
                    Some(Value::String("d".into())),
                    Some(Value::Time(1)),
                    None,
                    None,
                    None,
                ],
                "every field is NULL: nothing to write",
            ),
        ];
        for (values, reason) in cases {
            let mut rejected = Vec::new();
            let read = m.row_json(0, &values);
            m.apply(
                Row { table: 0, values },
                &mut |p| panic!("{p:?}"),
                &mut |r| rejected.push(r),
            );
            assert_eq!(rejected.len(), 1);
            assert_eq!(rejected[0].reason, reason);
            // The row as it was read: no value moved out of it on the way (a tag).
            assert_eq!(rejected[0].row, read);
        }
    }

    #[test]
    fn a_rejected_row_carries_its_key_though_no_mapping_reads_it() {
        let job = job(GOOD).unwrap();
        let mut m = Mappings::compile(&job, &schema()).unwrap();
        m.carry(0, &schema()[0], &[0, 3]);
        // `id` after the mapped columns; `ts` was mapped already.
        assert_eq!(m.projection(0), &[1, 3, 2, 4, 5, 0]);
        let values = vec![
            None,
            Some(Value::Time(1)),
            Some(Value::String("s".into())),
            Some(Value::Float(1.0)),
            None,
            Some(Value::Int(42)),
        ];
        let mut rejected = Vec::new();
        m.apply(
            Row { table: 0, values },
            &mut |p| panic!("{p:?}"),
            &mut |r| rejected.push(r),
        );
        assert_eq!(rejected[0].reason, "device column `device` is NULL");
        assert_eq!(rejected[0].row["id"], 42);
        assert_eq!(rejected[0].row["site"], "s");
    }

    #[test]
    fn unknown_column_names_the_key_and_line() {
        let job = job("  - table: readings\n    device_field: device\n    timestamp_field: ts\n    fields: [temp, tmep]\n").unwrap();
        let err = Mappings::compile(&job, &schema()).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("mappings[0].fields[1]"));
        assert_eq!(err.place.map(|p| p.0), Some(13));
        assert!(
            err.message
                .contains("column `tmep` is not in table `readings`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn integer_timestamps_need_a_unit_and_unsupported_types_are_refused() {
        let job1 = job("  - table: readings\n    device_field: device\n    timestamp_field: id\n    fields: [temp]\n").unwrap();
        let err = Mappings::compile(&job1, &schema()).unwrap_err();
        assert!(err.message.contains("timestamp_unit"), "{}", err.message);
        let job2 = job("  - table: readings\n    device_field: device\n    timestamp_field: id\n    timestamp_unit: ms\n    fields: [blob]\n").unwrap();
        let err = Mappings::compile(&job2, &schema()).unwrap_err();
        assert!(err.message.contains("type blob"), "{}", err.message);
    }

    /// A generated row: device, site, time, temperature, status.
    type Generated = (
        Option<Value>,
        Option<Value>,
        Option<i64>,
        Option<f64>,
        Option<bool>,
    );

    /// A value for a text column: NULL, empty, inline or long enough to own memory.
    fn text_value() -> impl proptest::strategy::Strategy<Value = Option<Value>> {
        use proptest::prelude::*;
        prop_oneof![
            Just(None),
            Just(Some(Value::String(Text::default()))),
            "[a-c]{1,3}".prop_map(|s| Some(Value::String(s.into()))),
            "[a-c]{25,30}".prop_map(|s| Some(Value::String(s.into()))),
        ]
    }

    proptest::proptest! {
        /// Rows mapped one after the other into one point that is kept (what the backfill's
        /// sink does) give the points, and the rejections, that mapping each row into
        /// points of its own gives: nothing of an earlier row's point (a tag, a field, a
        /// long text moved out of its row) is left in a later one. Two mappings of the
        /// table, the first copying from the row and the last moving out of it.
        #[test]
        fn rows_mapped_into_one_kept_point_are_the_points_mapped_one_by_one(
            rows in proptest::collection::vec(
                (
                    text_value(),
                    text_value(),
                    proptest::option::of(0i64..3),
                    proptest::option::of(-2.0f64..2.0),
                    proptest::option::of(proptest::bool::ANY),
                ),
                1..12,
            )
        ) {
            let two = format!(
                "{GOOD}  - table: readings\n    measurement: m2\n    timestamp_field: ts\n    tags: [device]\n    fields: [ok]\n"
            );
            let m = Mappings::compile(&job(&two).unwrap(), &schema()).unwrap();
            let row = |(device, site, ts, temp, ok): &Generated| {
                // The schema's columns, in the projection's order.
                let by_column = [
                    None,
                    device.clone(),
                    site.clone(),
                    ts.map(Value::Time),
                    temp.map(Value::Float),
                    ok.map(Value::Bool),
                    None,
                ];
                m.projection(0).iter().map(|&c| by_column[c].clone()).collect::<Vec<_>>()
            };
            // Points and rejections in the order they came.
            let one_by_one = std::cell::RefCell::new(Vec::new());
            for r in &rows {
                m.apply_values(
                    0,
                    &mut row(r),
                    &mut |p| one_by_one.borrow_mut().push(Ok(p)),
                    &mut |r| one_by_one.borrow_mut().push(Err(r.reason)),
                );
            }
            let mut kept = Point::default();
            let into_one = std::cell::RefCell::new(Vec::new());
            for r in &rows {
                m.apply_values_into(
                    0,
                    &mut row(r),
                    &mut kept,
                    &mut |p| into_one.borrow_mut().push(Ok(p.clone())),
                    &mut |r| into_one.borrow_mut().push(Err(r.reason)),
                );
            }
            let (into_one, one_by_one) = (into_one.into_inner(), one_by_one.into_inner());
            proptest::prop_assert_eq!(into_one, one_by_one);
        }
    }
}
