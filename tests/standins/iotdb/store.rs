//! The stand-in's memory: IoTDB's tree model reduced to what a sink touches. Databases
//! (storage groups) own the paths under them; a time series is a full path with a data
//! type, encoding and compressor; a device (the path above its series) is aligned or
//! not; a series holds one value per timestamp, a later write to the same timestamp
//! replacing the earlier one, as in IoTDB.
//!
//! Writes follow IoTDB's rules with auto-create-schema on (its default): a missing
//! database is created at level 1 (`root.<first node>`, default_storage_group_level=1),
//! a missing series with the type of the value written. A value of another type than
//! the series' is refused for that measurement only and the rest of the write lands
//! (IoTDB's partial insert, enable_partial_insert=true), answered with 507 and the
//! message "Fail to insert measurements [..] caused by [..]".
//!
//! Every path is kept in IoTDB's display form (path.rs): each public method takes a
//! path in any legal spelling and refuses an illegal one with 509.

use super::path::{self, is_under, matches, nodes, Kind};
use super::status::{self, Status};
use super::{SeriesInfo, StandInDataType, StandInValue};
use std::collections::{BTreeMap, BTreeSet};

/// IoTDB's TSEncoding ids 0..=8, as iotdb-client-rs 0.3.12 also numbers them.
const ENCODINGS: [&str; 9] = [
    "PLAIN",
    "DICTIONARY",
    "RLE",
    "DIFF",
    "TS_2DIFF",
    "BITMAP",
    "GORILLA_V1",
    "REGULAR",
    "GORILLA",
];

/// IoTDB's CompressionType ids 0..=7, as iotdb-client-rs 0.3.12 also numbers them.
const COMPRESSORS: [&str; 8] = [
    "UNCOMPRESSED",
    "SNAPPY",
    "GZIP",
    "LZO",
    "SDT",
    "PAA",
    "PLA",
    "LZ4",
];

/// Encoding of a series the stand-in creates without being told one, modelled on IoTDB
/// 1.x's default configuration.
pub(crate) fn default_encoding(data_type: StandInDataType) -> &'static str {
    match data_type {
        StandInDataType::Boolean => "RLE",
        StandInDataType::Int32 | StandInDataType::Int64 => "TS_2DIFF",
        StandInDataType::Float | StandInDataType::Double => "GORILLA",
        StandInDataType::Text => "PLAIN",
    }
}

pub(crate) const DEFAULT_COMPRESSOR: &str = "LZ4";

/// The encodings IoTDB lets a data type have: tsfile's `TSEncoding.TYPE_SUPPORTED_ENCODINGS`
/// (apache/tsfile `java/tsfile/src/main/java/org/apache/tsfile/file/metadata/enums/
/// TSEncoding.java`), restricted to the encodings of [`ENCODINGS`]: DIFF, BITMAP and REGULAR
/// encode no type at all. (ZIGZAG, CHIMP, SPRINTZ and RLBE, ids 9 to 13, which the
/// integer and float types also take, are beyond the ids the stand-in reads.)
pub(crate) fn supported_encodings(data_type: StandInDataType) -> &'static [&'static str] {
    match data_type {
        StandInDataType::Boolean => &["PLAIN", "RLE"],
        StandInDataType::Int32 | StandInDataType::Int64 => &["PLAIN", "RLE", "TS_2DIFF", "GORILLA"],
        StandInDataType::Float | StandInDataType::Double => {
            &["PLAIN", "RLE", "TS_2DIFF", "GORILLA_V1", "GORILLA"]
        }
        StandInDataType::Text => &["PLAIN", "DICTIONARY"],
    }
}

