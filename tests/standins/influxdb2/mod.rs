//! A STAND-IN for InfluxDB 2 — not InfluxDB. For org `acme`, bucket `plant`, token
//! `secret-token`, this small HTTP server keeps what tsmig's InfluxDB sink writes in version
//! 2 mode (through the influxdb2 crate) and answers the few Flux queries tsmig's verify job
//! sends, in annotated CSV as InfluxDB 2 writes it:
//! - `POST /api/v2/write` (precision ms) answers 204, 401 or 404 like InfluxDB 2 and keeps
//!   the points, a field of an existing point overwritten and the others kept;
//! - `POST /api/v2/query` answers the Flux shapes of [`standin`]; anything else is a 400
//!   with InfluxDB's JSON error.
//!
//! The line protocol itself is proven against the real InfluxDB 1.x in tests/backfill.rs.
//! Used by tests/influxdb_v2.rs and tests/tdengine.rs:
//! `#[path = "standins/influxdb2/mod.rs"] mod influxdb2_standin;`
#![allow(dead_code)]

#[path = "../http.rs"]
mod http;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A field value as InfluxDB 2 stores it.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldValue {
    Float(f64),
    Int(i64),
    UInt(u64),
    Bool(bool),
    Text(String),
}

/// A series: measurement and tags sorted by key.
pub type Series = (String, Vec<(String, String)>);

/// A series' points: time (ns) → field → value.
pub type Points = BTreeMap<i64, BTreeMap<String, FieldValue>>;

/// A bucket: series → points.
pub type Store = BTreeMap<Series, Points>;

/// One line of line protocol read: series, time in ns, fields.
pub type Line = (Series, i64, Vec<(String, FieldValue)>);

/// What the stand-in saw and keeps.
#[derive(Default)]
pub struct Seen {
    /// Request targets (path and query), in order.
    pub requests: Vec<String>,
    /// The lines of accepted write bodies.
    pub accepted_lines: Vec<String>,
    /// Answer the next write requests with these statuses first.
    pub script: Vec<u16>,
    /// The bucket `plant`.
    pub store: Store,
}

impl Seen {
    /// Writes one line of line protocol with timestamps in `unit` ns, as InfluxDB does: a
    /// field of an existing point is overwritten, the others are kept.
    pub fn write_line(&mut self, line: &str, unit: i64) -> Result<(), String> {
        let (series, time, fields) = parse_line(line, unit)?;
        let point = self
            .store
            .entry(series)
            .or_default()
            .entry(time)
            .or_default();
        point.extend(fields);
        Ok(())
    }

    pub fn series_mut(&mut self, measurement: &str, tags: &[(&str, &str)]) -> &mut Points {
        let key = (
            measurement.to_string(),
            tags.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>(),
        );
        self.store
            .get_mut(&key)
            .unwrap_or_else(|| panic!("no series {key:?} in the stand-in"))
    }
}

/// A stand-in for InfluxDB 2 (not InfluxDB) for org `acme`, bucket `plant`, token
/// `secret-token`:
/// - `POST /api/v2/write` answers 204, 401 or 404 like InfluxDB 2 and keeps the points;
/// - `POST /api/v2/query` answers annotated CSV for exactly these Flux shapes (anything else
///   is a 400 with InfluxDB's JSON error):
///   `from(bucket) |> range(start, stop) |> filter(_measurement ==)`, optionally followed by
///   `|> first() |> keep(columns: ["_time"]) |> group() |> min(column: "_time")`, its
///   `last()`/`max` twin, or `|> count() |> group() |> sum()`.
pub fn standin(seen: Arc<Mutex<Seen>>) -> u16 {
    http::serve(move |request| {
        let mut s = seen.lock().unwrap();
        s.requests.push(request.target.clone());
        let auth = request.authorization.unwrap_or_default();
        let (status, content_type, body) = answer(
            &mut s,
            &request.method,
            &request.target,
            &auth,
            request.body,
        );
        Some(http::Response {
            status,
            content_type,
            body,
        })
    })
}

pub const JSON: &str = "application/json; charset=utf-8";

/// InfluxDB 2's JSON error.
pub fn error(status: u16, code: &str, message: &str) -> (u16, &'static str, String) {
    let json = serde_json::json!({ "code": code, "message": message });
    (status, JSON, json.to_string())
}

