//! The few IoTDB SQL statements the stand-in runs (executeStatement and friends),
//! keywords in any case, a trailing `;` allowed:
//!
//! ```text
//! CREATE DATABASE root.x            | CREATE STORAGE GROUP root.x | SET STORAGE GROUP TO root.x
//! DELETE DATABASE <pattern>, ...    | DROP DATABASE ...           | DELETE STORAGE GROUP ...
//! SHOW DATABASES [<pattern>]        | SHOW STORAGE GROUP [<pattern>]     (column: Database)
//! SHOW TIMESERIES [<pattern>]       (IoTDB 1.x's columns; alias, tags, attributes, deadband null)
//! COUNT TIMESERIES [<pattern>]      (column: count(timeseries))
//! CREATE TIMESERIES root.x.d.s WITH DATATYPE=T[, ENCODING=E][, COMPRESSOR=C]
//! DELETE TIMESERIES <pattern>, ...  | DROP TIMESERIES ...
//! SELECT m1, m2 | * FROM root.x.d [WHERE time = t OR time = t ...]   (one device, no functions)
//! SELECT * FROM <pattern> ALIGN BY DEVICE
//! SET TTL TO <path> <milliseconds>  | UNSET TTL TO <path>   (IoTDB 1.0–1.2: per database)
//! ```
//! Any other statement answers 300 "not implemented by the stand-in: ..."; a known one
//! that does not parse answers IoTDB's 700 SQL_PARSE_ERROR. Paths follow path.rs: a node
//! may be back-quoted (`` root.sg.`dev-1`.s ``), and one that needs quotes but has none
//! is a parse error (700) here, as in IoTDB's SQL grammar — not the 509 the RPC calls
//! answer.

use super::path::{self, Kind};
use super::status::{self, Status};
use super::store::{self, Store};
use super::{StandInDataType, StandInValue};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// A query's answer: column names and types, and rows still to send.
pub(crate) struct QueryResult {
    pub columns: Vec<String>,
    pub types: Vec<StandInDataType>,
    /// True for SHOW/COUNT, whose rows have no meaningful time.
    pub ignore_timestamp: bool,
    pub rows: VecDeque<(i64, Vec<Option<StandInValue>>)>,
}

impl QueryResult {
    /// Takes the next `n` rows (at least one if any remain).
    pub fn take(&mut self, n: usize) -> Vec<(i64, Vec<Option<StandInValue>>)> {
        let n = n.max(1).min(self.rows.len());
        self.rows.drain(..n).collect()
    }
}

/// Runs one statement: `Ok(None)` for one that returns no rows.
pub(crate) fn run(store: &mut Store, sql: &str) -> Result<Option<QueryResult>, Status> {
    let tokens = tokenize(sql);
    let words: Vec<String> = tokens.iter().map(|t| t.to_ascii_uppercase()).collect();
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let parse_error = || {
        Status::error(
            status::SQL_PARSE_ERROR,
            format!("the stand-in cannot parse: {sql}"),
        )
    };
    match w.as_slice() {
        ["CREATE", "DATABASE", ..] => create_database(store, &tokens[2..]).map(|_| None),
        ["CREATE", "STORAGE", "GROUP", ..] => create_database(store, &tokens[3..]).map(|_| None),
        ["SET", "STORAGE", "GROUP", "TO", ..] => create_database(store, &tokens[4..]).map(|_| None),
        ["DELETE" | "DROP", "DATABASE", ..] => {
            let patterns = path_list(&tokens[2..]).ok_or_else(parse_error)?;
            let patterns = sql_paths(&patterns, Kind::Pattern)?;
            status_result(store.delete_databases(&patterns)).map(|_| None)
        }
        ["DELETE" | "DROP", "STORAGE", "GROUP", ..] => {
            let patterns = path_list(&tokens[3..]).ok_or_else(parse_error)?;
            let patterns = sql_paths(&patterns, Kind::Pattern)?;
            status_result(store.delete_databases(&patterns)).map(|_| None)
        }
        ["SET", "TTL", "TO", _, _] => {
            let ttl = if w[4] == "INF" {
                None // IoTDB 1.3's spelling of "no TTL"
            } else if tokens[4].bytes().all(|b| b.is_ascii_digit()) {
                Some(tokens[4].parse::<i64>().map_err(|_| parse_error())?)
            } else {
                return Err(parse_error());
            };
            let pattern = sql_path(&tokens[3], Kind::Pattern)?;
            status_result(store.set_ttl(&pattern, ttl)).map(|_| None)
        }
        ["UNSET", "TTL", "TO" | "FROM", _] => {
            let pattern = sql_path(&tokens[3], Kind::Pattern)?;
            status_result(store.set_ttl(&pattern, None)).map(|_| None)
        }
        ["SHOW", "DATABASES", rest @ ..] => show_databases(store, optional_pattern(rest, &tokens)?),
        ["SHOW", "STORAGE", "GROUP", rest @ ..] => {
            show_databases(store, optional_pattern(rest, &tokens)?)
        }
        ["SHOW", "TIMESERIES", rest @ ..] => {
            show_timeseries(store, optional_pattern(rest, &tokens)?)
        }
        ["COUNT", "TIMESERIES", rest @ ..] => {
            count_timeseries(store, optional_pattern(rest, &tokens)?)
        }
        ["CREATE", "TIMESERIES", ..] => create_timeseries(store, &tokens[2..], &w[2..])
            .ok_or_else(parse_error)?
            .map(|_| None),
        ["DELETE" | "DROP", "TIMESERIES", ..] => {
            let patterns = path_list(&tokens[2..]).ok_or_else(parse_error)?;
            let patterns = sql_paths(&patterns, Kind::Pattern)?;
            status_result(store.delete_timeseries(&patterns)).map(|_| None)
        }
        ["SELECT", ..] => select(store, &tokens, &w)
            .ok_or_else(parse_error)?
            .map(Some),
        _ => Err(Status::not_implemented(format!("statement `{sql}`"))),
    }
}