/// IoTDB's refusal of an encoding its type cannot take, as every schema region checks it
/// before creating a series (apache/iotdb `iotdb-core/datanode/src/main/java/org/apache/
/// iotdb/db/utils/SchemaUtils.java` checkDataTypeWithEncoding, called by
/// SchemaRegionMemoryImpl.createTimeSeries): a MetadataException, status 507
/// METADATA_ERROR, "encoding GORILLA does not support TEXT".
pub(crate) fn check_encoding(data_type: StandInDataType, encoding: &str) -> Result<(), Status> {
    if supported_encodings(data_type).contains(&encoding) {
        Ok(())
    } else {
        Err(Status::error(
            status::METADATA_ERROR,
            format!("encoding {encoding} does not support {}", data_type.name()),
        ))
    }
}

pub(crate) fn encoding_name(id: i32) -> Result<&'static str, Status> {
    usize::try_from(id)
        .ok()
        .and_then(|i| ENCODINGS.get(i).copied())
        .ok_or_else(|| Status::not_implemented(format!("encoding id {id}")))
}

pub(crate) fn compressor_name(id: i32) -> Result<&'static str, Status> {
    usize::try_from(id)
        .ok()
        .and_then(|i| COMPRESSORS.get(i).copied())
        .ok_or_else(|| Status::not_implemented(format!("compressor id {id}")))
}

pub(crate) fn encoding_by_name(name: &str) -> Option<&'static str> {
    let name = name.to_ascii_uppercase();
    let name = if name == "PLAIN_DICTIONARY" {
        "DICTIONARY".to_string()
    } else {
        name
    };
    ENCODINGS.iter().copied().find(|e| *e == name)
}

pub(crate) fn compressor_by_name(name: &str) -> Option<&'static str> {
    let name = name.to_ascii_uppercase();
    COMPRESSORS.iter().copied().find(|c| *c == name)
}

pub(crate) fn data_type_from_id(id: i32) -> Result<StandInDataType, Status> {
    StandInDataType::from_id(id).ok_or_else(|| {
        Status::not_implemented(format!(
            "data type id {id} (it keeps BOOLEAN, INT32, INT64, FLOAT, DOUBLE and TEXT)"
        ))
    })
}

pub(crate) struct Series {
    pub data_type: StandInDataType,
    pub encoding: &'static str,
    pub compressor: &'static str,
    pub points: BTreeMap<i64, StandInValue>,
}

/// One value of a write before it meets the schema.
#[derive(Clone, Debug)]
pub(crate) enum Cell {
    Typed(StandInValue),
    /// From insertStringRecord(s): typed by the series, or inferred when it is new.
    Raw(String),
    Null,
}

/// The values one write brings for one measurement, one cell per timestamp.
pub(crate) struct Column {
    pub measurement: String,
    /// The type the client declared (tablets), if any.
    pub declared: Option<StandInDataType>,
    pub cells: Vec<Cell>,
}

/// What one insert call writes into one device.
pub(crate) struct DeviceWrite {
    pub device: String,
    pub aligned: bool,
    pub timestamps: Vec<i64>,
    pub columns: Vec<Column>,
}

pub(crate) struct Store {
    auto_create_schema: bool,
    databases: BTreeSet<String>,
    /// Database → TTL in milliseconds, for the databases that have one.
    ttls: BTreeMap<String, i64>,
    series: BTreeMap<String, Series>,
    /// Device path → aligned, for every device that has a series.
    devices: BTreeMap<String, bool>,
}

impl Store {
    pub fn new(auto_create_schema: bool) -> Store {
        Store {
            auto_create_schema,
            databases: BTreeSet::new(),
            ttls: BTreeMap::new(),
            series: BTreeMap::new(),
            devices: BTreeMap::new(),
        }
    }

    // ---- databases -------------------------------------------------------------

