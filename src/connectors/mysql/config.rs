//! The `source:` section for MySQL and MariaDB.

use crate::job::{Job, JobError};
use serde::Deserialize;

/// `source: {type: mysql, ...}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlSourceConfig {
    /// `mysql://user:password@host:port/database`; put the password in `${ENV}`. tsmig
    /// connects to that host and port, never through a local socket the server names
    /// (`?prefer_socket=true` allows that, `?socket=PATH` names one).
    pub url: String,
    /// The UTC offset DATETIME values are read in (`+00:00`, `-05:30`, `UTC`). DATETIME
    /// carries no zone of its own; TIMESTAMP columns are always read as UTC.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// The tables to read.
    pub tables: Vec<TableConfig>,
    /// CDC only: the replica id this job's binlog reader uses. Every reader of one server
    /// needs its own (a second reader with the same id disconnects the first), so there
    /// is no default: pick a number no replica or other job uses.
    #[serde(default)]
    pub server_id: Option<u32>,
    /// CDC only: how often an idle server sends a heartbeat. Heartbeats keep the recorded
    /// position fresh while the tables are quiet and tell `--until-caught-up` the reader is
    /// at the end of the binlog.
    #[serde(
        default = "default_heartbeat",
        deserialize_with = "crate::job::duration"
    )]
    pub heartbeat: std::time::Duration,
    /// How a chunk whose read lost its connection is read again, from its start: the retry
    /// keys, parsed beside these ([`crate::source::parse_section`]).
    #[serde(skip)]
    pub retry: crate::retry::RetryPolicy,
}

fn default_heartbeat() -> std::time::Duration {
    std::time::Duration::from_secs(1)
}

/// One source table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// Table name, or `database.table` for a table outside the URL's database.
    pub name: String,
    /// Integer column (the leading column of an index, ideally the primary key) used to
    /// cut the table into chunks read in parallel. Without it the table is one chunk.
    #[serde(default)]
    pub split_by: Option<String>,
    /// Rows per chunk the planner aims for.
    #[serde(default = "default_chunk_rows")]
    pub chunk_rows: u64,
}

fn default_time_zone() -> String {
    "+00:00".into()
}

fn default_chunk_rows() -> u64 {
    50_000
}

/// Parses a UTC offset: `+HH:MM`, `-HH:MM`, `+HHMM`, `UTC` or `Z`. Returns seconds east.
pub fn parse_offset(text: &str) -> Result<i32, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("utc") || t == "Z" {
        return Ok(0);
    }
    let bad = || {
        format!("`{text}` is not a UTC offset; write it as +HH:MM (e.g. +00:00, -05:30). Named zones are not supported: DATETIME needs one fixed offset")
    };
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'+') => (1, &t[1..]),
        Some(b'-') => (-1, &t[1..]),
        _ => return Err(bad()),
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let hours: i32 = digits[..2].parse().map_err(|_| bad())?;
    let minutes: i32 = digits[2..].parse().map_err(|_| bad())?;
    if hours > 14 || minutes > 59 {
        return Err(bad());
    }
    Ok(sign * (hours * 3600 + minutes * 60))
}

impl MysqlSourceConfig {
    /// Checks that need no server.
    pub fn check(&self, job: &Job) -> Result<(), JobError> {
        mysql_async::Opts::from_url(&self.url).map_err(|e| {
            job.error_at(
                "source.url",
                format!("not a MySQL URL ({e}); expected mysql://user:password@host:port/database"),
            )
        })?;
        parse_offset(&self.time_zone).map_err(|e| job.error_at("source.time_zone", e))?;
        if self.heartbeat < std::time::Duration::from_millis(10) {
            return Err(job.error_at("source.heartbeat", "must be at least 10ms"));
        }
        if self.server_id == Some(0) {
            return Err(job.error_at(
                "source.server_id",
                "0 is not a replica id; pick a number no replica or other job of this server uses",
            ));
        }
        if matches!(
            job.file.mode,
            crate::job::Mode::Cdc | crate::job::Mode::BackfillCdc
        ) && self.server_id.is_none()
        {
            return Err(job.error_at(
                "source.server_id",
                "a CDC job needs its own `server_id` (the replica id its binlog reader uses): two readers with the same id disconnect each other, so tsmig does not pick one for you",
            ));
        }
        if self.tables.is_empty() {
            return Err(job.error_at("source.tables", "list at least one table"));
        }
        for (i, t) in self.tables.iter().enumerate() {
            if t.chunk_rows == 0 {
                return Err(job.error_at(
                    &format!("source.tables[{i}].chunk_rows"),
                    "must be at least 1",
                ));
            }
            if self.tables[..i].iter().any(|o| o.name == t.name) {
                return Err(job.error_at(
                    &format!("source.tables[{i}].name"),
                    format!("table `{}` is listed twice", t.name),
                ));
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl crate::source::SourceSpec for MysqlSourceConfig {
    fn kind(&self) -> &'static str {
        "mysql"
    }
    fn check(&self, job: &Job) -> Result<(), JobError> {
        MysqlSourceConfig::check(self, job)
    }
    fn table_names(&self) -> Vec<String> {
        self.tables.iter().map(|t| t.name.clone()).collect()
    }
    async fn open(
        &self,
        job: &Job,
    ) -> Result<Box<dyn crate::source::BoundedSource>, crate::source::SourceError> {
        Ok(Box::new(super::source::MysqlSource::open(job, self).await?))
    }
    async fn open_changes(
        &self,
        job: &Job,
    ) -> Result<Box<dyn crate::source::BoundedChangeSource>, crate::source::SourceError> {
        Ok(Box::new(super::source::MysqlSource::open(job, self).await?))
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::parse_offset;

    #[test]
    fn offsets() {
        assert_eq!(parse_offset("+00:00"), Ok(0));
        assert_eq!(parse_offset("UTC"), Ok(0));
        assert_eq!(parse_offset("-05:30"), Ok(-(5 * 3600 + 30 * 60)));
        assert_eq!(parse_offset("+0200"), Ok(7200));
        assert!(parse_offset("Europe/Berlin")
            .unwrap_err()
            .contains("Named zones"));
        assert!(parse_offset("+25:00").is_err());
    }
}
