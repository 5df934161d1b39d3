//! Sending one batch of line protocol to InfluxDB, and what the answer means.
//!
//! Version 1 is a plain `POST /write` (reqwest); version 2 goes through the influxdb2
//! crate's `write_line_protocol_with_precision`. Either way the HTTP status decides:
//! 2xx written; 413 too large (split); 429 and 5xx transient (retry, honouring
//! Retry-After where the client exposes it — influxdb2 does not); 401, 403 and 404
//! (missing database or bucket) fatal, since no row could ever be written; any other 4xx
//! a definite rejection of something in the batch.

use super::config::InfluxSinkConfig;
use crate::job::TimeUnit;
use crate::sinks::WriteError;
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
        /// The influxdb2 client.
        client: influxdb2::Client,
        /// Organization.
        org: String,
        /// Bucket.
        bucket: String,
        /// Precision sent with each write.
        precision: influxdb2::api::write::TimestampPrecision,
        /// Plain HTTP client for the delete API (influxdb2's rounds times to seconds).
        http: reqwest::Client,
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
            let mut delete_url =
                reqwest::Url::parse(&format!("{base}/api/v2/delete")).map_err(|e| e.to_string())?;
            delete_url
                .query_pairs_mut()
                .append_pair("org", &org)
                .append_pair("bucket", &bucket);
            use influxdb2::api::write::TimestampPrecision as P;
            return Ok(InfluxClient::V2 {
                client,
                org,
                bucket,
                http: reqwest::Client::builder()
                    .timeout(timeout)
                    .build()
                    .map_err(|e| e.to_string())?,
                delete_url: delete_url.into(),
                token,
                precision: match config.precision {
                    TimeUnit::Seconds => P::Seconds,
                    TimeUnit::Millis => P::Milliseconds,
                    TimeUnit::Micros => P::Microseconds,
                    TimeUnit::Nanos => P::Nanoseconds,
                },
            });
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| e.to_string())?;
        let database = config.database.clone().unwrap_or_default();
        let mut write_url =
            reqwest::Url::parse(&format!("{base}/write")).map_err(|e| e.to_string())?;
        {
            let mut q = write_url.query_pairs_mut();
            q.append_pair("db", &database);
            if let Some(rp) = &config.retention_policy {
                q.append_pair("rp", rp);
            }
            q.append_pair(
                "precision",
                match config.precision {
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
            database,
            auth: config
                .username
                .clone()
                .map(|u| (u, config.password.clone().unwrap_or_default())),
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

    /// Creates the database (version 1; `CREATE DATABASE` is idempotent there).
    pub async fn create_database(&self) -> Result<(), WriteError> {
        let InfluxClient::V1 { database, .. } = self else {
            return Ok(());
        };
        let q = format!(
            "CREATE DATABASE \"{}\"",
            database.replace('\\', "\\\\").replace('"', "\\\"")
        );
        let Some(request) = self.query(&[("q", q.as_str())]) else {
            return Ok(());
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let body = response.text().await.unwrap_or_default();
        if status.is_success() && !body.contains("\"error\"") {
            return Ok(());
        }
        Err(classify(status, &body, retry_after))
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
                let mut q = String::new();
                for p in points {
                    if !q.is_empty() {
                        q.push(';');
                    }
                    q.push_str("DELETE FROM ");
                    push_identifier(&mut q, p.measurement);
                    q.push_str(" WHERE ");
                    for (k, v) in &p.tags {
                        push_identifier(&mut q, k);
                        q.push_str(" = '");
                        q.push_str(&v.replace('\\', "\\\\").replace('\'', "\\'"));
                        q.push_str("' AND ");
                    }
                    q.push_str(&format!("time = {}", p.time));
                }
                let request = self
                    .query(&[("db", database.as_str()), ("q", q.as_str())])
                    .expect("version 1");
                let response = request.send().await.map_err(transport)?;
                let status = response.status();
                let retry_after = retry_after(response.headers());
                let body = response.text().await.unwrap_or_default();
                if status.is_success() && !body.contains("\"error\"") {
                    return Ok(());
                }
                Err(classify(status, &body, retry_after))
            }
            InfluxClient::V2 {
                http,
                delete_url,
                token,
                ..
            } => {
                for p in points {
                    let mut predicate = String::from("_measurement=\"");
                    predicate.push_str(&p.measurement.replace('"', "\\\""));
                    predicate.push('"');
                    for (k, v) in p.tags.iter().filter(|(_, v)| !v.is_empty()) {
                        predicate.push_str(&format!(" AND {}=\"{}\"", k, v.replace('"', "\\\"")));
                    }
                    let time = crate::model::format_time(p.time);
                    let body =
                        serde_json::json!({"start": time, "stop": time, "predicate": predicate});
                    let response = http
                        .post(delete_url.as_str())
                        .header("Authorization", format!("Token {token}"))
                        .json(&body)
                        .send()
                        .await
                        .map_err(transport)?;
                    let status = response.status();
                    if !status.is_success() {
                        let retry_after = retry_after(response.headers());
                        let body = response.text().await.unwrap_or_default();
                        return Err(classify(status, &body, retry_after));
                    }
                }
                Ok(())
            }
        }
    }

    /// Writes one body of line protocol.
    pub async fn write(&self, body: Bytes) -> Result<(), WriteError> {
        match self {
            InfluxClient::V1 {
                http,
                write_url,
                auth,
                ..
            } => {
                let mut request = http.post(write_url.as_str()).body(body);
                if let Some((u, p)) = auth {
                    request = request.basic_auth(u, Some(p));
                }
                let response = request.send().await.map_err(transport)?;
                let status = response.status();
                if status.is_success() {
                    return Ok(());
                }
                let retry_after = retry_after(response.headers());
                let body = response.text().await.unwrap_or_default();
                Err(classify(status, &body, retry_after))
            }
            InfluxClient::V2 {
                client,
                org,
                bucket,
                precision,
                ..
            } => {
                match client
                    .write_line_protocol_with_precision(org, bucket, body, *precision)
                    .await
                {
                    Ok(()) => Ok(()),
                    Err(influxdb2::RequestError::Http { status, text }) => {
                        Err(classify(status, &text, None))
                    }
                    Err(influxdb2::RequestError::ReqwestProcessing { source }) => {
                        Err(transport(source))
                    }
                    Err(other) => Err(WriteError::Transient {
                        message: other.to_string(),
                        retry_after: None,
                    }),
                }
            }
        }
    }
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

/// An InfluxQL identifier, double-quoted.
fn push_identifier(out: &mut String, name: &str) {
    out.push('"');
    out.push_str(&name.replace('\\', "\\\\").replace('"', "\\\""));
    out.push('"');
}

fn transport(e: reqwest::Error) -> WriteError {
    WriteError::Transient {
        message: format!("request failed: {}", without_url(&e)),
        retry_after: None,
    }
}

/// reqwest's message without the URL, which may carry credentials.
pub(super) fn without_url(e: &reqwest::Error) -> String {
    let mut message = e.to_string();
    if let Some(url) = e.url() {
        message = message.replace(url.as_str(), "<url>");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
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
}
