//! A STAND-IN for InfluxDB 2 — not InfluxDB. For org `acme`, bucket `plant`, token
//! `secret-token`, this small HTTP server keeps what tsmig's InfluxDB sink writes in version
//! 2 mode and answers the few Flux queries tsmig's verify job sends, in annotated CSV as
//! InfluxDB 2 writes it:
//! - `POST /api/v2/write` checks what InfluxDB 2 checks, in its order, and answers with its
//!   statuses and JSON error bodies (`{"code": ..., "message": ...}`): 401 without
//!   `Authorization: Token secret-token`; 404 for another org or bucket; 400 for a
//!   precision other than `ns`, `us`, `ms`, `s` (none means `ns`); a
//!   `Content-Encoding: gzip` body is decompressed (400 if it is not gzip, 415 for another
//!   encoding); 413 for a decoded body over [`Seen::max_body`]. Then every line is read
//!   with InfluxDB 2's rules (line_protocol.rs: an empty tag value, NaN, Inf, a number out
//!   of range... are refused): if one cannot be read (or holds a string of
//!   [`Seen::refuse`], injected bad lines), the answer is 400 `unable to parse '<line>':
//!   <reason>` for each such line and NOTHING is written, as InfluxDB 2 parses the whole
//!   body before it writes (`http/points/points_parser.go`). Otherwise the points are
//!   stored, a field of an existing point overwritten and the others kept, shard group by
//!   shard group (7 days, Monday to Monday): a point with a field its shard group already
//!   holds with another type (or a string over 1 MiB) is dropped and the others are
//!   written, answered 422 `failure writing points to database: partial write: field type
//!   conflict: input field "f" on measurement "m" is type string, already exists as type
//!   float dropped=<n>` (`http/write_handler.go`, `tsdb/shard.go`,
//!   `tsdb/field_validator.go`).
//! - `POST /api/v2/delete` reads the predicate with InfluxDB 2's grammar (predicate.rs):
//!   a key that is no bare identifier (`site-id`, `site id`) or is a keyword (`name`) must
//!   be double-quoted, or the delete is a 400.
//! - Failure injection: [`Seen::script`] answers the next writes with 413, 429 (with
//!   `Retry-After:` [`Seen::retry_after`]), 500 or 503 and InfluxDB 2's body, storing
//!   nothing. [`Seen::writes`] logs every write request: when, the answer, whether gzipped.
//! - `POST /api/v2/query` answers the Flux shapes of [`standin`]; anything else is a 400
//!   with InfluxDB's JSON error.
//!
//! The line protocol itself is proven against the real InfluxDB 1.x in tests/backfill.rs.
//! Used by tests/influxdb_v2.rs and tests/tdengine.rs:
//! `#[path = "standins/influxdb2/mod.rs"] mod influxdb2_standin;`
#![allow(dead_code)]

#[path = "../http.rs"]
mod http;
mod line_protocol;
mod predicate;

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Instant;

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

/// One write request as the stand-in answered it.
#[derive(Clone, Debug)]
pub struct WriteLog {
    /// When it arrived.
    pub at: Instant,
    /// The status answered.
    pub status: u16,
    /// Whether its body came with `Content-Encoding: gzip`.
    pub gzip: bool,
    /// Lines stored from it.
    pub stored: usize,
}

/// What the stand-in saw and keeps.
#[derive(Default)]
pub struct Seen {
    /// Request targets (path and query), in order.
    pub requests: Vec<String>,
    /// The lines stored, in order (a line sent twice is here twice).
    pub accepted_lines: Vec<String>,
    /// Answer the next write requests with these statuses first (413, 429, 500, 503),
    /// with InfluxDB 2's body, storing nothing.
    pub script: Vec<u16>,
    /// The Retry-After (seconds) of a scripted 429; none if `None`.
    pub retry_after: Option<u64>,
    /// Lines holding any of these strings cannot be read (injected): the body is refused
    /// with a 400 naming them, nothing written, as for a line InfluxDB cannot parse.
    pub refuse: Vec<String>,
    /// Largest decoded write body taken; a larger one is a 413.
    pub max_body: Option<usize>,
    /// Every write request.
    pub writes: Vec<WriteLog>,
    /// The bucket `plant`.
    pub store: Store,
    /// The predicate of every delete request, in order.
    pub deletes: Vec<String>,
    /// The type of each field per shard group and measurement, as the storage engine keeps
    /// them: (shard group start, measurement) → field → InfluxQL type name.
    pub field_types: BTreeMap<(i64, String), BTreeMap<String, &'static str>>,
}