    pub fn create_database(&mut self, path: &str) -> Status {
        let path = match path::canonical(path, Kind::Path) {
            Ok(path) => path,
            Err(status) => return status,
        };
        let path = path.as_str();
        if nodes(path).len() < 2 {
            return Status::error(
                status::ILLEGAL_PATH,
                format!("{path} is not a legal path, because it has no node below root"),
            );
        }
        if let Err(status) = path::check_database_name(path) {
            return status;
        }
        if self.databases.contains(path) {
            return Status::error(
                status::DATABASE_ALREADY_EXISTS,
                format!("{path} has already been created as database"),
            );
        }
        if let Some(parent) = self.databases.iter().find(|db| is_under(path, db)) {
            return Status::error(
                status::DATABASE_ALREADY_EXISTS,
                format!("{parent} has already been created as database"),
            );
        }
        if self.databases.iter().any(|db| is_under(db, path)) {
            return Status::error(
                status::DATABASE_ALREADY_EXISTS,
                format!("some children of {path} have already been created as database"),
            );
        }
        if self.series.contains_key(path) {
            return Status::error(
                status::PATH_ALREADY_EXIST,
                format!("Path [{path}] already exist"),
            );
        }
        self.databases.insert(path.to_string());
        Status::ok()
    }

    /// DELETE DATABASE: removes the databases matching any pattern with every series
    /// and point under them.
    pub fn delete_databases(&mut self, patterns: &[String]) -> Status {
        let patterns = match canonical_patterns(patterns) {
            Ok(patterns) => patterns,
            Err(status) => return status,
        };
        let mut doomed = BTreeSet::new();
        for pattern in &patterns {
            let matched = match self.databases_matching(pattern) {
                Ok(matched) => matched,
                Err(status) => return status,
            };
            if matched.is_empty() {
                return Status::error(
                    status::PATH_NOT_EXIST,
                    format!("Path [{pattern}] does not exist"),
                );
            }
            doomed.extend(matched);
        }
        for db in &doomed {
            self.databases.remove(db);
            self.ttls.remove(db);
            self.series.retain(|path, _| !is_under(path, db));
            self.devices
                .retain(|device, _| device != db && !is_under(device, db));
        }
        Status::ok()
    }

    pub fn databases(&self) -> Vec<String> {
        self.databases.iter().cloned().collect()
    }

    pub fn databases_matching(&self, pattern: &str) -> Result<Vec<String>, Status> {
        let pattern = path::canonical(pattern, Kind::Pattern)?;
        let pattern = nodes(&pattern);
        Ok(self
            .databases
            .iter()
            .filter(|db| matches(&pattern, &nodes(db)))
            .cloned()
            .collect())
    }

    /// SET TTL / UNSET TTL (`None`) as IoTDB 1.0–1.2 run them: on every database the
    /// path (pattern) names or lies under; none is IoTDB's 500 DATABASE_NOT_EXIST.
    pub fn set_ttl(&mut self, pattern: &str, ttl: Option<i64>) -> Status {
        let pattern = match path::canonical(pattern, Kind::Pattern) {
            Ok(pattern) => pattern,
            Err(status) => return status,
        };
        let pattern_nodes = nodes(&pattern);
        let belonged: Vec<String> = self
            .databases
            .iter()
            .filter(|db| path::matches_at_or_below(&pattern_nodes, &nodes(db)))
            .cloned()
            .collect();
        if belonged.is_empty() {
            return Status::error(status::DATABASE_NOT_EXIST, "StorageGroup does not exist");
        }
        for db in belonged {
            match ttl {
                Some(ttl) => self.ttls.insert(db, ttl),
                None => self.ttls.remove(&db),
            };
        }
        Status::ok()
    }

    /// The TTL of a database (display form), if one is set.
    pub fn ttl(&self, database: &str) -> Option<i64> {
        self.ttls.get(database).copied()
    }

    fn database_of(&self, series_path: &str) -> Option<&String> {
        self.databases.iter().find(|db| is_under(series_path, db))
    }