/// The stand-in's answer to one request: status, content type, body.
pub fn answer(
    s: &mut Seen,
    method: &str,
    target: &str,
    auth: &str,
    body: Vec<u8>,
) -> (u16, &'static str, String) {
    if target.starts_with("/api/v2/write?") && !s.script.is_empty() {
        let status = s.script.remove(0);
        return error(status, "unavailable", "try later");
    }
    if auth != "Token secret-token" {
        return error(401, "unauthorized", "unauthorized access");
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params: Vec<(&str, &str)> = query.split('&').filter_map(|p| p.split_once('=')).collect();
    let param = |name: &str| params.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    if method != "POST" || param("org") != Some("acme") {
        return error(400, "invalid", "bad request");
    }
    match path {
        "/api/v2/write" => {
            let unit = match param("precision") {
                Some("ms") => 1_000_000,
                _ => return error(400, "invalid", "bad request"),
            };
            if param("bucket") != Some("plant") {
                return error(404, "not found", "bucket not found");
            }
            let text = String::from_utf8(body).unwrap();
            for line in text.lines() {
                if let Err(e) = s.write_line(line, unit) {
                    return error(400, "invalid", &format!("unable to parse '{line}': {e}"));
                }
            }
            s.accepted_lines.extend(text.lines().map(str::to_string));
            (204, JSON, String::new())
        }
        "/api/v2/query" => {
            let request: serde_json::Value = match serde_json::from_slice(&body) {
                Ok(json) => json,
                Err(e) => {
                    return error(
                        400,
                        "invalid",
                        &format!("failed to decode request body: {e}"),
                    )
                }
            };
            let annotations: Vec<String> = request["dialect"]["annotations"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect();
            let flux = match parse_flux(request["query"].as_str().unwrap_or_default()) {
                Ok(flux) => flux,
                Err(e) => return error(400, "invalid", &format!("compilation failed: {e}")),
            };
            if flux.bucket != "plant" {
                let message = format!(
                    "failed to initialize execute state: could not find bucket \"{}\"",
                    flux.bucket
                );
                return error(404, "not found", &message);
            }
            (
                200,
                "text/csv; charset=utf-8",
                flux.answer(&s.store, annotations),
            )
        }
        _ => error(404, "not found", "path not found"),
    }
}

/// What a Flux query of the known shapes asks for.
pub struct Flux {
    pub bucket: String,
    pub start: i64,
    pub stop: i64,
    pub measurement: String,
    pub shape: Shape,
}

pub enum Shape {
    /// Every record (one field of one point), one table per series and field.
    Records,
    /// The earliest `_time`.
    First,
    /// The latest `_time`.
    Last,
    /// How many records there are.
    Count,
}

/// Reads the Flux shapes of the module doc, loosely (whitespace aside, to the letter).
pub fn parse_flux(query: &str) -> Result<Flux, String> {
    let stages: Vec<String> = query
        .split("|>")
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    let unknown = || format!("this stand-in does not know the query {query:?}");
    let inside = |stage: &str, prefix: &str| -> Result<String, String> {
        stage
            .strip_prefix(prefix)
            .and_then(|s| s.strip_suffix(')'))
            .map(str::to_string)
            .ok_or_else(unknown)
    };
    if stages.len() < 3 {
        return Err(unknown());
    }
    let bucket = flux_string(&inside(&stages[0], "from(bucket: ")?).ok_or_else(unknown)?;
    let range = inside(&stages[1], "range(start: ")?;
    let (start, stop) = range.split_once(", stop: ").ok_or_else(unknown)?;
    let measurement = flux_string(&inside(&stages[2], "filter(fn: (r) => r._measurement == ")?)
        .ok_or_else(unknown)?;
    let rest: Vec<&str> = stages[3..].iter().map(String::as_str).collect();
    let shape = match rest.as_slice() {
        [] => Shape::Records,
        ["first()", r#"keep(columns: ["_time"])"#, "group()", r#"min(column: "_time")"#] => {
            Shape::First
        }
        ["last()", r#"keep(columns: ["_time"])"#, "group()", r#"max(column: "_time")"#] => {
            Shape::Last
        }
        ["count()", "group()", "sum()"] => Shape::Count,
        _ => return Err(unknown()),
    };
    let time = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .ok()
            .and_then(|t| t.timestamp_nanos_opt())
            .ok_or_else(|| format!("invalid time literal {t:?}"))
    };
    let (start, stop) = (time(start)?, time(stop)?);
    if start >= stop {
        return Err("cannot query an empty range".into());
    }
    Ok(Flux {
        bucket,
        start,
        stop,
        measurement,
        shape,
    })
}

/// The text of a Flux string literal (`"..."` with `\"`, `\\`, `\$`, `\n`, `\t`, `\r`).
pub fn flux_string(literal: &str) -> Option<String> {
    let inner = literal.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        out.push(match c {
            '\\' => match chars.next()? {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                c => c,
            },
            '"' => return None,
            c => c,
        });
    }
    Some(out)
}

