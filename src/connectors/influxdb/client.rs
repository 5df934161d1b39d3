//! Sending one batch of line protocol to InfluxDB, and what the answer means.
//!
//! Both versions write with one plain reqwest `POST`: version 1 to `/write?db=&rp=` with
//! basic auth, version 2 to `/api/v2/write?org=&bucket=&precision=` with
//! `Authorization: Token`, its body gzipped unless `gzip: false`. The influxdb2 crate is
//! used for Flux queries only: its write API (0.5) drops the response headers
//! (`RequestError::Http` keeps status and text), so a 429's Retry-After would be lost, and it
//! gzips only its `DataPoint` stream API, not line protocol. Either way the HTTP status
//! decides: 2xx written; 413 too large (split); 429 and 5xx transient (retry with backoff,
//! never sooner than Retry-After); 401, 403 and 404 (missing database, org or bucket)
//! fatal, since no row could ever be written; any other 4xx a definite rejection of
//! something in the batch, which [`deliver`](crate::sink::deliver::deliver) bisects: 400 for
//! a line InfluxDB cannot parse (InfluxDB 2 then writes nothing of the body; 1.x writes the
//! other lines, its "partial write"), 422 for InfluxDB 2's partial write (points it dropped,
//! a field type conflict; the others written).

use super::sink_config::InfluxSinkConfig;
use crate::job::TimeUnit;
pub(super) use crate::sink::deliver::without_url;
use crate::sink::WriteError;
use bytes::Bytes;
use reqwest::StatusCode;
use std::time::Duration;

/// A connection to one InfluxDB server.
pub enum InfluxClient {
    /// InfluxDB 1.x.
    V1 {
        /// HTTP client with the request timeout.
        http: reqwest::Client,
        /// `<url>/write?db=..&rp=..&precision=..`.
        write_url: String,
        /// `<url>/query`.
        query_url: String,
        /// Database name.
        database: String,
        /// Basic-auth user and password.
        auth: Option<(String, String)>,
    },
    /// InfluxDB 2.x.
    V2 {
        /// The influxdb2 client (Flux queries).
        client: influxdb2::Client,
        /// Organization.
        org: String,
        /// Bucket.
        bucket: String,
        /// Plain HTTP client for writes and the delete API (influxdb2's delete rounds times
        /// to seconds, and its write hides Retry-After).
        http: reqwest::Client,
        /// `<url>/api/v2/write?org=..&bucket=..&precision=..`.
        write_url: String,
        /// Whether write bodies are sent gzipped.
        gzip: bool,
        /// `<url>/api/v2/delete?org=..&bucket=..`.
        delete_url: String,
        /// API token.
        token: String,
    },
}

impl InfluxClient {
    /// A client for `config` (checked by [`InfluxSinkConfig::check`]).
    pub fn new(config: &InfluxSinkConfig, timeout: std::time::Duration) -> Result<Self, String> {
        let base = config.url.trim_end_matches('/');
        if config.version == 2 {
            reqwest::Url::parse(base).map_err(|e| format!("sink.url is not a URL: {e}"))?;
            let org = config.org.clone().unwrap_or_default();
            let token = config.token.clone().unwrap_or_default();
            let builder = reqwest::Client::builder().timeout(timeout);
            let client = influxdb2::ClientBuilder::with_builder(builder, base, &org, &token)
                .build()
                .map_err(|e| e.to_string())?;
            let bucket = config.bucket.clone().unwrap_or_default();
            // `<url>/api/v2/<path>?org=..&bucket=..[&precision=..]`.
            let v2_url = |path: &str, precision: Option<&str>| -> Result<String, String> {
                let mut url = reqwest::Url::parse(&format!("{base}/api/v2/{path}"))
                    .map_err(|e| e.to_string())?;
                {
                    let mut q = url.query_pairs_mut();
                    q.append_pair("org", &org).append_pair("bucket", &bucket);
                    if let Some(precision) = precision {
                        q.append_pair("precision", precision);
                    }
                }
                Ok(url.into())
            };
            let precision = match config.precision {
                TimeUnit::Seconds => "s",
                TimeUnit::Millis => "ms",
                TimeUnit::Micros => "us",
                TimeUnit::Nanos => "ns",
            };
            return Ok(InfluxClient::V2 {
                write_url: v2_url("write", Some(precision))?,
                delete_url: v2_url("delete", None)?,
                gzip: config.gzip,
                client,
                org,
                bucket,
                http: reqwest::Client::builder()
                    .timeout(timeout)
                    .build()
                    .map_err(|e| e.to_string())?,
                token,
            });
        }
        Self::v1(
            base,
            config.database.as_deref().unwrap_or_default(),
            config.retention_policy.as_deref(),
            config.precision,
            config
                .username
                .clone()
                .map(|u| (u, config.password.clone().unwrap_or_default())),
            timeout,
        )
    }