    /// The database that holds `series_path`, created at level 1 if auto-create is on.
    fn ensure_database(&mut self, series_path: &str) -> Result<String, Status> {
        if let Some(db) = self.database_of(series_path) {
            return Ok(db.clone());
        }
        if !self.auto_create_schema {
            return Err(Status::error(
                status::DATABASE_NOT_EXIST,
                "Database not exists and failed to create automatically because \
                 enable_auto_create_schema is FALSE.",
            ));
        }
        let nodes = nodes(series_path);
        if nodes.len() < 3 {
            return Err(Status::error(
                status::ILLEGAL_PATH,
                format!("{series_path} is not a legal path for a time series"),
            ));
        }
        let db = nodes[..2].join(".");
        let created = self.create_database(&db);
        if created.is_ok() {
            Ok(db)
        } else {
            Err(created)
        }
    }

    // ---- time series -----------------------------------------------------------

    pub fn create_timeseries(
        &mut self,
        path: &str,
        data_type: StandInDataType,
        encoding: &'static str,
        compressor: &'static str,
    ) -> Status {
        let path = match path::canonical(path, Kind::Path) {
            Ok(path) => path,
            Err(status) => return status,
        };
        let path = path.as_str();
        let device = path::parent(path);
        if self.devices.get(device) == Some(&true) {
            return Status::error(
                status::ALIGNED_TIMESERIES_ERROR,
                format!(
                    "timeseries under this entity is aligned, please use \
                     createAlignedTimeseries or change entity. (Path: {device})"
                ),
            );
        }
        if let Err(status) = self.check_new_series(path) {
            return status;
        }
        if let Err(status) = self.ensure_database(path) {
            return status;
        }
        self.add_series(path, data_type, encoding, compressor, false);
        Status::ok()
    }

    pub fn create_aligned_timeseries(
        &mut self,
        device: &str,
        measurements: &[(String, StandInDataType, &'static str, &'static str)],
    ) -> Status {
        let device = match path::canonical(device, Kind::Path) {
            Ok(device) => device,
            Err(status) => return status,
        };
        let device = device.as_str();
        if self.devices.get(device) == Some(&false) {
            return Status::error(
                status::ALIGNED_TIMESERIES_ERROR,
                format!(
                    "Timeseries under this device is not aligned, please use \
                     createTimeseries or change device. (Path: {device})"
                ),
            );
        }
        let mut paths = Vec::with_capacity(measurements.len());
        for (measurement, ..) in measurements {
            match path::canonical_measurement(measurement) {
                Ok(m) => paths.push(format!("{device}.{m}")),
                Err(status) => return status,
            }
        }
        for path in &paths {
            if let Err(status) = self.check_new_series(path) {
                return status;
            }
        }
        if let Some(path) = paths.first() {
            if let Err(status) = self.ensure_database(path) {
                return status;
            }
        }
        for (path, (_, data_type, encoding, compressor)) in paths.iter().zip(measurements) {
            self.add_series(path, *data_type, encoding, compressor, true);
        }
        Status::ok()
    }

    fn check_new_series(&self, path: &str) -> Result<(), Status> {
        if self.series.contains_key(path) {
            return Err(Status::error(
                status::TIMESERIES_ALREADY_EXIST,
                format!("Path [{path}] already exist"),
            ));
        }
        if self.databases.contains(path)
            || self.has_series_below(path)
            || self.databases.iter().any(|db| is_under(db, path))
        {
            return Err(Status::error(
                status::PATH_ALREADY_EXIST,
                format!("Path [{path}] already exist"),
            ));
        }
        if let Some(series) = self.series_above(path) {
            return Err(Status::error(
                status::METADATA_ERROR,
                format!("{series} is a time series and cannot have children"),
            ));
        }
        Ok(())
    }