impl Seen {
    /// Writes one line of line protocol with timestamps in `unit` ns, as InfluxDB does: a
    /// field of an existing point is overwritten, the others are kept. `Err` is why
    /// InfluxDB 2 would refuse it (line_protocol.rs, or [`Seen::store_point`]).
    pub fn write_line(&mut self, line: &str, unit: i64) -> Result<(), String> {
        let point = line_protocol::parse(line.trim(), unit, now_ns())?;
        self.store_point(point)
    }

    /// Stores one point, unless the storage engine would drop it: a string field longer
    /// than 1 MiB, or a field its shard group holds with another type (InfluxDB 2's
    /// `tsdb/field_validator.go` ValidateAndCreateFields, field by field: fields new to the
    /// shard before the clash keep their type, as InfluxDB creates them on the way). The
    /// reason is InfluxDB's text.
    fn store_point(&mut self, ((measurement, tags), time, fields): Line) -> Result<(), String> {
        let types = self
            .field_types
            .entry((shard_group(time), measurement.clone()))
            .or_default();
        for (name, value) in &fields {
            if let FieldValue::Text(text) = value {
                if text.len() > MAX_FIELD_VALUE_LENGTH {
                    return Err(format!(
                        "input field {name:?} on measurement {measurement:?} is too long, {} > {MAX_FIELD_VALUE_LENGTH}",
                        text.len()
                    ));
                }
            }
            let kind = type_name(value);
            match types.get(name) {
                Some(existing) if *existing != kind => {
                    return Err(format!(
                        "field type conflict: input field {name:?} on measurement \
                         {measurement:?} is type {kind}, already exists as type {existing}"
                    ))
                }
                Some(_) => {}
                None => {
                    types.insert(name.clone(), kind);
                }
            }
        }
        let point = self
            .store
            .entry((measurement, tags))
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
/// - `POST /api/v2/write` as the module doc says;
/// - `POST /api/v2/delete` deletes a time range of the series a predicate names;
/// - `POST /api/v2/query` answers annotated CSV for exactly these Flux shapes (anything else
///   is a 400 with InfluxDB's JSON error):
///   `from(bucket) |> range(start, stop) |> filter(_measurement ==)`, optionally followed by
///   `|> first() |> keep(columns: ["_time"]) |> group() |> min(column: "_time")`, its
///   `last()`/`max` twin, or `|> count() |> group() |> sum()`; or by more
///   `|> filter(fn: (r) => ...)` stages over tags and `_time` ([`Predicate`]).
pub fn standin(seen: Arc<Mutex<Seen>>) -> u16 {
    http::serve(move |request| {
        let mut s = seen.lock().unwrap();
        s.requests.push(request.target.clone());
        let auth = request.authorization.unwrap_or_default();
        Some(answer(
            &mut s,
            &request.method,
            &request.target,
            &auth,
            request.content_encoding.as_deref(),
            request.body,
        ))
    })
}

pub const JSON: &str = "application/json; charset=utf-8";

/// The stand-in's answer.
pub type Response = http::Response;

/// InfluxDB 2's JSON error.
pub fn error(status: u16, code: &str, message: &str) -> Response {
    let json = serde_json::json!({ "code": code, "message": message });
    http::Response {
        status,
        content_type: JSON,
        body: json.to_string(),
        headers: Vec::new(),
    }
}

/// The stand-in's answer to one request.
pub fn answer(
    s: &mut Seen,
    method: &str,
    target: &str,
    auth: &str,
    content_encoding: Option<&str>,
    body: Vec<u8>,
) -> Response {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path == "/api/v2/write" {
        let gzip = content_encoding == Some("gzip");
        let (response, stored) = write(s, method, query, auth, content_encoding, body);
        s.writes.push(WriteLog {
            at: Instant::now(),
            status: response.status,
            gzip,
            stored,
        });
        return response;
    }
    if auth != "Token secret-token" {
        return error(401, "unauthorized", "unauthorized access");
    }
    let params = query_params(query);
    if method != "POST" || params.get("org").map(String::as_str) != Some("acme") {
        return error(400, "invalid", "bad request");
    }
    match path {
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
            http::Response {
                status: 200,
                content_type: "text/csv; charset=utf-8",
                body: flux.answer(&s.store, annotations),
                headers: Vec::new(),
            }
        }
        "/api/v2/delete" => {
            if params.get("bucket").map(String::as_str) != Some("plant") {
                let bucket = params.get("bucket").cloned().unwrap_or_default();
                return error(404, "not found", &format!("bucket \"{bucket}\" not found"));
            }
            match delete(s, &body) {
                Ok(()) => http::Response {
                    status: 204,
                    content_type: JSON,
                    body: String::new(),
                    headers: Vec::new(),
                },
                Err((status, code, message)) => error(status, code, &message),
            }
        }
        _ => error(404, "not found", "path not found"),
    }
}

/// `POST /api/v2/delete`: `{start, stop, predicate}`, both times inclusive (RFC 3339), the
/// predicate read as InfluxDB 2 reads it (predicate.rs: keys that are no bare identifier,
/// or are a keyword such as `name`, must be double-quoted; `=`/`!=` and `AND` only).
/// Deletes the points in the range of every series of the measurement whose tags include
/// the predicate's (a series with more tags matches too, as in InfluxDB 2). `Err` is the
/// refusal: HTTP status, InfluxDB's error code and message.
///
/// As InfluxDB 2 does it (influxdata/influxdb v2): `http/delete_handler.go` parses start
/// and stop as RFC3339Nano and hands them to the storage engine's
/// `DeleteBucketRangePredicate`, whose contract is "any data deleted must be in [min,
/// max]" — both ends included, which `verify --repair` relies on when it sends a window's
/// last nanosecond as stop. `tsdb/engine/tsm1/predicate.go` matches a series key tag by tag
/// and answers false when a compared tag never appears ("consider if the predicate
/// matches `tag1=val1` but tag1 is not present in the key"): tags the predicate does not
/// name are not looked at, so a series with more tags matches, and `tag=""` matches no
/// series at all.
fn delete(s: &mut Seen, body: &[u8]) -> Result<(), predicate::Refusal> {
    let invalid = |message: String| {
        (
            400,
            "invalid",
            format!("error decoding json body: {message}"),
        )
    };
    let request: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| invalid(e.to_string()))?;
    let time = |key: &str| -> Result<i64, predicate::Refusal> {
        let text = request[key].as_str().unwrap_or_default();
        chrono::DateTime::parse_from_rfc3339(text)
            .ok()
            .and_then(|t| t.timestamp_nanos_opt())
            .ok_or_else(|| {
                invalid(format!(
                    "invalid RFC3339Nano for field {key}, please format your time with \
                     RFC3339Nano format, example: 2009-01-02T23:00:00Z"
                ))
            })
    };
    let (start, stop) = (time("start")?, time("stop")?);
    let text = request["predicate"].as_str().unwrap_or_default();
    let rules = predicate::parse(text)?;
    for ((m, series_tags), points) in s.store.iter_mut() {
        let matches = rules.iter().all(|rule| {
            let actual = match rule.key.as_str() {
                "_measurement" => Some(m.as_str()),
                key => series_tags
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.as_str()),
            };
            match (rule.equal, actual) {
                (true, Some(actual)) => actual == rule.value,
                (true, None) => false,
                (false, actual) => actual != Some(rule.value.as_str()),
            }
        });
        if matches {
            points.retain(|t, _| *t < start || *t > stop);
        }
    }
    s.store.retain(|_, points| !points.is_empty());
    s.deletes.push(text.to_string());
    Ok(())
}