    /// A client of InfluxDB 1.x at `base` (no trailing slash) for `database`, writing to
    /// retention policy `rp` at `precision`; `timeout` bounds each whole request. The
    /// InfluxDB 1.x source reads through the same client.
    pub fn v1(
        base: &str,
        database: &str,
        rp: Option<&str>,
        precision: TimeUnit,
        auth: Option<(String, String)>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| e.to_string())?;
        let mut write_url =
            reqwest::Url::parse(&format!("{base}/write")).map_err(|e| e.to_string())?;
        {
            let mut q = write_url.query_pairs_mut();
            q.append_pair("db", database);
            if let Some(rp) = rp {
                q.append_pair("rp", rp);
            }
            q.append_pair(
                "precision",
                match precision {
                    TimeUnit::Seconds => "s",
                    TimeUnit::Millis => "ms",
                    TimeUnit::Micros => "u",
                    TimeUnit::Nanos => "ns",
                },
            );
        }
        Ok(InfluxClient::V1 {
            http,
            write_url: write_url.into(),
            query_url: format!("{base}/query"),
            database: database.to_string(),
            auth,
        })
    }

    /// An InfluxQL request to `/query` with `params` (version 1 only).
    pub fn query(&self, params: &[(&str, &str)]) -> Option<reqwest::RequestBuilder> {
        let InfluxClient::V1 {
            http,
            query_url,
            auth,
            ..
        } = self
        else {
            return None;
        };
        let mut request = http.post(query_url.as_str()).form(params);
        if let Some((u, p)) = auth {
            request = request.basic_auth(u, Some(p));
        }
        Some(request)
    }

    /// Sends an InfluxQL query (version 1) asking for a chunked answer with times in
    /// nanoseconds, `chunk_size` rows per chunk; `stall` bounds the wait for each chunk.
    pub async fn query_chunked_answer(
        &self,
        q: &str,
        chunk_size: usize,
        stall: Option<Duration>,
    ) -> Result<ChunkedAnswer, QueryError> {
        let InfluxClient::V1 { database, .. } = self else {
            return Err(QueryError::Definite(
                "InfluxQL queries need InfluxDB 1.x".into(),
            ));
        };
        let chunk_size = chunk_size.to_string();
        let params = [
            ("db", database.as_str()),
            ("q", q),
            ("epoch", "ns"),
            ("chunked", "true"),
            ("chunk_size", chunk_size.as_str()),
        ];
        let request = self
            .query(&params)
            .ok_or_else(|| QueryError::Definite("not InfluxDB 1.x".into()))?;
        let response = within(stall, "no answer within", request.send())
            .await?
            .map_err(|e| {
                QueryError::Transient(format!("querying InfluxDB: {}", without_url(&e)))
            })?;
        let status = response.status();
        let response = answered(response).await.map_err(|e| match e {
            WriteError::Transient { message, .. } => QueryError::Transient(message),
            WriteError::TooLarge { message }
            | WriteError::Rejected { message }
            | WriteError::Fatal { message } => QueryError::Definite(message),
            WriteError::Partial { .. } => QueryError::Definite(format!("HTTP {status}")),
        })?;
        Ok(ChunkedAnswer {
            response,
            pending: Vec::new(),
            stall,
        })
    }

    /// Creates the database (version 1; `CREATE DATABASE` is idempotent there).
    pub async fn create_database(&self) -> Result<(), WriteError> {
        let InfluxClient::V1 { database, .. } = self else {
            return Ok(());
        };
        let q = format!("CREATE DATABASE {}", quote_ident(database));
        let Some(request) = self.query(&[("q", q.as_str())]) else {
            return Ok(());
        };
        statement(request).await
    }

    /// Deletes exactly the point of each `(measurement, tags, time)`: in 1.x one `DELETE`
    /// statement per point whose predicate names every tag key of the measurement (a
    /// missing tag as `''`, so a series with more tags is not touched); in 2.x one call of
    /// the delete API per point, with start = stop = its time to the nanosecond. The 2.x
    /// predicate language cannot say "tag absent": there, a point of a series with more
    /// tags at the same time is deleted too.
    pub async fn delete(&self, points: &[DeleteKey<'_>]) -> Result<(), WriteError> {
        match self {
            InfluxClient::V1 { database, .. } => {
                let statements = points.iter().map(|p| {
                    on_series(
                        "DELETE",
                        p.measurement,
                        &p.tags,
                        &format!("time = {}", p.time),
                    )
                });
                self.statements(database, statements).await
            }
            InfluxClient::V2 { .. } => {
                for p in points {
                    let time = crate::model::format_time(p.time);
                    self.v2_delete(&time, &time, &v2_predicate(p.measurement, &p.tags))
                        .await?;
                }
                Ok(())
            }
        }
    }

    /// Deletes every point of each range's series with a time in `[start, end)`. 1.x: one
    /// `DELETE ... WHERE <every tag key> AND time >= start AND time < end` per range, a
    /// missing tag as `''` as in [`Self::delete`], so exactly that series is touched. 2.x:
    /// one call of the delete API per range, with `stop` the range's last nanosecond:
    /// InfluxDB 2 deletes `[start, stop]`, both ends included (the storage engine's
    /// `DeleteBucketRangePredicate`, "any data deleted must be in [min, max]"). Its
    /// predicate cannot say "tag absent", so a series with more tags loses the range too
    /// ([`crate::sink::Sink::range_deletes_tag_supersets`]).
    pub async fn delete_ranges(&self, ranges: &[RangeKey<'_>]) -> Result<(), WriteError> {
        match self {
            InfluxClient::V1 { database, .. } => {
                let statements = ranges.iter().map(|r| {
                    let times = format!("time >= {} AND time < {}", r.start, r.end);
                    on_series("DELETE", r.measurement, &r.tags, &times)
                });
                self.statements(database, statements).await
            }
            InfluxClient::V2 { .. } => {
                for r in ranges {
                    if r.end <= r.start {
                        continue;
                    }
                    let start = crate::model::format_time(r.start);
                    let stop = crate::model::format_time(r.end - 1);
                    self.v2_delete(&start, &stop, &v2_predicate(r.measurement, &r.tags))
                        .await?;
                }
                Ok(())
            }
        }
    }

    /// For each of `points` (each naming every tag key of its measurement, an absent one as
    /// `""`, and some fields), whether the server holds any of those fields at exactly that
    /// series and time (version 1). One request, one `SELECT "field",...` statement per
    /// point (InfluxQL answers a row only where a selected field has a value): InfluxQL answers
    /// nothing at all to `time = a OR time = b` (its docs: "InfluxDB does not support
    /// using OR in the WHERE clause to specify multiple time ranges"; 1.6 answers an empty
    /// result), so each time is a statement of its own, answering one row at most.
    pub async fn existing(
        &self,
        points: &[(DeleteKey<'_>, Vec<&str>)],
    ) -> Result<Vec<bool>, WriteError> {
        let InfluxClient::V1 { database, .. } = self else {
            return Err(WriteError::Fatal {
                message: "InfluxQL queries need InfluxDB 1.x".into(),
            });
        };
        if points.is_empty() {
            return Ok(Vec::new());
        }
        let q: Vec<String> = points
            .iter()
            .map(|(p, fields)| {
                let fields: Vec<String> = fields.iter().map(|f| quote_ident(f)).collect();
                let select = if fields.is_empty() {
                    "SELECT *".to_string()
                } else {
                    format!("SELECT {}", fields.join(","))
                };
                on_series(
                    &select,
                    p.measurement,
                    &p.tags,
                    &format!("time = {}", p.time),
                )
            })
            .collect();
        let q = q.join(";");
        let request = self
            .query(&[
                ("db", database.as_str()),
                ("q", q.as_str()),
                ("epoch", "ns"),
            ])
            .expect("version 1");
        let body = send(request).await?.text().await.unwrap_or_default();
        let json: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| WriteError::Transient {
                message: format!("InfluxDB's answer is not JSON: {e}"),
                retry_after: None,
            })?;
        let mut found = vec![false; points.len()];
        for result in json["results"].as_array().into_iter().flatten() {
            if let Some(error) = result.get("error").and_then(|e| e.as_str()) {
                return Err(statement_error(error));
            }
            let answered = result["series"].as_array().is_some_and(|s| {
                s.iter()
                    .any(|s| s["values"].as_array().is_some_and(|v| !v.is_empty()))
            });
            let at = result["statement_id"].as_u64().unwrap_or(u64::MAX) as usize;
            match found.get_mut(at) {
                Some(slot) => *slot = answered,
                None => {
                    return Err(WriteError::Fatal {
                        message: format!("InfluxDB answered statement {at} of {}", points.len()),
                    })
                }
            }
        }
        Ok(found)
    }

    /// Runs `statements` that answer no data in `database`, in one request (version 1).
    async fn statements(
        &self,
        database: &str,
        statements: impl Iterator<Item = String>,
    ) -> Result<(), WriteError> {
        let q = statements.collect::<Vec<_>>().join(";");
        let request = self.query(&[("db", database), ("q", q.as_str())]);
        statement(request.expect("version 1")).await
    }

    /// One call of InfluxDB 2's delete API: the points in `[start, stop]` (RFC 3339, both
    /// included) of the series `predicate` matches.
    async fn v2_delete(&self, start: &str, stop: &str, predicate: &str) -> Result<(), WriteError> {
        let InfluxClient::V2 {
            http,
            delete_url,
            token,
            ..
        } = self
        else {
            return Err(WriteError::Fatal {
                message: "the delete API needs InfluxDB 2".into(),
            });
        };
        let body = serde_json::json!({"start": start, "stop": stop, "predicate": predicate});
        let request = http
            .post(delete_url.as_str())
            .header("Authorization", format!("Token {token}"))
            .json(&body);
        send(request).await.map(drop)
    }

    /// Writes one body of line protocol.
    pub async fn write(&self, body: Bytes) -> Result<(), WriteError> {
        let request = match self {
            InfluxClient::V1 {
                http,
                write_url,
                auth,
                ..
            } => {
                let request = http.post(write_url.as_str()).body(body);
                match auth {
                    Some((u, p)) => request.basic_auth(u, Some(p)),
                    None => request,
                }
            }
            InfluxClient::V2 {
                http,
                write_url,
                token,
                gzip,
                ..
            } => {
                let request = http
                    .post(write_url.as_str())
                    .header(reqwest::header::AUTHORIZATION, format!("Token {token}"));
                if *gzip {
                    request
                        .header(reqwest::header::CONTENT_ENCODING, "gzip")
                        .body(gzipped_off_runtime(body).await?)
                } else {
                    request.body(body)
                }
            }
        };
        send(request).await.map(drop)
    }
}

/// `body` gzipped, on the runtime's blocking pool: compressing a batch takes milliseconds
/// of CPU, which would hold up every other task on an async thread (the sink's other
/// requests, the source's reads).
async fn gzipped_off_runtime(body: Bytes) -> Result<Vec<u8>, WriteError> {
    tokio::task::spawn_blocking(move || gzipped(&body))
        .await
        .map_err(|e| WriteError::Fatal {
            message: format!("gzipping a request body failed: {e}"),
        })
}

/// `body` gzipped, at the fastest level: line protocol shrinks several times even so, and
/// the sink's CPU is better spent encoding.
fn gzipped(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    encoder.write_all(body).expect("writing to memory");
    encoder.finish().expect("writing to memory")
}

/// One point to delete: its series (every tag key of the measurement; `""` for a tag the
/// point does not have) and time in nanoseconds.
pub struct DeleteKey<'a> {
    /// Measurement.
    pub measurement: &'a str,
    /// Every tag key of the measurement with the point's value.
    pub tags: Vec<(&'a str, &'a str)>,
    /// Nanoseconds since the epoch.
    pub time: i64,
}

/// One series' points in `[start, end)` to delete: every tag key of the measurement
/// (`""` for a tag the series does not have) and the range in nanoseconds.
pub struct RangeKey<'a> {
    /// Measurement.
    pub measurement: &'a str,
    /// Every tag key of the measurement with the series' value.
    pub tags: Vec<(&'a str, &'a str)>,
    /// First time deleted.
    pub start: i64,
    /// Just past the last time deleted.
    pub end: i64,
}