    /// Whether some series lies below `path` (display form): a range query on the sorted
    /// keys, so creating many series stays fast.
    fn has_series_below(&self, path: &str) -> bool {
        let prefix = format!("{path}.");
        self.series
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(&prefix))
    }

    /// A series that is a proper ancestor of `path`, if any.
    fn series_above(&self, path: &str) -> Option<String> {
        let nodes = nodes(path);
        (1..nodes.len())
            .map(|n| nodes[..n].join("."))
            .find(|ancestor| self.series.contains_key(ancestor))
    }

    fn add_series(
        &mut self,
        path: &str,
        data_type: StandInDataType,
        encoding: &'static str,
        compressor: &'static str,
        aligned: bool,
    ) {
        self.devices
            .entry(path::parent(path).to_string())
            .or_insert(aligned);
        self.series.insert(
            path.to_string(),
            Series {
                data_type,
                encoding,
                compressor,
                points: BTreeMap::new(),
            },
        );
    }

    pub fn delete_timeseries(&mut self, patterns: &[String]) -> Status {
        let patterns = match canonical_patterns(patterns) {
            Ok(patterns) => patterns,
            Err(status) => return status,
        };
        let mut doomed = BTreeSet::new();
        for pattern in &patterns {
            let matched = match self.series_matching(pattern) {
                Ok(matched) => matched,
                Err(status) => return status,
            };
            if matched.is_empty() {
                return Status::error(
                    status::PATH_NOT_EXIST,
                    format!("Path [{pattern}] does not exist"),
                );
            }
            doomed.extend(matched);
        }
        for path in &doomed {
            self.series.remove(path);
        }
        let series = &self.series;
        self.devices
            .retain(|device, _| series.keys().any(|s| path::parent(s) == device));
        Status::ok()
    }

    /// Full paths of the series a path pattern (`*` one node, `**` one or more) matches.
    pub fn series_matching(&self, pattern: &str) -> Result<Vec<String>, Status> {
        let pattern = path::canonical(pattern, Kind::Pattern)?;
        let pattern = nodes(&pattern);
        Ok(self
            .series
            .keys()
            .filter(|path| matches(&pattern, &nodes(path)))
            .cloned()
            .collect())
    }

    pub fn series_info(&self, path: &str) -> Option<SeriesInfo> {
        self.series.get(path).map(|s| SeriesInfo {
            path: path.to_string(),
            data_type: s.data_type,
            encoding: s.encoding.to_string(),
            compressor: s.compressor.to_string(),
        })
    }

    pub fn database_name_of(&self, path: &str) -> Option<String> {
        self.database_of(path).cloned()
    }

    pub fn all_series(&self) -> Vec<SeriesInfo> {
        self.series
            .keys()
            .filter_map(|path| self.series_info(path))
            .collect()
    }

    pub fn points(&self, path: &str) -> Vec<(i64, StandInValue)> {
        self.series
            .get(path)
            .map(|s| s.points.iter().map(|(t, v)| (*t, v.clone())).collect())
            .unwrap_or_default()
    }

    pub fn series_paths(&self) -> impl Iterator<Item = &String> {
        self.series.keys()
    }

    pub fn is_aligned(&self, device: &str) -> Option<bool> {
        self.devices.get(device).copied()
    }

    // ---- data ------------------------------------------------------------------

    /// One insert call. Path, alignment and database problems refuse the whole call
    /// before anything is written; type problems refuse single measurements.
    pub fn write(&mut self, mut writes: Vec<DeviceWrite>) -> Status {
        for write in &mut writes {
            if let Err(status) = canonical_write(write) {
                return status;
            }
        }
        for write in &writes {
            if let Err(status) = self.check_device_write(write) {
                return status;
            }
        }
        for write in &writes {
            if let Err(status) = self.ensure_device_database(&write.device) {
                return status;
            }
        }
        let now = now_ms();
        let mut expired = None;
        for write in &mut writes {
            let message = self.drop_expired_rows(write, now);
            expired = expired.or(message);
        }
        let mut refused: Vec<(String, String)> = Vec::new();
        for write in writes {
            self.apply_device_write(write, &mut refused);
        }
        if !refused.is_empty() {
            let (measurements, causes): (Vec<String>, Vec<String>) = refused.into_iter().unzip();
            return Status::error(
                status::METADATA_ERROR,
                format!(
                    "Fail to insert measurements [{}] caused by [{}]",
                    measurements.join(", "),
                    causes.join(", ")
                ),
            );
        }
        match expired {
            Some(message) => Status::error(status::OUT_OF_TTL, message),
            None => Status::ok(),
        }
    }

    /// Takes out of `write` the rows older than its database's TTL, as IoTDB's data region
    /// does before it writes: a row is alive while `now - time <= ttl` (times in
    /// milliseconds, IoTDB's default timestamp_precision); an expired row gets the status
    /// OUT_OF_TTL "Insertion time [%s] is less than ttl time bound [%s]"
    /// (apache/iotdb `iotdb-core/datanode/.../queryengine/plan/planner/plan/node/write/
    /// InsertTabletNode.java` checkTTL, `.../storageengine/dataregion/DataRegion.java`
    /// insertTablet, `.../exception/query/OutOfTTLException.java`). The alive rows are
    /// written, and the call is answered with a failed row's status
    /// (`.../consensus/statemachine/dataregion/DataExecutionVisitor.java`
    /// visitInsertTablet / visitInsertMultiTablets / visitInsertRows): the stand-in gives
    /// the first expired row's.
    fn drop_expired_rows(&self, write: &mut DeviceWrite, now: i64) -> Option<String> {
        let ttl = self
            .databases
            .iter()
            .find(|db| *db == &write.device || is_under(&write.device, db))
            .and_then(|db| self.ttls.get(db))
            .copied()?;
        let bound = now.saturating_sub(ttl);
        let alive: Vec<bool> = write.timestamps.iter().map(|t| *t >= bound).collect();
        let first_expired = write.timestamps.iter().zip(&alive).find(|(_, a)| !**a)?;
        let message = format!(
            "Insertion time [{}] is less than ttl time bound [{}]",
            date_of(*first_expired.0),
            date_of(bound)
        );
        retain_alive(&mut write.timestamps, &alive);
        for column in &mut write.columns {
            retain_alive(&mut column.cells, &alive);
        }
        Some(message)
    }

    fn check_device_write(&self, write: &DeviceWrite) -> Result<(), Status> {
        for column in &write.columns {
            let m = &column.measurement;
            if column.cells.len() != write.timestamps.len() {
                return Err(Status::error(
                    status::ILLEGAL_PARAMETER,
                    format!(
                        "{m} has {} values for {} timestamps",
                        column.cells.len(),
                        write.timestamps.len()
                    ),
                ));
            }
        }
        match self.devices.get(&write.device) {
            Some(true) if !write.aligned => Err(Status::error(
                status::ALIGNED_TIMESERIES_ERROR,
                format!(
                    "Timeseries under path [{}] is aligned , please set \
                     InsertPlan.isAligned() = true",
                    write.device
                ),
            )),
            Some(false) if write.aligned => Err(Status::error(
                status::ALIGNED_TIMESERIES_ERROR,
                format!(
                    "Timeseries under path [{}] is not aligned , please set \
                     InsertPlan.isAligned() = false",
                    write.device
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The database a write's device lies in (or is), created at level 1
    /// (`root.<first node>`, IoTDB's default_storage_group_level) when auto-create is on,
    /// before anything is written — as IoTDB creates it while analysing the insert.
    fn ensure_device_database(&mut self, device: &str) -> Result<(), Status> {
        let covered = self
            .databases
            .iter()
            .any(|db| db == device || is_under(device, db));
        if covered {
            return Ok(());
        }
        if !self.auto_create_schema {
            return Err(Status::error(
                status::DATABASE_NOT_EXIST,
                "Database not exists and failed to create automatically because \
                 enable_auto_create_schema is FALSE.",
            ));
        }
        let db = nodes(device)[..2].join(".");
        let created = self.create_database(&db);
        if created.is_ok() {
            Ok(())
        } else {
            Err(created)
        }
    }

    fn apply_device_write(&mut self, write: DeviceWrite, refused: &mut Vec<(String, String)>) {
        for column in write.columns {
            let path = format!("{}.{}", write.device, column.measurement);
            let values = match self.typed_values(&write.device, &column, &write.timestamps) {
                Ok(values) => values,
                Err(cause) => {
                    refused.push((column.measurement.clone(), cause));
                    continue;
                }
            };
            let Some(data_type) = values
                .iter()
                .flatten()
                .map(StandInValue::data_type)
                .next()
                .or(column.declared)
            else {
                continue; // only nulls for a series that does not exist: nothing to do
            };
            if !self.series.contains_key(&path) {
                if !self.auto_create_schema {
                    refused.push((
                        column.measurement.clone(),
                        format!("Path [{path}] does not exist"),
                    ));
                    continue;
                }
                if let Err(status) = self.check_new_series(&path) {
                    refused.push((column.measurement.clone(), status_text(&status)));
                    continue;
                }
                if let Err(status) = self.ensure_database(&path) {
                    refused.push((column.measurement.clone(), status_text(&status)));
                    continue;
                }
                self.add_series(
                    &path,
                    data_type,
                    default_encoding(data_type),
                    DEFAULT_COMPRESSOR,
                    write.aligned,
                );
            }
            let series = self.series.get_mut(&path).expect("created above");
            for (t, value) in write.timestamps.iter().zip(values) {
                if let Some(value) = value {
                    series.points.insert(*t, value);
                }
            }
        }
    }

    /// The column's values in the type of its series (or the type it will be created
    /// with), or why the column is refused.
    fn typed_values(
        &self,
        device: &str,
        column: &Column,
        timestamps: &[i64],
    ) -> Result<Vec<Option<StandInValue>>, String> {
        let path = format!("{device}.{}", column.measurement);
        let registered = self.series.get(&path).map(|s| s.data_type);
        let target = registered.or(column.declared).or_else(|| {
            column.cells.iter().find_map(|c| match c {
                Cell::Raw(s) => Some(infer_type(s)),
                _ => None,
            })
        });
        let mismatch =
            |registered: StandInDataType, inserting: StandInDataType, t: i64, value: &str| {
                format!(
                    "data type of {device}.{} is not consistent, registered type {}, inserting \
                 type {}, timestamp {t}, value {value}",
                    column.measurement,
                    registered.name(),
                    inserting.name()
                )
            };
        // A tablet column declares its type even where all its values are null.
        if let (Some(registered), Some(declared)) = (registered, column.declared) {
            if registered != declared {
                let (t, value) = column
                    .cells
                    .iter()
                    .zip(timestamps)
                    .find_map(|(c, t)| match c {
                        Cell::Typed(v) => Some((*t, v.to_string())),
                        _ => None,
                    })
                    .unwrap_or((
                        timestamps.first().copied().unwrap_or_default(),
                        "null".into(),
                    ));
                return Err(mismatch(registered, declared, t, &value));
            }
        }
        let mut values = Vec::with_capacity(column.cells.len());
        for (cell, t) in column.cells.iter().zip(timestamps) {
            let value = match cell {
                Cell::Null => None,
                Cell::Typed(v) => {
                    if let Some(registered) = registered {
                        if v.data_type() != registered {
                            return Err(mismatch(registered, v.data_type(), *t, &v.to_string()));
                        }
                    }
                    Some(v.clone())
                }
                Cell::Raw(s) => {
                    let target = target.expect("a raw cell gives a type");
                    match parse_as(s, target) {
                        Some(v) => Some(v),
                        None => {
                            return Err(format!(
                                "data type of {device}.{} is not consistent, registered type \
                                 {}, inserting timestamp {t}, value {s}",
                                column.measurement,
                                target.name()
                            ))
                        }
                    }
                }
            };
            values.push(value);
        }
        Ok(values)
    }

    /// Deletes the points of the series matching `patterns` with start <= t <= end.
    /// Like IoTDB 1.x, patterns that match nothing are no error.
    pub fn delete_data(&mut self, patterns: &[String], start: i64, end: i64) -> Status {
        let patterns = match canonical_patterns(patterns) {
            Ok(patterns) => patterns,
            Err(status) => return status,
        };
        let mut paths = BTreeSet::new();
        for pattern in &patterns {
            match self.series_matching(pattern) {
                Ok(matched) => paths.extend(matched),
                Err(status) => return status,
            }
        }
        if start > end {
            return Status::ok();
        }
        for path in paths {
            if let Some(series) = self.series.get_mut(&path) {
                let doomed: Vec<i64> = series.points.range(start..=end).map(|(t, _)| *t).collect();
                for t in doomed {
                    series.points.remove(&t);
                }
            }
        }
        Status::ok()
    }
}

/// Keeps the values whose flag is set (one flag per value).
fn retain_alive<T>(values: &mut Vec<T>, alive: &[bool]) {
    let mut flags = alive.iter();
    values.retain(|_| *flags.next().unwrap_or(&true));
}

/// Milliseconds since the epoch, by this machine's clock (IoTDB's TTL is against now).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A time (ms) as IoTDB's DateTimeUtils.convertLongToDate writes it, in UTC.
fn date_of(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}

fn status_text(status: &Status) -> String {
    status
        .message
        .clone()
        .unwrap_or_else(|| status.code.to_string())
}

/// IoTDB's type inference for a string value written to a new series, with IoTDB 1.x's
/// defaults: "true"/"false" → BOOLEAN, numbers (integer_string_infer_type and
/// floating_string_infer_type) and NaN → DOUBLE, anything else → TEXT.
pub(crate) fn infer_type(raw: &str) -> StandInDataType {
    let trimmed = raw.trim();
    if trimmed.eq_ignore_ascii_case("true") || trimmed.eq_ignore_ascii_case("false") {
        StandInDataType::Boolean
    } else if trimmed.eq_ignore_ascii_case("nan") || looks_numeric(trimmed) {
        StandInDataType::Double
    } else {
        StandInDataType::Text
    }
}

fn looks_numeric(s: &str) -> bool {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    !digits.is_empty()
        && digits
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || c == '.')
        && s.parse::<f64>().is_ok()
}

pub(crate) fn parse_as(raw: &str, data_type: StandInDataType) -> Option<StandInValue> {
    let trimmed = raw.trim();
    Some(match data_type {
        StandInDataType::Boolean => {
            if trimmed.eq_ignore_ascii_case("true") {
                StandInValue::Boolean(true)
            } else if trimmed.eq_ignore_ascii_case("false") {
                StandInValue::Boolean(false)
            } else {
                return None;
            }
        }
        StandInDataType::Int32 => StandInValue::Int32(trimmed.parse().ok()?),
        StandInDataType::Int64 => StandInValue::Int64(trimmed.parse().ok()?),
        StandInDataType::Float => StandInValue::Float(trimmed.parse().ok()?),
        StandInDataType::Double => StandInValue::Double(trimmed.parse().ok()?),
        StandInDataType::Text => StandInValue::Text(raw.to_string()),
    })
}

// ---- paths -----------------------------------------------------------------------

/// Every pattern of a request in display form, or the 509 of the first illegal one:
/// IoTDB parses all the paths of a statement before it runs any part of it.
pub(crate) fn canonical_patterns(patterns: &[String]) -> Result<Vec<String>, Status> {
    patterns
        .iter()
        .map(|p| path::canonical(p, Kind::Pattern))
        .collect()
}

/// A write's device and measurements in display form, or the 509 that refuses the call
/// (the device first, then the measurements, in IoTDB's order).
fn canonical_write(write: &mut DeviceWrite) -> Result<(), Status> {
    write.device = path::canonical(&write.device, Kind::Path)?;
    if nodes(&write.device).len() < 2 {
        return Err(Status::error(
            status::ILLEGAL_PATH,
            format!("{} is not a legal device path", write.device),
        ));
    }
    for column in &mut write.columns {
        column.measurement = path::canonical_measurement(&column.measurement)?;
    }
    Ok(())
}
