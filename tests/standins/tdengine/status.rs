//! TDengine's error codes as the REST interface reports them (the low 16 bits of the
//! client library's code) with their `desc` texts, for the errors the stand-in gives.
//! Numbers and texts follow TDengine 3's `include/util/taoserror.h` as far as known here.

/// A failed statement: `{"code": code, "desc": desc}` with HTTP 200, as taosAdapter
/// answers errors of the database itself.
#[derive(Clone, Debug, PartialEq)]
pub struct TdError {
    pub code: i64,
    pub desc: String,
}

/// TSDB_CODE_RPC_NETWORK_UNAVAIL: transient.
pub const NETWORK_UNAVAIL: i64 = 0x000B;
/// TSDB_CODE_MND_AUTH_FAILURE.
pub const AUTH_FAILURE: i64 = 0x0357;
/// TSDB_CODE_MND_DB_NOT_EXIST.
pub const DB_NOT_EXIST: i64 = 0x0388;
/// TSDB_CODE_PAR_SYNTAX_ERROR.
pub const SYNTAX_ERROR: i64 = 0x2600;
/// TSDB_CODE_PAR_INVALID_COLUMN.
pub const INVALID_COLUMN: i64 = 0x2602;
/// TSDB_CODE_PAR_TABLE_NOT_EXIST.
pub const TABLE_NOT_EXIST: i64 = 0x2603;
/// TSDB_CODE_PAR_DB_NOT_SPECIFIED.
pub const DB_NOT_SPECIFIED: i64 = 0x2616;
/// taosAdapter's HTTP_NO_AUTH_INFO: a request without an Authorization header.
pub const NO_AUTH_INFO: i64 = 0x1105;
/// taosAdapter's HTTP_INVALID_AUTH_TYPE: an Authorization header of another scheme.
pub const INVALID_AUTH_TYPE: i64 = 0x1122;
/// taosAdapter's HTTP_INVALID_BASIC_AUTH: Basic credentials it cannot decode, or with an
/// empty user or password.
pub const INVALID_BASIC_AUTH: i64 = 0x1124;
/// Not a TDengine code: what the stand-in answers for SQL it parses but does not
/// evaluate, so a test can never mistake it for TDengine's behaviour.
pub const NOT_IN_STANDIN: i64 = 0xFFFF;

fn error(code: i64, desc: String) -> TdError {
    TdError { code, desc }
}

pub fn syntax_error(near: &str) -> TdError {
    let near: String = near.chars().take(60).collect();
    error(SYNTAX_ERROR, format!("syntax error near \"{near}\""))
}

pub fn invalid_column(name: &str) -> TdError {
    error(INVALID_COLUMN, format!("Invalid column name: {name}"))
}

pub fn table_not_exist(name: &str) -> TdError {
    error(TABLE_NOT_EXIST, format!("Table does not exist: {name}"))
}

pub fn db_not_exist(name: &str) -> TdError {
    error(DB_NOT_EXIST, format!("Database not exist: {name}"))
}

pub fn db_not_specified() -> TdError {
    error(
        DB_NOT_SPECIFIED,
        "Database not specified or available".into(),
    )
}

pub fn auth_failure() -> TdError {
    error(AUTH_FAILURE, "Authentication failure".into())
}

/// The HTTP status taosAdapter gives a TDengine error (`controller/rest/error_resp.go`
/// getErrorHttpStatus, taosdata/taosadapter): 200 unless `httpCodeServerError` is set, and
/// then the status of `config.ErrorStatusMap` (`config/const.go`: 400 for syntax and range
/// errors, 401 for the user and authentication errors, 502 for
/// TSDB_CODE_RPC_NETWORK_UNAVAIL) or 500 for any other code.
pub fn http_status(code: i64, http_code_server_error: bool) -> u16 {
    if !http_code_server_error {
        return 200;
    }
    match code & 0xffff {
        // TSC_SQL_SYNTAX_ERROR, TSC_LINE_SYNTAX_ERROR, PAR_SYNTAX_ERROR,
        // TDB_TIMESTAMP_OUT_OF_RANGE, TSC_VALUE_OUT_OF_RANGE, PAR_INVALID_FILL_TIME_RANGE.
        0x0216 | 0x021B | 0x2600 | 0x060B | 0x0224 | 0x263B => 400,
        // MND_USER_ALREADY_EXIST .. MND_AUTH_FAILURE.
        0x0350..=0x0357 => 401,
        NETWORK_UNAVAIL => 502,
        _ => 500,
    }
}

pub fn not_in_standin(what: &str) -> TdError {
    error(
        NOT_IN_STANDIN,
        format!("not implemented by the TDengine stand-in: {what}"),
    )
}
