//! The `sink:` section for files.

use super::client::Layout;
use super::names;
use crate::job::{duration_opt, Job, JobError, Mode, OnDelete, OnUpdate, TimeUnit};
use crate::sink::{AnySink, BatchConfig, SinkContext, SinkSpec};
use serde::{Deserialize, Deserializer};
use std::path::PathBuf;
use std::time::Duration;

/// `sink: {type: file, ...}`; the batching keys beside these are
/// [`BatchConfig`](crate::sink::BatchConfig)'s (a batch is one append and one fsync).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The directory the files are written in; created if missing. One directory per job
    /// (or a `prefix` per job): a run recovers the temp files of its prefix that a crashed
    /// run left there.
    pub path: PathBuf,
    /// The start of every file's name: `<prefix>-<first time>-<seq>.lp`. Letters, digits,
    /// `_`, `-` and `.`, not starting with `.`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// What the files hold: `line_protocol` (InfluxDB line protocol, one point a line, the
    /// only format so far).
    #[serde(default)]
    pub format: Format,
    /// Unit of the timestamps written: `s`, `ms`, `us` or `ns`. A point with a finer time
    /// is dead-lettered rather than truncated onto another point's timestamp.
    #[serde(default = "default_precision")]
    pub precision: TimeUnit,
    /// Unsigned integers with `u`, as InfluxDB 2 and 3 and Telegraf read them; `false`
    /// writes them with `i` for InfluxDB 1.x, and dead-letters a value above 2^63-1.
    #[serde(default = "default_true")]
    pub unsigned: bool,
    /// A file is closed, and takes its final name, before an append would take it past
    /// this size: bytes, or with a unit (`64MiB`, `512KiB`, `1GiB`, `100MB`). Files hold
    /// whole batches, so a batch larger than this makes a file of its own. At most 1GiB
    /// (recovery reads a crashed run's file whole).
    #[serde(default = "default_roll_bytes", deserialize_with = "byte_size")]
    pub roll_bytes: u64,
    /// A file is also closed once it has been open this long (e.g. `5m`), so that a slow
    /// stream (CDC, ingest) reaches final names without waiting for `roll_bytes`. Default:
    /// by size, and when the run ends.
    #[serde(default, deserialize_with = "duration_opt")]
    pub roll_after: Option<Duration>,
}

/// What a file holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// InfluxDB line protocol.
    #[default]
    LineProtocol,
}

fn default_prefix() -> String {
    "points".into()
}
fn default_precision() -> TimeUnit {
    TimeUnit::Nanos
}
fn default_true() -> bool {
    true
}
fn default_roll_bytes() -> u64 {
    64 << 20
}

/// The largest `roll_bytes`: recovery reads a crashed run's open file into memory.
const MAX_ROLL_BYTES: u64 = 1 << 30;

/// Deserialises a size: a number of bytes, or text with a unit (`64MiB`, `10 MB`). Anything
/// else (`-5`, `1.5`, a list) is refused saying what a size is.
fn byte_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    struct Size;
    impl serde::de::Visitor<'_> for Size {
        type Value = u64;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "a size ({SIZE})")
        }
        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<u64, E> {
            Ok(n)
        }
        fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<u64, E> {
            u64::try_from(n).map_err(|_| E::custom(format!("`{n}` is not a size ({SIZE})")))
        }
        fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<u64, E> {
            Err(E::custom(format!("`{n}` is not a size ({SIZE})")))
        }
        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<u64, E> {
            parse_bytes(text).map_err(E::custom)
        }
    }
    d.deserialize_any(Size)
}

/// What a size is, for error messages.
const SIZE: &str = "bytes, or a number with B, KB, MB, GB, KiB, MiB or GiB";

/// `64MiB`, `512 KiB`, `1GB`, `4096`: bytes.
fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let unit_bytes: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(format!("`{text}` is not a size ({SIZE})")),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_bytes))
        .ok_or_else(|| format!("`{text}` is not a size ({SIZE})"))
}

