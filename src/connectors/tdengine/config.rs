//! The `source:` section for TDengine.

use crate::job::{duration, Job, JobError};
use crate::retry::RetryPolicy;
use serde::Deserialize;
use std::time::Duration;

/// `source: {type: tdengine, ...}`: tables of one TDengine database, read over the REST
/// interface of taosAdapter (`POST /rest/sql`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TdengineSourceConfig {
    /// Base URL of the REST interface, e.g. `http://127.0.0.1:6041` (http only).
    pub url: String,
    /// User name, sent with HTTP basic authentication.
    #[serde(default = "default_user")]
    pub user: String,
    /// That user's password; use `${ENV}`, never the password itself.
    pub password: String,
    /// The database the tables are in.
    pub database: String,
    /// The tables to read: super tables (every sub-table, tags as columns) or plain tables.
    pub tables: Vec<TableConfig>,
    /// Width of the time window of one split (`1d`, `6h`): each sub-table is read window
    /// by window, windows aligned to multiples of this width since the Unix epoch.
    #[serde(default = "default_window", deserialize_with = "duration")]
    pub window: Duration,
    /// Rows asked for per query; a window holding more is read in pages, each starting
    /// after the last timestamp of the one before.
    #[serde(default = "default_page_rows")]
    pub page_rows: u64,
    /// Time limit of one request; a request that takes longer is retried.
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// Further TDengine error codes (the REST reply's `code`) to retry as transient,
    /// besides the connection and leader-election codes tsmig knows.
    #[serde(default)]
    pub retry_codes: Vec<i64>,
    /// How a statement that failed transiently (connection, timeout, HTTP 5xx, a transient
    /// TDengine code) is sent again: the retry keys, parsed beside these
    /// ([`crate::source::parse_section`]).
    #[serde(skip)]
    pub retry: RetryPolicy,
}

/// One source table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// A super table or a plain table of `database`; the mappings name it the same way.
    pub name: String,
}

fn default_user() -> String {
    "root".into()
}
fn default_window() -> Duration {
    Duration::from_secs(86_400)
}
fn default_page_rows() -> u64 {
    10_000
}
fn default_timeout() -> Duration {
    Duration::from_secs(60)
}

impl TdengineSourceConfig {
    /// Checks that need no server.
    pub fn check(&self, job: &Job) -> Result<(), JobError> {
        if self.url.starts_with("https://") {
            return Err(job.error_at(
                "source.url",
                "https is not built into this tsmig yet; use http:// (or a TLS-terminating proxy)",
            ));
        }
        if !self.url.starts_with("http://") {
            return Err(job.error_at(
                "source.url",
                "the URL must start with http://, e.g. http://127.0.0.1:6041",
            ));
        }
        reqwest::Url::parse(&self.url)
            .map_err(|e| job.error_at("source.url", format!("not a URL: {e}")))?;
        if self.database.is_empty() {
            return Err(job.error_at("source.database", "must not be empty"));
        }
        if self.tables.is_empty() {
            return Err(job.error_at("source.tables", "list at least one table"));
        }
        for (i, t) in self.tables.iter().enumerate() {
            if t.name.is_empty() || t.name.contains('`') || t.name.contains('.') {
                return Err(job.error_at(
                    &format!("source.tables[{i}].name"),
                    format!(
                        "`{}` is not a table name of database {} (no dots, no backquotes)",
                        t.name, self.database
                    ),
                ));
            }
            if self.tables[..i].iter().any(|o| o.name == t.name) {
                return Err(job.error_at(
                    &format!("source.tables[{i}].name"),
                    format!("table `{}` is listed twice", t.name),
                ));
            }
        }
        if self.database.contains('`') {
            return Err(job.error_at("source.database", "must not contain a backquote"));
        }
        if self.window < Duration::from_millis(1) {
            return Err(job.error_at("source.window", "must be at least 1ms"));
        }
        if self.page_rows == 0 {
            return Err(job.error_at("source.page_rows", "must be at least 1"));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl crate::source::SourceSpec for TdengineSourceConfig {
    fn kind(&self) -> &'static str {
        "tdengine"
    }
    fn check(&self, job: &Job) -> Result<(), JobError> {
        TdengineSourceConfig::check(self, job)
    }
    fn table_names(&self) -> Vec<String> {
        self.tables.iter().map(|t| t.name.clone()).collect()
    }
    async fn open(
        &self,
        job: &Job,
    ) -> Result<Box<dyn crate::source::BoundedSource>, crate::source::SourceError> {
        Ok(Box::new(super::TdengineSource::open(job, self).await?))
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
