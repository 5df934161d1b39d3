//! A STAND-IN for TDengine's REST interface — not TDengine. No TDengine server can be
//! installed where the tests run, so this in-process HTTP server speaks the wire format of
//! taosAdapter's REST API (TDengine 3): `POST /rest/sql[/<db>][?tz=...]` with HTTP basic
//! authentication and one SQL statement as the body, answered with
//! `{"code":0,"column_meta":[[name,type,length],...],"data":[[...],...],"rows":n}` or, for
//! an error of the database, `{"code":c,"desc":"..."}` with HTTP 200, as taosAdapter does
//! by default — or, with [`Options::http_code_server_error`] (taosAdapter's
//! `httpCodeServerError`), with the HTTP status taosAdapter maps the code to (400, 401, 502,
//! else 500). A missing or malformed Authorization header is a 401 either way; a wrong
//! password is TDengine's error 0x0357 "Authentication failure", 200 by default and 401
//! with `httpCodeServerError`.
//! It keeps databases, super tables with tags and sub-tables, and plain tables in memory
//! for tests to fill and read back.
//!
//! ```text
//!  reqwest ──HTTP/1.1──► accept thread ──► one thread per connection (keep-alive)
//!                                             basic auth (user/password)      → 401, or 0x0357
//!                                               (200, or 401 with httpCodeServerError)
//!                                             faults: 500s, error codes, delays, hang-ups,
//!                                               replies cut at a row limit
//!                                             parse the SQL subset            sql.rs
//!                                             evaluate over memory            store.rs
//!                                             write TDengine's JSON           (below)
//! ```
//!
//! Replies look like taosAdapter's: TIMESTAMP as RFC 3339 text with the database's
//! precision digits (in UTC with `?tz=UTC`, else at +08:00, the stand-in's "server zone"),
//! FLOAT as the shortest decimal of its f32, DOUBLE as the shortest of its f64, NCHAR and
//! VARCHAR as JSON strings, a JSON tag as its JSON, NULL as null. Error codes are those of
//! status.rs.
//!
//! What it does not do, so a test cannot lean on it: any SQL outside sql.rs's subset (no
//! INSERT or CREATE: tests fill it through [`TdengineStandIn`]'s methods), expressions,
//! functions other than FIRST/LAST/COUNT(*), GROUP BY, INTERVAL, JOINs, `SHOW`,
//! `information_schema` tables other than `ins_databases` (columns `name`, `precision`),
//! the `Taosd` token authentication, `row_with_meta`, `req_id`, any `tz` but UTC, users
//! and privileges beyond one user, persistence, and TDengine's limits on names and sizes.
//!
//! Use from an integration test:
//! `#[path = "standins/tdengine/mod.rs"] mod tdengine_standin;`
#![allow(dead_code)]

#[path = "../http.rs"]
mod http;
mod sql;
pub mod status;
mod store;

pub use store::{ColumnDef, Precision, StoredRow, TdType, TdValue};

use status::TdError;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::{Database, ResultSet, Store, SubTable, Table};

/// A failure the stand-in gives instead of (or before) an answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// This HTTP status, with a plain-text body.
    Http(u16),
    /// A TDengine error: `{"code", "desc"}` with HTTP 200.
    Code(i64, String),
    /// The normal answer, after this long.
    Delay(Duration),
    /// Close the connection without answering.
    HangUp,
}

/// Faults for the next requests whose SQL contains `pattern`.
struct FaultRule {
    pattern: String,
    faults: VecDeque<Fault>,
}

/// Everything the stand-in keeps.
#[derive(Default)]
struct State {
    store: Store,
    rules: Vec<FaultRule>,
    /// Added before every answer (a slow server).
    delay: Duration,
    /// taosAdapter's `restfulRowLimit`: replies cut to this many rows, silently.
    row_limit: Option<usize>,
    /// Every statement received, in order.
    statements: Vec<String>,
    /// Statements answered with a fault.
    faulted: Vec<(String, Fault)>,
}

/// A running stand-in for TDengine's REST interface (not TDengine).
pub struct TdengineStandIn {
    port: u16,
    state: Arc<Mutex<State>>,
}