impl FileSinkConfig {
    /// Checks that need no file system.
    pub fn check(&self, job: &Job) -> Result<(), JobError> {
        if self.path.as_os_str().is_empty() {
            return Err(job.error_at("sink.path", "name the directory the files go in"));
        }
        if !names::valid_prefix(&self.prefix) {
            return Err(job.error_at(
                "sink.prefix",
                format!(
                    "`{}` cannot start a file name: use letters, digits, `_`, `-` and `.`, not starting with `.`",
                    self.prefix
                ),
            ));
        }
        if !(1024..=MAX_ROLL_BYTES).contains(&self.roll_bytes) {
            return Err(job.error_at(
                "sink.roll_bytes",
                "must be at least 1KiB and at most 1GiB (recovery reads a crashed run's file whole)",
            ));
        }
        if self
            .roll_after
            .is_some_and(|after| after < Duration::from_millis(10))
        {
            return Err(job.error_at("sink.roll_after", "must be at least 10ms"));
        }
        Ok(())
    }

    /// The directory's layout.
    pub fn layout(&self) -> Layout {
        Layout {
            dir: self.path.clone(),
            prefix: self.prefix.clone(),
            roll_bytes: self.roll_bytes,
            roll_after: self.roll_after,
            precision: self.precision,
        }
    }
}

/// Files are appended to, never rewritten: a job whose changes may delete a point is
/// refused before it starts, naming the key that would. CDC deletes a point for a DELETE
/// (`on_delete: delete`) and for an UPDATE that moves a point to another series or time or
/// empties a field (`on_update: overwrite`); backfills, `backfill+follow` and ingest only
/// write.
fn refuse_deletes(job: &Job) -> Result<(), JobError> {
    if !matches!(job.file.mode, Mode::Cdc | Mode::BackfillCdc) {
        return Ok(());
    }
    for (i, m) in job.file.mappings.iter().enumerate() {
        if m.on_delete == OnDelete::Delete {
            return Err(job.error_at(
                &format!("mappings[{i}].on_delete"),
                format!(
                    "a `file` sink cannot delete points, and `{}` deletes the point of every deleted row (`on_delete: delete` is the default); set `on_delete: ignore` to keep deleted rows' points in the files",
                    job.file.mode
                ),
            ));
        }
        if m.on_update == OnUpdate::Overwrite {
            return Err(job.error_at(
                &format!("mappings[{i}].on_update"),
                format!(
                    "a `file` sink cannot delete points, and `{}` with `on_update: overwrite` (the default) deletes the old point of an UPDATE that moves it or empties a field; set `on_update: ignore` to write each row as first inserted",
                    job.file.mode
                ),
            ));
        }
    }
    Ok(())
}

/// Files keep every line written, so a point read twice is in them twice. Each
/// `backfill+follow` round reads again the points up to `follow.lateness` older than the
/// last round's end (a database target overwrites them with themselves): with a file sink
/// it must read nothing twice.
fn refuse_rereads(job: &Job) -> Result<(), JobError> {
    let lateness = job.file.follow.lateness;
    if job.file.mode == Mode::BackfillFollow && !lateness.is_zero() {
        return Err(job.error_at(
            "follow.lateness",
            format!(
                "a `file` sink writes a point each time it is read, and every `backfill+follow` round reads again the points up to `follow.lateness` ({}) older than the last round's end, so they would be in the files several times; set `lateness: 0s` (a point that reaches the source after its round has read its time is then not copied) or write to a database",
                humantime::format_duration(lateness)
            ),
        ));
    }
    Ok(())
}

/// `sink: {type: file}` with its batching keys.
pub(super) struct FileSinkSpec {
    pub config: FileSinkConfig,
    pub batching: BatchConfig,
}