/// Words, with `,` `=` `(` `)` as tokens of their own; a trailing `;` dropped. A
/// back-quoted stretch (`` `a b,c` ``, doubled backquotes inside) stays in its word.
fn tokenize(sql: &str) -> Vec<String> {
    let sql = sql.trim().trim_end_matches(';');
    let mut tokens = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in sql.chars() {
        if c == '`' {
            // A doubled backquote closes and reopens: still inside.
            quoted = !quoted;
            word.push(c);
        } else if quoted {
            word.push(c);
        } else if c.is_whitespace() || matches!(c, ',' | '=' | '(' | ')') {
            if !word.is_empty() {
                tokens.push(std::mem::take(&mut word));
            }
            if !c.is_whitespace() {
                tokens.push(c.to_string());
            }
        } else {
            word.push(c);
        }
    }
    if !word.is_empty() {
        tokens.push(word);
    }
    tokens
}

/// A path of a statement in display form. One IoTDB's grammar cannot read (a node that
/// needs backquotes and has none, a misplaced wildcard) is its 700 parse error.
fn sql_path(path: &str, kind: Kind) -> Result<String, Status> {
    path::canonical(path, kind).map_err(as_parse_error)
}

fn sql_paths(paths: &[String], kind: Kind) -> Result<Vec<String>, Status> {
    paths.iter().map(|p| sql_path(p, kind)).collect()
}

fn as_parse_error(status: Status) -> Status {
    if status.code == status::ILLEGAL_PATH {
        Status::error(
            status::SQL_PARSE_ERROR,
            format!(
                "Error occurred while parsing SQL to physical plan: {}",
                status.message.unwrap_or_default()
            ),
        )
    } else {
        status
    }
}

fn status_result(status: Status) -> Result<(), Status> {
    if status.is_ok() {
        Ok(())
    } else {
        Err(status)
    }
}

/// `a, b, c` → [a, b, c]; None if empty or malformed.
fn path_list(tokens: &[String]) -> Option<Vec<String>> {
    let mut paths = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let is_path = i % 2 == 0;
        if is_path == (token == ",") {
            return None;
        }
        if is_path {
            paths.push(token.clone());
        }
    }
    (!paths.is_empty() && tokens.len() % 2 == 1).then_some(paths)
}

fn optional_pattern(rest: &[&str], tokens: &[String]) -> Result<String, Status> {
    match rest {
        [] => Ok("root.**".to_string()),
        [_] => sql_path(&tokens[tokens.len() - 1], Kind::Pattern),
        _ => Err(Status::not_implemented(format!(
            "the clauses of `{}`",
            tokens.join(" ")
        ))),
    }
}

fn create_database(store: &mut Store, rest: &[String]) -> Result<(), Status> {
    match rest {
        [path] => status_result(store.create_database(&sql_path(path, Kind::Path)?)),
        _ => Err(Status::error(
            status::SQL_PARSE_ERROR,
            "CREATE DATABASE takes one path",
        )),
    }
}

fn text(s: impl Into<String>) -> Option<StandInValue> {
    Some(StandInValue::Text(s.into()))
}