/// How the stand-in is set up.
#[derive(Clone, Debug)]
pub struct Options {
    /// The only user it accepts.
    pub user: String,
    /// That user's password.
    pub password: String,
    /// taosAdapter's `httpCodeServerError` (config/config.go; default false): when set, a
    /// TDengine error is answered with an HTTP error status (status.rs `http_status`: 400,
    /// 401, 502, else 500) instead of 200, the body the same `{"code", "desc"}`.
    pub http_code_server_error: bool,
}

/// How the stand-in checks one request's credentials.
struct Auth {
    /// The Authorization header the user and password make.
    expected: String,
    http_code_server_error: bool,
}

impl TdengineStandIn {
    /// Starts a stand-in accepting `user` / `password` on a free port of 127.0.0.1, with
    /// taosAdapter's default settings.
    pub fn start(user: &str, password: &str) -> TdengineStandIn {
        TdengineStandIn::start_with(Options {
            user: user.into(),
            password: password.into(),
            http_code_server_error: false,
        })
    }

    pub fn start_with(options: Options) -> TdengineStandIn {
        let state = Arc::new(Mutex::new(State::default()));
        let auth = Auth {
            expected: format!(
                "Basic {}",
                base64(&format!("{}:{}", options.user, options.password))
            ),
            http_code_server_error: options.http_code_server_error,
        };
        let shared = state.clone();
        let port = http::serve(move |request| {
            let sql = String::from_utf8_lossy(&request.body);
            let (status, body) = answer(
                &shared,
                &request.method,
                &request.target,
                request.authorization.as_deref(),
                &auth,
                &sql,
            )?;
            Some(http::Response {
                status,
                content_type: "application/json; charset=utf-8",
                body,
                headers: Vec::new(),
            })
        });
        TdengineStandIn { port, state }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `CREATE DATABASE name PRECISION 'ms'|'us'|'ns'`.
    pub fn create_database(&self, name: &str, precision: Precision) {
        self.state().store.databases.insert(
            name.into(),
            Database {
                precision,
                tables: BTreeMap::new(),
            },
        );
    }

    fn add_table(
        &self,
        db: &str,
        name: &str,
        plain: bool,
        columns: &[(&str, TdType)],
        tags: &[(&str, TdType)],
    ) {
        assert_eq!(
            columns[0].1,
            TdType::Timestamp,
            "the first column is the timestamp"
        );
        let defs = |list: &[(&str, TdType)]| {
            list.iter()
                .map(|(n, ty)| ColumnDef {
                    name: n.to_string(),
                    ty: *ty,
                })
                .collect()
        };
        let mut subtables = BTreeMap::new();
        if plain {
            subtables.insert(name.to_string(), SubTable::default());
        }
        self.state()
            .store
            .databases
            .get_mut(db)
            .expect("create the database first")
            .tables
            .insert(
                name.into(),
                Table {
                    plain,
                    columns: defs(columns),
                    tags: defs(tags),
                    subtables,
                },
            );
    }

    /// `CREATE STABLE db.name (columns) TAGS (tags)`.
    pub fn create_super_table(
        &self,
        db: &str,
        name: &str,
        columns: &[(&str, TdType)],
        tags: &[(&str, TdType)],
    ) {
        self.add_table(db, name, false, columns, tags);
    }

    /// `CREATE TABLE db.name (columns)`: a plain table.
    pub fn create_table(&self, db: &str, name: &str, columns: &[(&str, TdType)]) {
        self.add_table(db, name, true, columns, &[]);
    }

    /// `CREATE TABLE db.name USING db.stable TAGS (tags)`.
    pub fn create_sub_table(&self, db: &str, stable: &str, name: &str, tags: Vec<TdValue>) {
        let mut state = self.state();
        let table = state
            .store
            .databases
            .get_mut(db)
            .unwrap()
            .tables
            .get_mut(stable)
            .unwrap();
        assert_eq!(tags.len(), table.tags.len());
        table.subtables.insert(
            name.into(),
            SubTable {
                tags,
                rows: BTreeMap::new(),
            },
        );
    }

    /// `INSERT INTO db.table VALUES (ts, values...)` into a sub-table or a plain table; `ts`
    /// in the database's precision, `values` for every column after the timestamp.
    pub fn insert(&self, db: &str, table: &str, ts: i64, values: Vec<TdValue>) {
        let mut state = self.state();
        let database = state.store.databases.get_mut(db).unwrap();
        let owner = database
            .tables
            .values_mut()
            .find(|t| t.subtables.contains_key(table))
            .unwrap_or_else(|| panic!("no sub-table or table {table}"));
        assert_eq!(values.len() + 1, owner.columns.len());
        owner
            .subtables
            .get_mut(table)
            .unwrap()
            .rows
            .insert(ts, values);
    }

    /// Every row of a super table or plain table, by sub-table and time.
    pub fn rows(&self, db: &str, table: &str) -> Vec<StoredRow> {
        let state = self.state();
        let t = &state.store.databases[db].tables[table];
        let mut out = Vec::new();
        for (name, sub) in &t.subtables {
            for (ts, values) in &sub.rows {
                out.push(StoredRow {
                    tbname: name.clone(),
                    ts: *ts,
                    values: values.clone(),
                    tags: sub.tags.clone(),
                });
            }
        }
        out
    }

    /// Answers the next requests whose SQL contains `pattern` with `faults`, one each.
    pub fn fail_next(&self, pattern: &str, faults: Vec<Fault>) {
        self.state().rules.push(FaultRule {
            pattern: pattern.into(),
            faults: faults.into(),
        });
    }

    /// Waits this long before every answer.
    pub fn set_delay(&self, delay: Duration) {
        self.state().delay = delay;
    }

    /// Cuts every reply to `limit` rows without saying so, as taosAdapter's
    /// `restfulRowLimit` does.
    pub fn set_row_limit(&self, limit: Option<usize>) {
        self.state().row_limit = limit;
    }

    /// Every statement received so far.
    pub fn statements(&self) -> Vec<String> {
        self.state().statements.clone()
    }

    /// The statements answered with a fault, and the fault.
    pub fn faulted(&self) -> Vec<(String, Fault)> {
        self.state().faulted.clone()
    }

    /// Faults not yet given.
    pub fn faults_left(&self) -> usize {
        self.state().rules.iter().map(|r| r.faults.len()).sum()
    }
}

/// The HTTP status and body for one request; `None` to hang up.
fn answer(
    state: &Mutex<State>,
    method: &str,
    target: &str,
    authorization: Option<&str>,
    auth: &Auth,
    sql: &str,
) -> Option<(u16, String)> {
    let status_of = |code: i64| status::http_status(code, auth.http_code_server_error);
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let default_db = match path.trim_end_matches('/') {
        "/rest/sql" => None,
        p => match p.strip_prefix("/rest/sql/") {
            Some(db) if !db.contains('/') => Some(db.to_string()),
            _ => return Some((404, "404 page not found".into())),
        },
    };
    if method != "POST" {
        return Some((405, "405 method not allowed".into()));
    }
    let utc = query.split('&').any(|kv| kv == "tz=UTC");
    let (delay, fault) = {
        let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
        s.statements.push(sql.to_string());
        let fault = s
            .rules
            .iter_mut()
            .find(|r| sql.contains(&r.pattern) && !r.faults.is_empty())
            .and_then(|r| r.faults.pop_front());
        if let Some(f) = &fault {
            s.faulted.push((sql.to_string(), f.clone()));
        }
        (s.delay, fault)
    };
    std::thread::sleep(delay);
    match fault {
        Some(Fault::Http(status)) => {
            return Some((status, format!("stand-in fault: HTTP {status}")))
        }
        Some(Fault::Code(code, desc)) => {
            return Some((status_of(code), error_json(&TdError { code, desc })))
        }
        Some(Fault::Delay(d)) => std::thread::sleep(d),
        Some(Fault::HangUp) => return None,
        None => {}
    }
    // taosAdapter's CheckAuth (controller/rest/auth.go) answers 401 itself for a missing,
    // foreign or undecodable Authorization header; a wrong password is TDengine's refusal
    // of the connection (controller/rest/restful.go onConnectError → TaosErrorResponse),
    // whose status follows httpCodeServerError like any other TDengine error.
    let unauthorized = |code: i64, desc: &str| {
        Some((
            401,
            error_json(&TdError {
                code,
                desc: desc.into(),
            }),
        ))
    };
    match authorization {
        None => return unauthorized(status::NO_AUTH_INFO, "no auth info input"),
        Some(a) if a == auth.expected => {}
        Some(a) => match a.strip_prefix("Basic ").map(decode_basic) {
            None => {
                return unauthorized(status::INVALID_AUTH_TYPE, "invalid type of Authorization")
            }
            Some(None) => {
                return unauthorized(status::INVALID_BASIC_AUTH, "invalid basic Authorization")
            }
            Some(Some(_)) => {
                let refusal = status::auth_failure();
                return Some((status_of(refusal.code), error_json(&refusal)));
            }
        },
    }
    let s = state.lock().unwrap_or_else(|p| p.into_inner());
    let result = sql::parse(sql).and_then(|statement| {
        let precision = |db: &str| s.store.databases.get(db).map(|d| d.precision);
        let db_of = match &statement {
            sql::Statement::Describe(t) => t.database.clone(),
            sql::Statement::Select(sel) => sel.from.database.clone(),
        }
        .or(default_db.clone());
        let mut result = s.store.execute(&statement, default_db.as_deref())?;
        if let Some(limit) = s.row_limit {
            result.rows.truncate(limit);
        }
        let precision = db_of
            .as_deref()
            .and_then(precision)
            .unwrap_or(Precision::Ms);
        Ok(result_json(&result, precision, utc))
    });
    Some(match result {
        Ok(body) => (200, body),
        Err(e) => (status_of(e.code), error_json(&e)),
    })
}

/// The user and password of Basic credentials, if they decode (base64, `user:password`)
/// and neither is empty, as taosAdapter's CheckAuth requires.
fn decode_basic(credentials: &str) -> Option<(String, String)> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let text = credentials.trim().trim_end_matches('=');
    let mut bits = 0u32;
    let mut count = 0;
    let mut bytes = Vec::new();
    for c in text.bytes() {
        let value = ALPHABET.iter().position(|a| *a == c)? as u32;
        bits = bits << 6 | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            bytes.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    (!user.is_empty() && !password.is_empty()).then(|| (user.to_string(), password.to_string()))
}

fn error_json(e: &TdError) -> String {
    serde_json::json!({"code": e.code, "desc": e.desc}).to_string()
}

/// A result as taosAdapter writes it.
fn result_json(result: &ResultSet, precision: Precision, utc: bool) -> String {
    let meta: Vec<String> = result
        .columns
        .iter()
        .map(|(name, ty)| {
            format!(
                "[{},{},{}]",
                serde_json::to_string(name).unwrap(),
                serde_json::to_string(ty.name()).unwrap(),
                ty.length()
            )
        })
        .collect();
    let rows: Vec<String> = result
        .rows
        .iter()
        .map(|row| {
            let values: Vec<String> = row.iter().map(|v| value_json(v, precision, utc)).collect();
            format!("[{}]", values.join(","))
        })
        .collect();
    format!(
        "{{\"code\":0,\"column_meta\":[{}],\"data\":[{}],\"rows\":{}}}",
        meta.join(","),
        rows.join(","),
        result.rows.len()
    )
}

fn value_json(v: &TdValue, precision: Precision, utc: bool) -> String {
    match v {
        TdValue::Null => "null".into(),
        TdValue::Bool(b) => b.to_string(),
        TdValue::Int(i) => i.to_string(),
        TdValue::UInt(u) => u.to_string(),
        TdValue::Float(f) if f.is_finite() => ryu::Buffer::new().format_finite(*f).to_string(),
        TdValue::Double(f) if f.is_finite() => ryu::Buffer::new().format_finite(*f).to_string(),
        TdValue::Float(_) | TdValue::Double(_) => "null".into(),
        TdValue::Text(s) => serde_json::to_string(s).unwrap(),
        TdValue::Json(s) => s.clone(),
        TdValue::Ts(units) => format!("\"{}\"", precision.format(*units, utc)),
    }
}

/// Standard base64 (RFC 4648, with padding), for the expected Authorization header.
fn base64(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_is_rfc4648() {
        assert_eq!(super::base64("root:taosdata"), "cm9vdDp0YW9zZGF0YQ==");
        assert_eq!(super::base64("ab"), "YWI=");
        assert_eq!(super::base64("abc"), "YWJj");
        assert_eq!(
            super::decode_basic("cm9vdDp0YW9zZGF0YQ=="),
            Some(("root".into(), "taosdata".into()))
        );
        assert_eq!(super::decode_basic(&super::base64("root:")), None);
        assert_eq!(super::decode_basic("not base64!"), None);
    }
}