/// The query string's parameters, percent-decoded.
fn query_params(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `POST /api/v2/write`: the answer and how many lines were stored.
fn write(
    s: &mut Seen,
    method: &str,
    query: &str,
    auth: &str,
    content_encoding: Option<&str>,
    body: Vec<u8>,
) -> (Response, usize) {
    if auth != "Token secret-token" {
        return (error(401, "unauthorized", "unauthorized access"), 0);
    }
    if method != "POST" {
        return (error(405, "method not allowed", "method not allowed"), 0);
    }
    let params = query_params(query);
    let org = params.get("org").cloned().unwrap_or_default();
    if org != "acme" {
        let message = format!("organization name \"{org}\" not found");
        return (error(404, "not found", &message), 0);
    }
    let bucket = params.get("bucket").cloned().unwrap_or_default();
    if bucket != "plant" {
        let message = format!("bucket \"{bucket}\" not found");
        return (error(404, "not found", &message), 0);
    }
    let unit = match params.get("precision").map(String::as_str) {
        None | Some("ns") => 1,
        Some("us") => 1_000,
        Some("ms") => 1_000_000,
        Some("s") => 1_000_000_000,
        Some(other) => {
            let message = format!("invalid precision {other:?}: must be one of ns, us, ms, s");
            return (error(400, "invalid", &message), 0);
        }
    };
    if !s.script.is_empty() {
        return (scripted(s.script.remove(0), s.retry_after), 0);
    }
    let body = match content_encoding {
        None | Some("identity") => body,
        Some("gzip") => {
            let mut decoded = Vec::new();
            let mut decoder = flate2::read::MultiGzDecoder::new(body.as_slice());
            if let Err(e) = decoder.read_to_end(&mut decoded) {
                let message = format!("unable to decode gzipped body: {e}");
                return (error(400, "invalid", &message), 0);
            }
            decoded
        }
        Some(other) => {
            let message = format!("Content-Encoding {other} not supported");
            return (error(415, "unsupported media type", &message), 0);
        }
    };
    if s.max_body.is_some_and(|max| body.len() > max) {
        let message = "unable to read data: points batch is too large";
        return (error(413, "request too large", message), 0);
    }
    let Ok(text) = String::from_utf8(body) else {
        return (error(400, "invalid", "body is not UTF-8"), 0);
    };
    // Every line is read first; one InfluxDB cannot read refuses the whole body, nothing
    // written (http/points/points_parser.go: a parse error is EInvalid, returned before
    // PointsWriter.WritePoints runs).
    let now = now_ns();
    let mut parsed = Vec::new();
    let mut failed = Vec::new();
    for line in text.split('\n') {
        let line = line.trim_start_matches([' ', '\t']);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let result = match s.refuse.iter().any(|r| line.contains(r.as_str())) {
            true => Err("refused by the stand-in".to_string()),
            false => line_protocol::parse(line, unit, now),
        };
        match result {
            Ok(point) => parsed.push((line.to_string(), point)),
            Err(reason) => failed.push(format!("unable to parse '{line}': {reason}")),
        }
    }
    if !failed.is_empty() {
        return (error(400, "invalid", &failed.join("\n")), 0);
    }
    // Then the storage engine writes each shard's points, dropping those whose fields
    // clash with the shard's (tsdb/shard.go validateSeriesAndFields), and the first
    // failing shard's PartialWriteError is the answer: 422 (http/write_handler.go).
    parsed.sort_by_key(|(_, (_, time, _))| shard_group(*time));
    let mut stored = 0;
    let mut partial = None;
    let mut shards = parsed.into_iter().peekable();
    while let Some((line, point)) = shards.next() {
        let shard = shard_group(point.1);
        let (mut dropped, mut reason) = (0, None);
        let mut points = vec![(line, point)];
        while let Some(next) = shards.next_if(|(_, p)| shard_group(p.1) == shard) {
            points.push(next);
        }
        for (line, point) in points {
            match s.store_point(point) {
                Ok(()) => {
                    s.accepted_lines.push(line);
                    stored += 1;
                }
                Err(why) => {
                    dropped += 1;
                    reason.get_or_insert(why);
                }
            }
        }
        if let (None, Some(reason)) = (&partial, reason) {
            partial = Some(format!("partial write: {reason} dropped={dropped}"));
        }
    }
    match partial {
        None => (
            http::Response {
                status: 204,
                content_type: JSON,
                body: String::new(),
                headers: Vec::new(),
            },
            stored,
        ),
        Some(partial) => {
            let message = format!("failure writing points to database: {partial}");
            (error(422, "unprocessable entity", &message), stored)
        }
    }
}

/// Nanoseconds since the epoch, by this machine's clock.
fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// The start (ns) of the shard group a time falls in. A bucket of infinite retention (the
/// stand-in's) has shard groups of 7 days (v1/services/meta/data.go shardGroupDuration),
/// each starting at `time.Truncate(7 * 24h)`, which counts from Go's zero time, a Monday:
/// the groups run Monday to Monday, UTC (1970-01-01 was a Thursday).
pub fn shard_group(time: i64) -> i64 {
    const WEEK: i64 = 7 * 86_400 * 1_000_000_000;
    const THURSDAY: i64 = 3 * 86_400 * 1_000_000_000;
    (time + THURSDAY).div_euclid(WEEK) * WEEK - THURSDAY
}

/// InfluxDB's longest string field value (tsdb/field_validator.go MaxFieldValueLength).
const MAX_FIELD_VALUE_LENGTH: usize = 1_048_576;

/// A field type as InfluxQL names it in InfluxDB's messages.
fn type_name(value: &FieldValue) -> &'static str {
    match value {
        FieldValue::Float(_) => "float",
        FieldValue::Int(_) => "integer",
        FieldValue::UInt(_) => "unsigned",
        FieldValue::Bool(_) => "boolean",
        FieldValue::Text(_) => "string",
    }
}