fn show_databases(store: &Store, pattern: String) -> Result<Option<QueryResult>, Status> {
    let rows = store
        .databases_matching(&pattern)?
        .into_iter()
        .map(|db| (0, vec![text(db)]))
        .collect();
    Ok(Some(QueryResult {
        columns: vec!["Database".into()],
        types: vec![StandInDataType::Text],
        ignore_timestamp: true,
        rows,
    }))
}

const SHOW_TIMESERIES_COLUMNS: [&str; 11] = [
    "Timeseries",
    "Alias",
    "Database",
    "DataType",
    "Encoding",
    "Compression",
    "Tags",
    "Attributes",
    "Deadband",
    "DeadbandParameters",
    "ViewType",
];

fn show_timeseries(store: &Store, pattern: String) -> Result<Option<QueryResult>, Status> {
    let rows = store
        .series_matching(&pattern)?
        .into_iter()
        .filter_map(|path| store.series_info(&path))
        .map(|info| {
            let database = store.database_name_of(&info.path).unwrap_or_default();
            let row = vec![
                text(info.path),
                None,
                text(database),
                text(info.data_type.name()),
                text(info.encoding),
                text(info.compressor),
                None,
                None,
                None,
                None,
                text("BASE"),
            ];
            (0, row)
        })
        .collect();
    Ok(Some(QueryResult {
        columns: SHOW_TIMESERIES_COLUMNS
            .iter()
            .map(|c| c.to_string())
            .collect(),
        types: vec![StandInDataType::Text; SHOW_TIMESERIES_COLUMNS.len()],
        ignore_timestamp: true,
        rows,
    }))
}

fn count_timeseries(store: &Store, pattern: String) -> Result<Option<QueryResult>, Status> {
    let count = store.series_matching(&pattern)?.len() as i64;
    Ok(Some(QueryResult {
        columns: vec!["count(timeseries)".into()],
        types: vec![StandInDataType::Int64],
        ignore_timestamp: true,
        rows: VecDeque::from([(0, vec![Some(StandInValue::Int64(count))])]),
    }))
}

/// `path WITH DATATYPE = T [, ENCODING = E] [, COMPRESSOR = C]`; None if malformed.
fn create_timeseries(
    store: &mut Store,
    tokens: &[String],
    words: &[&str],
) -> Option<Result<(), Status>> {
    let path = tokens.first()?;
    let mut words = words.get(1..)?;
    if words.first() == Some(&"WITH") {
        words = &words[1..];
    }
    let mut data_type = None;
    let mut encoding = None;
    let mut compressor = None;
    while !words.is_empty() {
        match words {
            [key, "=", value, tail @ ..] => {
                match *key {
                    "DATATYPE" => data_type = Some(StandInDataType::from_name(value)?),
                    "ENCODING" => encoding = Some(store::encoding_by_name(value)?),
                    "COMPRESSOR" | "COMPRESSION" => {
                        compressor = Some(store::compressor_by_name(value)?)
                    }
                    _ => return None,
                }
                words = tail.strip_prefix(&[","]).unwrap_or(tail);
            }
            _ => return None,
        }
    }
    let data_type = data_type?;
    let encoding = encoding.unwrap_or(store::default_encoding(data_type));
    let compressor = compressor.unwrap_or(store::DEFAULT_COMPRESSOR);
    let path = match sql_path(path, Kind::Path) {
        Ok(path) => path,
        Err(status) => return Some(Err(status)),
    };
    if let Err(status) = store::check_encoding(data_type, encoding) {
        return Some(Err(status));
    }
    Some(status_result(
        store.create_timeseries(&path, data_type, encoding, compressor),
    ))
}

/// `SELECT * FROM <pattern> ALIGN BY DEVICE`, as IoTDB answers it: a `Device` column, then
/// one column per measurement name of any matching device; rows device by device, in time
/// order, NULL where a device has no such measurement or no value at that time.
fn select_align_by_device(store: &Store, pattern: &str) -> Result<QueryResult, Status> {
    let pattern = sql_path(pattern, Kind::Pattern)?;
    let series = store.series_matching(&pattern)?;
    let mut devices: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut measurements: Vec<String> = Vec::new();
    let mut types: Vec<StandInDataType> = vec![StandInDataType::Text];
    for path in &series {
        let device = path::parent(path).to_string();
        let measurement = path[device.len() + 1..].to_string();
        if !measurements.contains(&measurement) {
            measurements.push(measurement.clone());
            types.push(
                store
                    .series_info(path)
                    .map(|i| i.data_type)
                    .unwrap_or(StandInDataType::Text),
            );
        }
        devices.entry(device).or_default().push(measurement);
    }
    let mut rows = VecDeque::new();
    for (device, own) in &devices {
        let points: Vec<Option<Vec<(i64, StandInValue)>>> = measurements
            .iter()
            .map(|m| {
                own.contains(m)
                    .then(|| store.points(&format!("{device}.{m}")))
            })
            .collect();
        let times: BTreeSet<i64> = points.iter().flatten().flatten().map(|(t, _)| *t).collect();
        for t in times {
            let mut values = vec![Some(StandInValue::Text(device.clone()))];
            values.extend(points.iter().map(|p| {
                p.as_ref().and_then(|p| {
                    p.binary_search_by_key(&t, |(pt, _)| *pt)
                        .ok()
                        .map(|i| p[i].1.clone())
                })
            }));
            rows.push_back((t, values));
        }
    }
    let mut columns = vec!["Device".to_string()];
    columns.extend(measurements);
    Ok(QueryResult {
        columns,
        types,
        ignore_timestamp: false,
        rows,
    })
}

