//! Talking to TDengine's REST interface (taosAdapter, port 6041), and what its answers mean.
//!
//! One statement is one `POST /rest/sql/<database>` with HTTP basic authentication and the
//! SQL as the body. TDengine answers JSON: `{"code": 0, "column_meta": [[name, type,
//! length], ...], "data": [[...], ...], "rows": n}` on success and `{"code": c, "desc":
//! "..."}` on failure — with HTTP 200 either way for errors of the database itself. So the
//! HTTP status decides first and the `code` second:
//!
//! - connection errors, timeouts, HTTP 408, 429 and 5xx, and the codes in
//!   [`TRANSIENT_CODES`] (or the job's `retry_codes`) are transient: the statement is sent
//!   again by [`crate::retry`], as the sinks' requests are, up to `max_retries`;
//! - a refused login — HTTP 401 (taosAdapter's own refusal of missing or malformed
//!   credentials, or TDengine's with `httpCodeServerError`) or TDengine's authentication
//!   codes — fails at once, saying so;
//! - anything else (a syntax error, a missing table) is definite and fails the job with
//!   TDengine's code and `desc`, since asking again cannot help.
//!
//! taosAdapter's `httpCodeServerError` option (off by default) answers TDengine's errors
//! with an HTTP error status instead of 200 — 400 for syntax errors, 401 for authentication,
//! 502 for TSDB_CODE_RPC_NETWORK_UNAVAIL, 500 for every other code (taosadapter
//! `controller/rest/error_resp.go` getErrorHttpStatus, `config/const.go` ErrorStatusMap) —
//! with the same `{"code", "desc"}` body. So a 500 or 502 carrying TDengine's code is
//! judged by that code, as a 200 would be: a missing table is definite, a leader election
//! transient.
//!
//! `?tz=UTC` asks for timestamps in UTC; they are converted by their own offset anyway.

use super::config::TdengineSourceConfig;
use crate::metrics::SOURCE_RETRIES;
use crate::retry::{retry, RetryError, RetryPolicy, Retryable};
use crate::sink::deliver::without_url;
use crate::source::SourceError;
use serde::Deserialize;
use serde_json::Value as Json;

/// TDengine error codes (the low 16 bits, as REST replies carry them) that mean "the
/// cluster cannot answer right now", named as in TDengine 3's `taoserror.h`. They are
/// retried like a lost connection.
pub const TRANSIENT_CODES: &[(i64, &str)] = &[
    (0x000B, "TSDB_CODE_RPC_NETWORK_UNAVAIL"),
    (0x0018, "TSDB_CODE_RPC_BROKEN_LINK"),
    (0x0019, "TSDB_CODE_RPC_TIMEOUT"),
    (0x0020, "TSDB_CODE_RPC_SOMENODE_NOT_CONNECTED"),
    (0x0024, "TSDB_CODE_RPC_NETWORK_BUSY"),
    (0x0138, "TSDB_CODE_APP_IS_STARTING"),
    (0x0139, "TSDB_CODE_APP_IS_STOPPING"),
    (0x090C, "TSDB_CODE_SYN_NOT_LEADER"),
    (0x0914, "TSDB_CODE_SYN_RESTORING"),
];

/// One column of a reply, from `column_meta`.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnMeta {
    /// Column name (or expression, e.g. `first(ts)`).
    pub name: String,
    /// TDengine's type name, e.g. `TIMESTAMP`, `NCHAR`.
    pub type_name: String,
}

/// A successful reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The result's columns.
    pub columns: Vec<ColumnMeta>,
    /// Its rows, one JSON value per column.
    pub data: Vec<Vec<Json>>,
}

impl Reply {
    /// The position of column `name` in the reply.
    pub fn column(&self, name: &str) -> Result<usize, String> {
        self.columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                let names: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
                format!(
                    "the reply has no column `{name}` (it has {})",
                    names.join(", ")
                )
            })
    }
}

/// Why one request failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// Worth sending again.
    Transient(String),
    /// Sending it again cannot help.
    Definite(String),
    /// TDengine or taosAdapter refused the user and password.
    LoginRefused(String),
}

/// TDengine's codes for a refused login (low 16 bits): TSDB_CODE_RPC_AUTH_FAILURE 0x0003,
/// TSDB_CODE_MND_USER_NOT_EXIST 0x0351, TSDB_CODE_MND_AUTH_FAILURE 0x0357 (taosadapter
/// `httperror/errors.go`, generated from TDengine's error table).
const LOGIN_REFUSED_CODES: &[i64] = &[0x0003, 0x0351, 0x0357];

/// The HTTP statuses taosAdapter's `httpCodeServerError` gives a TDengine error that is not
/// a syntax or authentication error: the body's code then decides, as with a 200.
const CODE_DECIDES: &[u16] = &[500, 502];

/// The JSON body of every REST reply.
#[derive(Deserialize)]
struct RawReply {
    code: i64,
    #[serde(default)]
    desc: Option<String>,
    #[serde(default)]
    column_meta: Vec<(String, Json, Json)>,
    #[serde(default)]
    data: Vec<Vec<Json>>,
}