impl Flux {
    /// The answer as InfluxDB 2 writes it: tables of one schema share one block of
    /// annotations (in the order the request's dialect lists them) and a header; a new
    /// schema starts a new block after an empty line; lines end with CRLF, and the result
    /// ends with an empty line.
    pub fn answer(&self, store: &Store, annotations: Vec<String>) -> String {
        let mut csv = Csv {
            annotations,
            ..Csv::default()
        };
        let series = store
            .iter()
            .filter(|((m, _), _)| *m == self.measurement)
            .map(|(key, points)| (key, points.range(self.start..self.stop)));
        let time_column = [("_time".to_string(), "dateTime:RFC3339", false)];
        match self.shape {
            Shape::Records => {
                for ((measurement, tags), points) in series {
                    let mut by_field: BTreeMap<&str, Vec<(i64, &FieldValue)>> = BTreeMap::new();
                    for (time, fields) in points {
                        for (field, value) in fields {
                            by_field.entry(field).or_default().push((*time, value));
                        }
                    }
                    for (field, rows) in by_field {
                        let mut columns = vec![
                            ("_start".to_string(), "dateTime:RFC3339", true),
                            ("_stop".to_string(), "dateTime:RFC3339", true),
                            ("_time".to_string(), "dateTime:RFC3339", false),
                            ("_value".to_string(), datatype(rows[0].1), false),
                            ("_field".to_string(), "string", true),
                            ("_measurement".to_string(), "string", true),
                        ];
                        columns.extend(tags.iter().map(|(k, _)| (k.clone(), "string", true)));
                        let rows: Vec<Vec<String>> = rows
                            .iter()
                            .map(|(time, value)| {
                                let mut row = vec![
                                    rfc3339_nano(self.start),
                                    rfc3339_nano(self.stop),
                                    rfc3339_nano(*time),
                                    cell(value),
                                    field.to_string(),
                                    measurement.clone(),
                                ];
                                row.extend(tags.iter().map(|(_, v)| v.clone()));
                                row
                            })
                            .collect();
                        csv.table(&columns, &rows);
                    }
                }
            }
            Shape::First | Shape::Last => {
                let times = series.flat_map(|(_, points)| points.map(|(t, _)| *t));
                let time = match self.shape {
                    Shape::First => times.min(),
                    _ => times.max(),
                };
                if let Some(time) = time {
                    csv.table(&time_column, &[vec![rfc3339_nano(time)]]);
                }
            }
            Shape::Count => {
                let count: usize = series
                    .flat_map(|(_, points)| points.map(|(_, fields)| fields.len()))
                    .sum();
                if count > 0 {
                    let column = [("_value".to_string(), "long", false)];
                    csv.table(&column, &[vec![count.to_string()]]);
                }
            }
        }
        csv.finish()
    }
}