/// The times of a WHERE clause `time = t1 OR time = t2 ...` (`timestamp` for `time`, `==`
/// for `=`, integers in the server's unit), as IoTDB's time filter takes them (User Guide,
/// Query Data, "Where Condition": comparison operators `=`/`==`, logical `OR`); `None` for
/// any other clause.
fn time_points(words: &[&str]) -> Option<BTreeSet<i64>> {
    let mut times = BTreeSet::new();
    for term in words.split(|w| *w == "OR") {
        match term {
            [column, "=", value] | [column, "=", "=", value]
                if matches!(*column, "TIME" | "TIMESTAMP") =>
            {
                times.insert(value.parse().ok()?);
            }
            _ => return None,
        }
    }
    Some(times)
}

/// `SELECT m1, m2 | * FROM device [WHERE time = t OR ...]`: columns are the full paths of
/// the series that exist, rows every timestamp any of them has (among the WHERE clause's),
/// ascending.
fn select(store: &Store, tokens: &[String], words: &[&str]) -> Option<Result<QueryResult, Status>> {
    let from = words.iter().position(|w| *w == "FROM")?;
    if words[from + 1..].len() == 4
        && words[from + 2..] == ["ALIGN", "BY", "DEVICE"]
        && words[1..from] == ["*"]
    {
        return Some(select_align_by_device(store, &tokens[from + 1]));
    }
    let only_at = match words.get(from + 2) {
        None => None,
        Some(&"WHERE") => match time_points(&words[from + 3..]) {
            Some(times) => Some(times),
            None => {
                return Some(Err(Status::not_implemented(format!(
                    "the WHERE clause of `{}` (only `time = <integer>` joined by OR)",
                    tokens.join(" ")
                ))))
            }
        },
        Some(_) => {
            return Some(Err(Status::not_implemented(format!(
                "the clauses of `{}` (SELECT ... FROM <one device> [WHERE time = t OR ...] only)",
                tokens.join(" ")
            ))))
        }
    };
    let device = match sql_path(&tokens[from + 1], Kind::Pattern) {
        Ok(device) => device,
        Err(status) => return Some(Err(status)),
    };
    let mut measurements = path_list(&tokens[1..from])?;
    if measurements != ["*"] {
        for m in &mut measurements {
            match path::canonical_measurement(m) {
                Ok(canonical) => *m = canonical,
                Err(status) => return Some(Err(as_parse_error(status))),
            }
        }
    }
    let paths: Vec<String> = if measurements == ["*"] {
        match store.series_matching(&format!("{device}.*")) {
            Ok(paths) => paths,
            Err(status) => return Some(Err(status)),
        }
    } else {
        measurements
            .iter()
            .map(|m| format!("{device}.{m}"))
            .filter(|p| store.series_info(p).is_some())
            .collect()
    };
    let series: Vec<Vec<(i64, StandInValue)>> = paths.iter().map(|p| store.points(p)).collect();
    let times: BTreeSet<i64> = series
        .iter()
        .flatten()
        .map(|(t, _)| *t)
        .filter(|t| only_at.as_ref().is_none_or(|at| at.contains(t)))
        .collect();
    let rows = times
        .into_iter()
        .map(|t| {
            let values = series
                .iter()
                .map(|points| {
                    points
                        .binary_search_by_key(&t, |(pt, _)| *pt)
                        .ok()
                        .map(|i| points[i].1.clone())
                })
                .collect();
            (t, values)
        })
        .collect();
    let types = paths
        .iter()
        .filter_map(|p| store.series_info(p))
        .map(|info| info.data_type)
        .collect();
    Some(Ok(QueryResult {
        columns: paths,
        types,
        ignore_timestamp: false,
        rows,
    }))
}
