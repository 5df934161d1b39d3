//! IoTDB's status codes (`TSStatus.code`) that the stand-in answers with, and the
//! `TSStatus` it builds.
//!
//! The numbers are IoTDB's `TSStatusCode` enum
//! (`iotdb-client/service-rpc/src/main/java/org/apache/iotdb/rpc/TSStatusCode.java`,
//! apache/iotdb master at commit 00cbdb70, the 2.x line; the numbering has been the same
//! since IoTDB 1.0 renumbered the codes). They are NOT the constants in iotdb-client-rs
//! 0.3.12's `protocal` module, which are the pre-1.0 numbering: that client treats 506
//! (today PATH_ALREADY_EXIST) as its old MULTIPLE_ERROR and 707 (today
//! UNSUPPORTED_FILL_TYPE) as its old NEED_REDIRECTION, i.e. as success.

pub const SUCCESS_STATUS: i32 = 200;
pub const INCOMPATIBLE_VERSION: i32 = 201;
pub const UNSUPPORTED_OPERATION: i32 = 300;
pub const EXECUTE_STATEMENT_ERROR: i32 = 301;
pub const MULTIPLE_ERROR: i32 = 302;
pub const ILLEGAL_PARAMETER: i32 = 303;
pub const INTERNAL_SERVER_ERROR: i32 = 305;
/// A multi-device write of a cluster that succeeded while some of its devices' regions
/// are led by other DataNodes: every sub-status is a 200, those devices' with the
/// `redirectNode` to write to next time (TreeModelPlanner.setRedirectInfo; see
/// service.rs, `redirected`).
pub const REDIRECTION_RECOMMEND: i32 = 400;
pub const DATABASE_NOT_EXIST: i32 = 500;
pub const DATABASE_ALREADY_EXISTS: i32 = 501;
pub const TIMESERIES_ALREADY_EXIST: i32 = 503;
pub const PATH_ALREADY_EXIST: i32 = 506;
/// What a tree-model insert answers when some of its measurements were refused (a data
/// type mismatch among them): the other measurements are written (partial insert).
pub const METADATA_ERROR: i32 = 507;
pub const PATH_NOT_EXIST: i32 = 508;
pub const ILLEGAL_PATH: i32 = 509;
pub const SYSTEM_READ_ONLY: i32 = 600;
pub const STORAGE_ENGINE_NOT_READY: i32 = 602;
pub const WRITE_PROCESS_ERROR: i32 = 605;
/// IoTDB's answer while memory is short: the write was not done and may be retried.
pub const WRITE_PROCESS_REJECT: i32 = 606;
/// Rows older than the database's TTL: those rows are not written, the others of the call
/// are (see store.rs, `drop_expired_rows`, for where IoTDB does it).
pub const OUT_OF_TTL: i32 = 607;
pub const ALIGNED_TIMESERIES_ERROR: i32 = 609;
/// The code of the mismatch itself; for tree-model inserts IoTDB wraps it in a 507
/// partial-insert answer, whose message carries the mismatch text.
pub const DATA_TYPE_MISMATCH: i32 = 614;
pub const SQL_PARSE_ERROR: i32 = 700;
pub const WRONG_LOGIN_PASSWORD: i32 = 801;
pub const NOT_LOGIN: i32 = 802;

/// One `TSStatus` (common.thrift): code, optional message, optional sub-statuses,
/// optional `redirectNode` (a `TEndPoint`: ip and port).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Status {
    pub code: i32,
    pub message: Option<String>,
    pub sub_status: Vec<Status>,
    pub redirect_node: Option<(String, i32)>,
}

impl Status {
    pub fn ok() -> Status {
        Status {
            code: SUCCESS_STATUS,
            message: None,
            sub_status: Vec::new(),
            redirect_node: None,
        }
    }

    pub fn error(code: i32, message: impl Into<String>) -> Status {
        Status {
            code,
            message: Some(message.into()),
            sub_status: Vec::new(),
            redirect_node: None,
        }
    }

    /// The answer to a call the stand-in does not implement, in words a failing test
    /// shows plainly.
    pub fn not_implemented(what: impl std::fmt::Display) -> Status {
        Status::error(
            UNSUPPORTED_OPERATION,
            format!("not implemented by the stand-in: {what}"),
        )
    }

    pub fn is_ok(&self) -> bool {
        self.code == SUCCESS_STATUS
    }

    /// IoTDB's MULTIPLE_ERROR for a batch some of whose parts failed.
    pub fn multiple(failures: Vec<Status>) -> Status {
        if failures.is_empty() {
            return Status::ok();
        }
        let message = failures
            .iter()
            .map(|s| format!("{}: {}", s.code, s.message.as_deref().unwrap_or("")))
            .collect::<Vec<_>>()
            .join("; ");
        Status {
            code: MULTIPLE_ERROR,
            message: Some(message),
            sub_status: failures,
            redirect_node: None,
        }
    }
}