/// A scripted failure with InfluxDB 2's body.
fn scripted(status: u16, retry_after: Option<u64>) -> Response {
    let mut response = match status {
        413 => error(
            413,
            "request too large",
            "unable to read data: points batch is too large",
        ),
        429 => error(
            429,
            "too many requests",
            "org acme has exceeded its write rate limit",
        ),
        500 => error(500, "internal error", "an internal error has occurred"),
        503 => error(503, "unavailable", "the service is temporarily unavailable"),
        other => error(other, "unknown", "scripted failure"),
    };
    if let (429 | 503, Some(seconds)) = (status, retry_after) {
        response.headers.push(("retry-after", seconds.to_string()));
    }
    response
}

/// What a Flux query of the known shapes asks for.
pub struct Flux {
    pub bucket: String,
    pub start: i64,
    pub stop: i64,
    pub measurement: String,
    pub shape: Shape,
    /// Further `filter` stages after the measurement's (records only): a record is kept
    /// when every one is true of it.
    pub filters: Vec<Predicate>,
}

/// A `filter(fn: (r) => ...)` body of the forms tsmig sends: `or` of `and` of
/// `r["tag"] == "value"`, `r._time == <RFC 3339 literal>`, in parentheses where needed
/// (`and` binds tighter than `or`, as in Flux).
#[derive(Debug, Clone, PartialEq)]
pub enum Predicate {
    Or(Vec<Predicate>),
    And(Vec<Predicate>),
    /// `r["key"] == "value"`: false for a record without that column (Flux reads a missing
    /// column as null, and `null == "v"` does not keep the record).
    Tag(String, String),
    /// `r._time == 2026-01-01T00:00:00Z`.
    Time(i64),
}