/// InfluxDB 2's delete predicate for the series of `measurement` with `tags` (and any
/// series with more tags: absent tags, `""`, are left out, as the language cannot say
/// them): `_measurement="m" AND "tag"="value" AND ...`.
///
/// InfluxDB 2 reads the predicate with InfluxQL's scanner, twice (`http/delete_handler.go`:
/// `predicate.Parse` of `predicate/parser.go`, then `influxql.ParseExpr`). A tag key is a
/// bare identifier there only if it is ASCII letters, digits and `_` and no keyword; a key
/// such as `site-id`, `site id` or `name` (a keyword: "found NAME, expected identifier")
/// is refused unless double-quoted, so every tag key is. A value is an identifier too
/// (single quotes are refused), and inside double quotes InfluxQL reads `\\`, `\"` and
/// `\n` and refuses any other escape, so a backslash must be doubled.
fn v2_predicate(measurement: &str, tags: &[(&str, &str)]) -> String {
    let mut predicate = format!("_measurement={}", predicate_ident(measurement));
    for (k, v) in tags.iter().filter(|(_, v)| !v.is_empty()) {
        predicate.push_str(&format!(
            " AND {}={}",
            predicate_ident(k),
            predicate_ident(v)
        ));
    }
    predicate
}

/// `text` as an InfluxQL double-quoted identifier, for a delete predicate.
fn predicate_ident(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An InfluxQL identifier (database, measurement, tag or field key) in double quotes.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

/// An InfluxQL string literal (a tag value) in single quotes.
pub fn quote_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The InfluxQL predicate selecting exactly one series: every tag key of the measurement
/// with the series' value, a tag the series lacks as `''` (how InfluxQL matches a series
/// without it, so a series with more tags is not selected).
pub fn series_predicate(tags: &[(&str, &str)]) -> String {
    tags.iter()
        .map(|(k, v)| format!("{} = {}", quote_ident(k), quote_literal(v)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// `<verb> FROM <measurement> WHERE <series> AND <times>`: an InfluxQL statement on exactly
/// the one series of `tags` ([`series_predicate`]) at `times`.
fn on_series(verb: &str, measurement: &str, tags: &[(&str, &str)], times: &str) -> String {
    let mut q = format!("{verb} FROM {} WHERE ", quote_ident(measurement));
    if !tags.is_empty() {
        q.push_str(&series_predicate(tags));
        q.push_str(" AND ");
    }
    q.push_str(times);
    q
}

/// How an InfluxQL query failed.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryError {
    /// Worth asking again: network, timeouts, a stalled answer, 429, 5xx.
    Transient(String),
    /// The query or the server's answer is wrong for good (bad query, missing database,
    /// refused login, an answer that is not JSON).
    Definite(String),
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryError::Transient(m) | QueryError::Definite(m) => f.write_str(m),
        }
    }
}

impl From<QueryError> for String {
    fn from(e: QueryError) -> String {
        e.to_string()
    }
}

/// An InfluxQL answer read as it arrives: with `chunked=true` InfluxDB 1.x sends one JSON
/// object per line, each holding at most `chunk_size` rows of one series, so no more than
/// one chunk is ever held here.
pub struct ChunkedAnswer {
    response: reqwest::Response,
    /// Bytes received past the last complete line.
    pending: Vec<u8>,
    stall: Option<Duration>,
}

impl ChunkedAnswer {
    /// The next chunk, `None` at the end of the answer. A chunk that carries an error (the
    /// query failed on the server) is a definite error.
    pub async fn next(&mut self) -> Result<Option<serde_json::Value>, QueryError> {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return parse_chunk(&line).map(Some);
            }
            let read = self.response.chunk();
            let bytes = within(self.stall, "the answer stalled for", read)
                .await?
                .map_err(|e| {
                    QueryError::Transient(format!("reading InfluxDB's answer: {}", without_url(&e)))
                })?;
            match bytes {
                Some(bytes) => self.pending.extend_from_slice(&bytes),
                None if self.pending.iter().all(u8::is_ascii_whitespace) => return Ok(None),
                None => {
                    let rest = std::mem::take(&mut self.pending);
                    return parse_chunk(&rest).map(Some);
                }
            }
        }
    }
}