/// What an answer means: HTTP status, body, and the extra transient codes of the job.
pub fn interpret(status: u16, body: &str, retry_codes: &[i64]) -> Result<Reply, Failure> {
    let parsed = serde_json::from_str::<RawReply>(body);
    if !(200..300).contains(&status) {
        let detail = match &parsed {
            Ok(r) => describe(r.code, r.desc.as_deref()),
            Err(_) => body.trim().chars().take(500).collect(),
        };
        let message = format!("HTTP {status}: {detail}");
        return Err(match (status, &parsed) {
            (401, _) => Failure::LoginRefused(message),
            (status, Ok(r)) if r.code != 0 && CODE_DECIDES.contains(&status) => {
                by_code(r.code, message, retry_codes)
            }
            (408 | 429 | 500..=599, _) => Failure::Transient(message),
            _ => Failure::Definite(message),
        });
    }
    let raw = parsed.map_err(|e| {
        // A 200 whose body is not TDengine's JSON: most likely cut off on the way.
        Failure::Transient(format!("the reply is not TDengine's JSON ({e})"))
    })?;
    if raw.code != 0 {
        let message = describe(raw.code, raw.desc.as_deref());
        return Err(by_code(raw.code, message, retry_codes));
    }
    let columns = raw
        .column_meta
        .into_iter()
        .map(|(name, type_name, _length)| ColumnMeta {
            name,
            type_name: match type_name {
                Json::String(s) => s,
                other => other.to_string(),
            },
        })
        .collect::<Vec<_>>();
    if let Some(row) = raw.data.iter().find(|r| r.len() != columns.len()) {
        return Err(Failure::Definite(format!(
            "a row of the reply has {} values for {} columns",
            row.len(),
            columns.len()
        )));
    }
    Ok(Reply {
        columns,
        data: raw.data,
    })
}

/// What TDengine's error `code` means: a refused login, "try again", or definite.
fn by_code(code: i64, message: String, retry_codes: &[i64]) -> Failure {
    if LOGIN_REFUSED_CODES.contains(&(code & 0xffff)) {
        Failure::LoginRefused(message)
    } else if TRANSIENT_CODES.iter().any(|(c, _)| *c == code & 0xffff)
        || retry_codes.contains(&code)
    {
        Failure::Transient(message)
    } else {
        Failure::Definite(message)
    }
}

/// `TDengine error 0x2600 (9728): syntax error near ...`.
fn describe(code: i64, desc: Option<&str>) -> String {
    let name = TRANSIENT_CODES
        .iter()
        .find(|(c, _)| *c == code & 0xffff)
        .map(|(_, n)| format!(" {n}"))
        .unwrap_or_default();
    format!(
        "TDengine error {:#06x} ({code}){name}: {}",
        code & 0xffff,
        desc.unwrap_or("(no description)")
    )
}

/// A connection to TDengine's REST interface for one database.
pub struct RestClient {
    http: reqwest::Client,
    /// `<url>/rest/sql/<database>?tz=UTC`.
    endpoint: String,
    /// `host:port`, for messages (the URL may carry credentials).
    host: String,
    user: String,
    password: String,
    retry: RetryPolicy,
    retry_codes: Vec<i64>,
}

impl RestClient {
    /// A client for `config` (checked by [`TdengineSourceConfig::check`]).
    pub fn new(config: &TdengineSourceConfig) -> Result<Self, String> {
        let base = reqwest::Url::parse(config.url.trim_end_matches('/'))
            .map_err(|e| format!("source.url is not a URL: {e}"))?;
        let host = format!(
            "{}:{}",
            base.host_str().unwrap_or("?"),
            base.port_or_known_default().unwrap_or(6041)
        );
        let mut endpoint = base.clone();
        endpoint
            .path_segments_mut()
            .map_err(|_| "source.url cannot have a path".to_string())?
            .pop_if_empty()
            .extend(["rest", "sql", config.database.as_str()]);
        endpoint.query_pairs_mut().append_pair("tz", "UTC");
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            http,
            endpoint: endpoint.into(),
            host,
            user: config.user.clone(),
            password: config.password.clone(),
            retry: config.retry.clone(),
            retry_codes: config.retry_codes.clone(),
        })
    }

    /// Sends one statement once.
    async fn attempt(&self, sql: &str) -> Result<Reply, Failure> {
        let response = self
            .http
            .post(&self.endpoint)
            .basic_auth(&self.user, Some(&self.password))
            .body(sql.to_string())
            .send()
            .await
            .map_err(|e| Failure::Transient(format!("request failed: {}", without_url(&e))))?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(|e| {
            Failure::Transient(format!("reading the reply failed: {}", without_url(&e)))
        })?;
        interpret(status, &body, &self.retry_codes)
    }

    /// Runs one statement, retrying transient failures ([`crate::retry`], counted in
    /// `source_retries=`); `what` says what it is for, in messages ("reading the schema of
    /// table sensors").
    pub async fn query(&self, sql: &str, what: &str) -> Result<Reply, SourceError> {
        let context = format!("TDengine at {}: {what}", self.host);
        let attempts = retry(&self.retry, &context, SOURCE_RETRIES.as_atomic(), || {
            self.attempt(sql)
        })
        .await;
        attempts.map_err(|e| match e {
            RetryError::Exhausted(exhausted) => SourceError::Server(exhausted.to_string()),
            RetryError::Final(Failure::Transient(message)) => {
                SourceError::Server(format!("{context}: {message}"))
            }
            RetryError::Final(Failure::Definite(message)) => {
                SourceError::Fatal(format!("{context}: {message} (statement: {sql})"))
            }
            // Fatal, not transient: restarting the job cannot change the password.
            RetryError::Final(Failure::LoginRefused(message)) => SourceError::Fatal(format!(
                "TDengine at {} refused the login of user `{}` ({what}): {message}; \
                 check source.user and source.password",
                self.host, self.user
            )),
        })
    }
}