impl Predicate {
    /// Whether a record of a series with `tags`, at `time`, passes.
    pub fn holds(&self, tags: &[(String, String)], time: i64) -> bool {
        match self {
            Predicate::Or(any) => any.iter().any(|p| p.holds(tags, time)),
            Predicate::And(all) => all.iter().all(|p| p.holds(tags, time)),
            Predicate::Tag(k, v) => tags.iter().any(|(tk, tv)| tk == k && tv == v),
            Predicate::Time(t) => *t == time,
        }
    }

    /// Reads a filter body; `None` if it is not of the forms above.
    pub fn parse(body: &str) -> Option<Predicate> {
        let tokens = flux_tokens(body)?;
        let mut at = 0;
        let predicate = parse_or(&tokens, &mut at)?;
        (at == tokens.len()).then_some(predicate)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    Eq,
    Str(String),
    /// `r["key"]`.
    Column(String),
    Word(String),
}

fn flux_tokens(body: &str) -> Option<Vec<Token>> {
    let chars: Vec<char> = body.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    // A string literal from `chars[i]` (a quote): its text and the index past it.
    let literal = |mut i: usize| -> Option<(String, usize)> {
        let start = i;
        i += 1;
        while i < chars.len() && chars[i] != '"' {
            i += if chars[i] == '\\' { 2 } else { 1 };
        }
        let text: String = chars.get(start..=i)?.iter().collect();
        Some((flux_string(&text)?, i + 1))
    };
    while i < chars.len() {
        match chars[i] {
            c if c.is_whitespace() => i += 1,
            '(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            ')' => {
                tokens.push(Token::Close);
                i += 1;
            }
            '=' if chars.get(i + 1) == Some(&'=') => {
                tokens.push(Token::Eq);
                i += 2;
            }
            '"' => {
                let (text, next) = literal(i)?;
                tokens.push(Token::Str(text));
                i = next;
            }
            'r' if chars.get(i + 1) == Some(&'[') => {
                let (key, next) = literal(i + 2)?;
                (chars.get(next) == Some(&']')).then_some(())?;
                tokens.push(Token::Column(key));
                i = next + 1;
            }
            _ => {
                let start = i;
                while i < chars.len() && !chars[i].is_whitespace() && !"()\"=".contains(chars[i]) {
                    i += 1;
                }
                (i > start).then_some(())?;
                tokens.push(Token::Word(chars[start..i].iter().collect()));
            }
        }
    }
    Some(tokens)
}