/// `answer` awaited for at most `stall` when set; past it, a transient error: `waited` and
/// the limit ("no answer within 5s").
async fn within<T>(
    stall: Option<Duration>,
    waited: &str,
    answer: impl std::future::Future<Output = T>,
) -> Result<T, QueryError> {
    let Some(limit) = stall else {
        return Ok(answer.await);
    };
    tokio::time::timeout(limit, answer).await.map_err(|_| {
        QueryError::Transient(format!("{waited} {}", humantime::format_duration(limit)))
    })
}

/// The column names of one series of an answer (`time` first).
pub fn series_columns(series: &serde_json::Value) -> Vec<&str> {
    series["columns"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c.as_str())
        .collect()
}

/// One line of a chunked answer.
fn parse_chunk(line: &[u8]) -> Result<serde_json::Value, QueryError> {
    let json: serde_json::Value = serde_json::from_slice(line)
        .map_err(|e| QueryError::Definite(format!("InfluxDB's answer is not JSON: {e}")))?;
    if let Some(error) = json["results"][0]
        .get("error")
        .or_else(|| json.get("error"))
    {
        let text = error
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| error.to_string());
        return Err(QueryError::Definite(format!("InfluxDB: {text}")));
    }
    Ok(json)
}

/// Sends an InfluxQL request whose answer carries no data: an error in the body (InfluxDB
/// answers 200 with `"error"` for a statement that failed) counts as a failure.
async fn statement(request: reqwest::RequestBuilder) -> Result<(), WriteError> {
    let body = send(request).await?.text().await.unwrap_or_default();
    if body.contains("\"error\"") {
        return Err(statement_error(&body));
    }
    Ok(())
}