/// Only [`Failure::Transient`] is sent again.
impl Retryable for Failure {
    fn is_transient(&self) -> bool {
        matches!(self, Failure::Transient(_))
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Transient(m) | Failure::Definite(m) | Failure::LoginRefused(m) => {
                f.write_str(m)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read_and_classified() {
        let ok = interpret(
            200,
            r#"{"code":0,"column_meta":[["ts","TIMESTAMP",8],["v","FLOAT",4]],"data":[["2026-01-01T00:00:00.000Z",21.5]],"rows":1}"#,
            &[],
        )
        .unwrap();
        assert_eq!(ok.columns[1].type_name, "FLOAT");
        assert_eq!(ok.data[0][1], serde_json::json!(21.5));
        assert_eq!(ok.column("V"), Ok(1));

        let syntax = interpret(
            200,
            r#"{"code":9728,"desc":"syntax error near \"x\""}"#,
            &[],
        );
        assert_eq!(
            syntax,
            Err(Failure::Definite(
                "TDengine error 0x2600 (9728): syntax error near \"x\"".into()
            ))
        );
        assert!(matches!(
            interpret(200, r#"{"code":11,"desc":"Unable to establish connection"}"#, &[]),
            Err(Failure::Transient(m)) if m.contains("TSDB_CODE_RPC_NETWORK_UNAVAIL")
        ));
        assert!(matches!(
            interpret(200, r#"{"code":1234,"desc":"busy"}"#, &[1234]),
            Err(Failure::Transient(_))
        ));
        assert!(matches!(
            interpret(500, "oops", &[]),
            Err(Failure::Transient(m)) if m == "HTTP 500: oops"
        ));
        assert!(matches!(
            interpret(401, r#"{"code":855,"desc":"Authentication failure"}"#, &[]),
            Err(Failure::LoginRefused(m)) if m == "HTTP 401: TDengine error 0x0357 (855): Authentication failure"
        ));
        assert!(matches!(
            interpret(401, r#"{"code":4357,"desc":"no auth info input"}"#, &[]),
            Err(Failure::LoginRefused(_))
        ));
        assert!(matches!(
            interpret(200, r#"{"code":855,"desc":"Authentication failure"}"#, &[]),
            Err(Failure::LoginRefused(_))
        ));
        // httpCodeServerError: TDengine's code in a 500 or 502 decides.
        assert_eq!(
            interpret(
                500,
                r#"{"code":9731,"desc":"Table does not exist: d1"}"#,
                &[]
            ),
            Err(Failure::Definite(
                "HTTP 500: TDengine error 0x2603 (9731): Table does not exist: d1".into()
            ))
        );
        assert!(matches!(
            interpret(
                500,
                r#"{"code":2316,"desc":"Sync leader is unreachable"}"#,
                &[]
            ),
            Err(Failure::Transient(_))
        ));
        assert!(matches!(
            interpret(500, r#"{"code":1234,"desc":"busy"}"#, &[1234]),
            Err(Failure::Transient(_))
        ));
        assert!(matches!(
            interpret(
                502,
                r#"{"code":11,"desc":"Unable to establish connection"}"#,
                &[]
            ),
            Err(Failure::Transient(_))
        ));
        assert!(matches!(
            interpret(
                400,
                r#"{"code":9728,"desc":"syntax error near \"x\""}"#,
                &[]
            ),
            Err(Failure::Definite(_))
        ));
        // taosAdapter's own 503 (its connection pool is exhausted) is transient whatever
        // the body says.
        assert!(matches!(
            interpret(
                503,
                r#"{"code":65535,"desc":"get connection timeout"}"#,
                &[]
            ),
            Err(Failure::Transient(_))
        ));
        assert!(matches!(
            interpret(
                200,
                r#"{"code":0,"column_meta":[["a","INT",4]],"data":[[1,2]]}"#,
                &[]
            ),
            Err(Failure::Definite(_))
        ));
        assert!(matches!(
            interpret(200, r#"{"code":0,"colu"#, &[]),
            Err(Failure::Transient(_))
        ));
    }
}