/// Annotated CSV being written.
#[derive(Default)]
pub struct Csv {
    pub out: String,
    pub annotations: Vec<String>,
    pub schema: Option<Vec<(String, &'static str, bool)>>,
    pub tables: usize,
}

impl Csv {
    /// One table: `columns` after `result` and `table` as (name, datatype, in group key).
    pub fn table(&mut self, columns: &[(String, &'static str, bool)], rows: &[Vec<String>]) {
        if self.schema.as_deref() != Some(columns) {
            if self.schema.is_some() {
                self.out.push_str("\r\n");
            }
            for annotation in self.annotations.clone() {
                let cells: Vec<String> = match annotation.as_str() {
                    "datatype" => ["string", "long"]
                        .into_iter()
                        .chain(columns.iter().map(|c| c.1))
                        .map(str::to_string)
                        .collect(),
                    "group" => ["false", "false"]
                        .into_iter()
                        .map(str::to_string)
                        .chain(columns.iter().map(|c| c.2.to_string()))
                        .collect(),
                    _ => ["_result", ""]
                        .into_iter()
                        .chain(columns.iter().map(|_| ""))
                        .map(str::to_string)
                        .collect(),
                };
                self.line(&format!("#{annotation}"), &cells);
            }
            let header: Vec<String> = ["result", "table"]
                .into_iter()
                .map(str::to_string)
                .chain(columns.iter().map(|c| c.0.clone()))
                .collect();
            self.line("", &header);
            self.schema = Some(columns.to_vec());
        }
        for row in rows {
            let cells: Vec<String> = [String::new(), self.tables.to_string()]
                .into_iter()
                .chain(row.iter().cloned())
                .collect();
            self.line("", &cells);
        }
        self.tables += 1;
    }

    pub fn line(&mut self, first: &str, cells: &[String]) {
        self.out.push_str(first);
        for cell in cells {
            self.out.push(',');
            if cell.contains([',', '"', '\r', '\n']) || cell.starts_with(' ') {
                self.out.push('"');
                self.out.push_str(&cell.replace('"', "\"\""));
                self.out.push('"');
            } else {
                self.out.push_str(cell);
            }
        }
        self.out.push_str("\r\n");
    }

    pub fn finish(mut self) -> String {
        self.out.push_str("\r\n");
        self.out
    }
}

pub fn datatype(value: &FieldValue) -> &'static str {
    match value {
        FieldValue::Float(_) => "double",
        FieldValue::Int(_) => "long",
        FieldValue::UInt(_) => "unsignedLong",
        FieldValue::Bool(_) => "boolean",
        FieldValue::Text(_) => "string",
    }
}

/// A value as Flux's CSV encoder writes it (floats as Go's `FormatFloat(f, 'f', -1, 64)`,
/// which is what Rust's `Display` writes for finite floats).
pub fn cell(value: &FieldValue) -> String {
    match value {
        FieldValue::Float(f) => f.to_string(),
        FieldValue::Int(i) => i.to_string(),
        FieldValue::UInt(u) => u.to_string(),
        FieldValue::Bool(b) => b.to_string(),
        FieldValue::Text(s) => s.clone(),
    }
}

/// A time as Go's `time.RFC3339Nano` writes it: trailing zeros of the fraction dropped.
pub fn rfc3339_nano(ns: i64) -> String {
    let t = chrono::DateTime::from_timestamp(
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000) as u32,
    )
    .unwrap();
    let mut text = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let fraction = format!("{:09}", ns.rem_euclid(1_000_000_000));
    let fraction = fraction.trim_end_matches('0');
    if !fraction.is_empty() {
        text.push('.');
        text.push_str(fraction);
    }
    text.push('Z');
    text
}

/// One line of line protocol, as tsmig's encoder writes it (always with a timestamp).
pub fn parse_line(line: &str, unit: i64) -> Result<Line, String> {
    let (rest, time) = line.rsplit_once(' ').ok_or("no timestamp")?;
    let key_end = unescaped(rest, ' ').ok_or("no fields")?;
    let (key, fields) = (&rest[..key_end], &rest[key_end + 1..]);
    let mut key = split_unescaped(key, ',', false).into_iter();
    let measurement = unescape(&key.next().unwrap_or_default(), ", ");
    let mut tags = Vec::new();
    for tag in key {
        let i = unescaped(&tag, '=').ok_or("a tag without =")?;
        tags.push((unescape(&tag[..i], ",= "), unescape(&tag[i + 1..], ",= ")));
    }
    tags.sort();
    let mut parsed = Vec::new();
    for field in split_unescaped(fields, ',', true) {
        let i = unescaped(&field, '=').ok_or("a field without =")?;
        let v = &field[i + 1..];
        let value = if let Some(text) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            FieldValue::Text(unescape(text, "\"\\"))
        } else if let Some(i) = v.strip_suffix('i') {
            FieldValue::Int(i.parse().map_err(|e| format!("{v}: {e}"))?)
        } else if let Some(u) = v.strip_suffix('u') {
            FieldValue::UInt(u.parse().map_err(|e| format!("{v}: {e}"))?)
        } else if ["t", "T", "true", "True", "TRUE"].contains(&v) {
            FieldValue::Bool(true)
        } else if ["f", "F", "false", "False", "FALSE"].contains(&v) {
            FieldValue::Bool(false)
        } else {
            FieldValue::Float(v.parse().map_err(|e| format!("{v}: {e}"))?)
        };
        parsed.push((unescape(&field[..i], ",= "), value));
    }
    let time: i64 = time.parse().map_err(|e| format!("time {time}: {e}"))?;
    Ok(((measurement, tags), time * unit, parsed))
}

/// Where the first `c` without a backslash before it is.
pub fn unescaped(s: &str, c: char) -> Option<usize> {
    let mut escaped = false;
    for (i, d) in s.char_indices() {
        if d == c && !escaped {
            return Some(i);
        }
        escaped = d == '\\' && !escaped;
    }
    None
}

/// `s` cut at each `separator` without a backslash before it (and, with `quotes`, outside
/// string values); the parts keep their escapes.
pub fn split_unescaped(s: &str, separator: char, quotes: bool) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut quoted = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        let part = parts.last_mut().unwrap();
        match c {
            '\\' => {
                part.push(c);
                if let Some(next) = chars.next() {
                    part.push(next);
                }
            }
            '"' if quotes => {
                quoted = !quoted;
                part.push(c);
            }
            c if c == separator && !quoted => parts.push(String::new()),
            c => part.push(c),
        }
    }
    parts
}

/// `s` without the backslashes before the characters in `special` (any other backslash is
/// a backslash, as in InfluxDB).
pub fn unescape(s: &str, special: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(&next) = chars.peek() {
                if special.contains(next) {
                    out.push(next);
                    chars.next();
                    continue;
                }
            }
        }
        out.push(c);
    }
    out
}