fn parse_or(tokens: &[Token], at: &mut usize) -> Option<Predicate> {
    let mut any = vec![parse_and(tokens, at)?];
    while tokens.get(*at) == Some(&Token::Word("or".into())) {
        *at += 1;
        any.push(parse_and(tokens, at)?);
    }
    Some(if any.len() == 1 {
        any.remove(0)
    } else {
        Predicate::Or(any)
    })
}

fn parse_and(tokens: &[Token], at: &mut usize) -> Option<Predicate> {
    let mut all = vec![parse_atom(tokens, at)?];
    while tokens.get(*at) == Some(&Token::Word("and".into())) {
        *at += 1;
        all.push(parse_atom(tokens, at)?);
    }
    Some(if all.len() == 1 {
        all.remove(0)
    } else {
        Predicate::And(all)
    })
}

fn parse_atom(tokens: &[Token], at: &mut usize) -> Option<Predicate> {
    match tokens.get(*at)? {
        Token::Open => {
            *at += 1;
            let inner = parse_or(tokens, at)?;
            (tokens.get(*at) == Some(&Token::Close)).then_some(())?;
            *at += 1;
            Some(inner)
        }
        Token::Column(key) => match (tokens.get(*at + 1)?, tokens.get(*at + 2)?) {
            (Token::Eq, Token::Str(value)) => {
                *at += 3;
                Some(Predicate::Tag(key.clone(), value.clone()))
            }
            _ => None,
        },
        Token::Word(w) if w == "r._time" => match (tokens.get(*at + 1)?, tokens.get(*at + 2)?) {
            (Token::Eq, Token::Word(literal)) => {
                let time = chrono::DateTime::parse_from_rfc3339(literal)
                    .ok()?
                    .timestamp_nanos_opt()?;
                *at += 3;
                Some(Predicate::Time(time))
            }
            _ => None,
        },
        _ => None,
    }
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
    let mut filters = Vec::new();
    let shape = match rest.as_slice() {
        [] => Shape::Records,
        more if more.iter().all(|s| s.starts_with("filter(fn: (r) => ")) => {
            for stage in more {
                let body = inside(stage, "filter(fn: (r) => ")?;
                filters.push(Predicate::parse(&body).ok_or_else(unknown)?);
            }
            Shape::Records
        }
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
        filters,
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
                        if !self.filters.iter().all(|f| f.holds(tags, *time)) {
                            continue;
                        }
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