/// Sends `request`: the answer when its status is 2xx, else what [`answered`] makes of it;
/// no answer at all (the network, the timeout) is transient.
async fn send(request: reqwest::RequestBuilder) -> Result<reqwest::Response, WriteError> {
    answered(request.send().await.map_err(transport)?).await
}

/// `response` when its status is 2xx, else what [`classify`] makes of the status, the
/// server's message in the body and its Retry-After.
async fn answered(response: reqwest::Response) -> Result<reqwest::Response, WriteError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = retry_after(response.headers());
    let body = response.text().await.unwrap_or_default();
    Err(classify(status, &body, retry_after))
}

/// A statement InfluxDB answered 200 with an error: a closing shard or a timeout is worth
/// another try, a missing database stops the job, anything else refuses the statement.
fn statement_error(body: &str) -> WriteError {
    let text = server_message(body);
    let message = format!("HTTP 200: {text}");
    if text.contains("database not found") {
        WriteError::Fatal { message }
    } else if ["engine is closed", "timeout", "shard is closed", "too many"]
        .iter()
        .any(|t| text.contains(t))
    {
        WriteError::Transient {
            message,
            retry_after: None,
        }
    } else {
        WriteError::Rejected { message }
    }
}

fn transport(e: reqwest::Error) -> WriteError {
    WriteError::Transient {
        message: format!("request failed: {}", without_url(&e)),
        retry_after: None,
    }
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// What an HTTP error status means for the batch.
pub fn classify(status: StatusCode, body: &str, retry_after: Option<Duration>) -> WriteError {
    let message = format!("HTTP {}: {}", status.as_u16(), server_message(body));
    match status.as_u16() {
        413 => WriteError::TooLarge { message },
        429 | 500..=599 | 408 => WriteError::Transient {
            message,
            retry_after,
        },
        401 | 403 | 404 => WriteError::Fatal { message },
        _ => WriteError::Rejected { message },
    }
}

/// The `error` (1.x) or `message` (2.x) of a JSON error body, else the body itself.
pub(super) fn server_message(body: &str) -> String {
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(body) {
        for key in ["error", "message"] {
            if let Some(text) = json.get(key).and_then(|v| v.as_str()) {
                return text.to_string();
            }
        }
    }
    body.trim().chars().take(2000).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_is_named_by_every_tag_absent_ones_as_empty() {
        assert_eq!(
            series_predicate(&[("host", "a'b\\c"), ("region", "")]),
            r#""host" = 'a\'b\\c' AND "region" = ''"#
        );
    }

    #[test]
    fn a_statement_names_its_one_series_and_times() {
        assert_eq!(
            on_series(
                "DELETE",
                "cpu",
                &[("host", "a"), ("region", "")],
                "time = 5"
            ),
            r#"DELETE FROM "cpu" WHERE "host" = 'a' AND "region" = '' AND time = 5"#
        );
        assert_eq!(
            on_series(
                "SELECT \"f\",\"g\"",
                "m \"x\"",
                &[],
                "time >= 1 AND time < 2"
            ),
            r#"SELECT "f","g" FROM "m \"x\"" WHERE time >= 1 AND time < 2"#
        );
    }

    #[test]
    fn a_delete_predicate_quotes_every_tag_key_and_escapes_values() {
        assert_eq!(
            v2_predicate(
                "cpu \"a\"",
                &[
                    ("name", "x"),
                    ("site-id", "a\\b"),
                    ("site id", "q\"r"),
                    ("gone", "")
                ]
            ),
            r#"_measurement="cpu \"a\"" AND "name"="x" AND "site-id"="a\\b" AND "site id"="q\"r""#
        );
    }

    #[test]
    fn statement_errors_are_classified() {
        let body = |e: &str| format!("{{\"results\":[{{\"statement_id\":0,\"error\":\"{e}\"}}]}}");
        assert!(matches!(
            statement_error(&body("engine is closed")),
            WriteError::Transient { .. }
        ));
        assert!(matches!(
            statement_error(&body("database not found: x")),
            WriteError::Fatal { .. }
        ));
        assert!(matches!(
            statement_error(&body("error parsing query")),
            WriteError::Rejected { .. }
        ));
    }

    #[test]
    fn statuses_are_classified() {
        let c = |s: u16, body: &str| classify(StatusCode::from_u16(s).unwrap(), body, None);
        assert!(matches!(c(413, ""), WriteError::TooLarge { .. }));
        assert!(matches!(c(429, ""), WriteError::Transient { .. }));
        assert!(matches!(c(503, ""), WriteError::Transient { .. }));
        assert!(matches!(c(401, ""), WriteError::Fatal { .. }));
        assert!(
            matches!(c(404, "{\"error\":\"database not found: \\\"x\\\"\"}"), WriteError::Fatal { message } if message == "HTTP 404: database not found: \"x\"")
        );
        assert!(
            matches!(c(400, "{\"code\":\"invalid\",\"message\":\"partial write\"}"), WriteError::Rejected { message } if message == "HTTP 400: partial write")
        );
        assert!(matches!(c(422, "nope"), WriteError::Rejected { .. }));
    }

    #[test]
    fn a_429_keeps_its_retry_after_and_a_gzipped_body_decodes_to_the_lines() {
        let wait = Some(Duration::from_secs(2));
        let body = r#"{"code":"too many requests","message":"slow down"}"#;
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, body, wait),
            WriteError::Transient {
                message: "HTTP 429: slow down".into(),
                retry_after: wait
            }
        );
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::RETRY_AFTER, " 7 ".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));

        let lines = b"m,t=a f=1 1\nm,t=b f=2i 2\n".repeat(100);
        let zipped = gzipped(&lines);
        assert_eq!(&zipped[..2], &[0x1f, 0x8b], "a gzip member");
        let mut decoded = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(zipped.as_slice()),
            &mut decoded,
        )
        .unwrap();
        assert_eq!(decoded, lines);
    }

    #[tokio::test]
    async fn an_answer_past_its_stall_limit_is_transient() {
        let limit = Some(Duration::from_millis(10));
        assert_eq!(
            within(limit, "no answer within", std::future::pending::<()>()).await,
            Err(QueryError::Transient("no answer within 10ms".into()))
        );
        assert_eq!(within(limit, "stalled for", async { 7 }).await, Ok(7));
        let slow = tokio::time::sleep(Duration::from_millis(30));
        assert_eq!(within(None, "stalled for", slow).await, Ok(()));
    }

    #[tokio::test]
    async fn a_body_gzipped_on_the_blocking_pool_is_the_same_bytes() {
        let lines = Bytes::from(b"m,t=a f=1 1\nm,t=b f=2i 2\n".repeat(1000));
        let zipped = gzipped_off_runtime(lines.clone()).await.unwrap();
        assert_eq!(zipped, gzipped(&lines));
        assert!(zipped.len() < lines.len() / 10, "{} bytes", zipped.len());
        let mut decoded = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(zipped.as_slice()),
            &mut decoded,
        )
        .unwrap();
        assert_eq!(decoded, lines);
    }
}
