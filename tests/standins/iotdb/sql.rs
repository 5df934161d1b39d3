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
//! SELECT m1, m2 | * FROM root.x.d   (one device, no WHERE, no functions)
//! ```
//! Any other statement answers 300 "not implemented by the stand-in: ..."; a known one
//! that does not parse answers IoTDB's 700 SQL_PARSE_ERROR.

use super::status::{self, Status};
use super::store::{self, Store};
use super::{StandInDataType, StandInValue};
use std::collections::{BTreeSet, VecDeque};

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
            status_result(store.delete_databases(&patterns)).map(|_| None)
        }
        ["DELETE" | "DROP", "STORAGE", "GROUP", ..] => {
            let patterns = path_list(&tokens[3..]).ok_or_else(parse_error)?;
            status_result(store.delete_databases(&patterns)).map(|_| None)
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
            status_result(store.delete_timeseries(&patterns)).map(|_| None)
        }
        ["SELECT", ..] => select(store, &tokens, &w)
            .ok_or_else(parse_error)?
            .map(Some),
        _ => Err(Status::not_implemented(format!("statement `{sql}`"))),
    }
}

/// Words, with `,` `=` `(` `)` as tokens of their own; a trailing `;` dropped.
fn tokenize(sql: &str) -> Vec<String> {
    let sql = sql.trim().trim_end_matches(';');
    let mut tokens = Vec::new();
    let mut word = String::new();
    for c in sql.chars() {
        if c.is_whitespace() || matches!(c, ',' | '=' | '(' | ')') {
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
        [_] => Ok(tokens[tokens.len() - 1].clone()),
        _ => Err(Status::not_implemented(format!(
            "the clauses of `{}`",
            tokens.join(" ")
        ))),
    }
}

fn create_database(store: &mut Store, rest: &[String]) -> Result<(), Status> {
    match rest {
        [path] => status_result(store.create_database(path)),
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
    Some(status_result(
        store.create_timeseries(path, data_type, encoding, compressor),
    ))
}

/// `SELECT m1, m2 | * FROM device`: columns are the full paths of the series that
/// exist, rows every timestamp any of them has, ascending.
fn select(store: &Store, tokens: &[String], words: &[&str]) -> Option<Result<QueryResult, Status>> {
    let from = words.iter().position(|w| *w == "FROM")?;
    if from + 2 != tokens.len() {
        return Some(Err(Status::not_implemented(format!(
            "the clauses of `{}` (SELECT ... FROM <one device> only)",
            tokens.join(" ")
        ))));
    }
    let device = &tokens[from + 1];
    let measurements = path_list(&tokens[1..from])?;
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
    let times: BTreeSet<i64> = series.iter().flatten().map(|(t, _)| *t).collect();
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