impl SinkSpec for FileSinkSpec {
    fn kind(&self) -> &'static str {
        "file"
    }
    fn check(&self, job: &Job) -> Result<(), JobError> {
        self.config.check(job)?;
        refuse_deletes(job)?;
        refuse_rereads(job)?;
        crate::sink::refuse_path_keys(job, "file")
    }
    fn build(&self, _context: &SinkContext<'_>) -> Result<AnySink, String> {
        Ok(AnySink::new(super::FileSink::new(
            &self.config,
            &self.batching,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn job(mode: &str, sink: &str, mapping: &str) -> Result<Box<dyn SinkSpec>, JobError> {
        let text = format!(
            "name: t\nmode: {mode}\nsource:\n  type: mysql\n  url: mysql://u@h/db\n  server_id: 7\n  tables:\n    - name: t\nsink:\n  type: file\n  path: /tmp/out\n{sink}mappings:\n  - table: t\n    timestamp_field: ts\n    fields: [v]\n{mapping}"
        );
        let job = Job::parse(Path::new("job.yaml"), &text, |_| None)?;
        crate::connectors::sink(&job)
    }

    #[test]
    fn sizes_read_with_or_without_a_unit() {
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_bytes("10MB"), Ok(10_000_000));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("64 mb").is_err());
        assert!(parse_bytes("MiB").is_err());
        assert!(parse_bytes("99999999999999GiB").is_err());
        let spec = job("backfill", "  roll_bytes: 2MiB\n  roll_after: 5m\n", "").unwrap();
        assert_eq!(spec.kind(), "file");
        let spec = job("backfill", "  roll_bytes: 4096\n", "");
        assert!(spec.is_ok());
    }

    #[test]
    fn the_section_refuses_what_cannot_name_or_roll_a_file() {
        for (sink, key, words) in [
            (
                "  prefix: .hidden\n",
                "sink.prefix",
                "cannot start a file name",
            ),
            ("  roll_bytes: 100\n", "sink.roll_bytes", "at least 1KiB"),
            ("  roll_bytes: 2GiB\n", "sink.roll_bytes", "at most 1GiB"),
            // Neither a count of bytes nor a size with a unit: say what a size is.
            (
                "  roll_bytes: -5\n",
                "sink.roll_bytes",
                "`-5` is not a size (bytes,",
            ),
            (
                "  roll_bytes: 1.5\n",
                "sink.roll_bytes",
                "`1.5` is not a size (bytes,",
            ),
            (
                "  roll_bytes: [1]\n",
                "sink.roll_bytes",
                "expected a size (bytes,",
            ),
            ("  roll_after: 1ms\n", "sink.roll_after", "at least 10ms"),
            ("  format: csv\n", "sink.format", "unknown variant `csv`"),
            ("  fsync: false\n", "sink.fsync", "unknown field `fsync`"),
        ] {
            let err = job("backfill", sink, "").err().unwrap();
            assert_eq!(err.key.as_deref(), Some(key), "{err}");
            assert!(err.message.contains(words), "{err}");
        }
    }

    #[test]
    fn a_cdc_job_that_may_delete_is_refused_before_it_starts() {
        let err = job("cdc", "", "").err().unwrap();
        assert_eq!(err.key.as_deref(), Some("mappings[0].on_delete"));
        assert!(
            err.message.contains("a `file` sink cannot delete points"),
            "{err}"
        );
        let err = job("backfill+cdc", "", "    on_delete: ignore\n")
            .err()
            .unwrap();
        assert_eq!(err.key.as_deref(), Some("mappings[0].on_update"));
        assert!(job("cdc", "", "    on_delete: ignore\n    on_update: ignore\n").is_ok());
        // A backfill never deletes.
        assert!(job("backfill", "", "").is_ok());
    }

    #[test]
    fn a_follow_job_that_would_read_points_twice_is_refused() {
        let err = job("backfill+follow", "", "").err().unwrap();
        assert_eq!(err.key.as_deref(), Some("follow.lateness"));
        assert!(err.message.contains("(1m)"), "{err}");
        assert!(job("backfill+follow", "", "follow:\n  lateness: 0s\n").is_ok());
    }
}
