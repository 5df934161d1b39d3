//! The job file: what to read, how to map it, where to write it.
//!
//! A job file is YAML with `${ENV}` references ([`env`]). Loading it substitutes the
//! references, deserialises the [`JobFile`] (unknown keys are errors), and checks what can
//! be checked without a database. Every error names the file, line and key
//! ([`JobError`]); checks that need the source's schema (unknown columns) use
//! [`Job::error_at`] to point at the offending key the same way.

use crate::spec::{parse_yaml, ErrorAt, Parsed, Section};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::spec::{duration, duration_opt, mask_urls, JobError, Locations, Secrets};

/// A job file as written by the user.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobFile {
    /// Name of the job: shown in logs and used for the default state directory.
    pub name: String,
    /// What the job does when `-c` is not given on the command line.
    #[serde(default)]
    pub mode: Mode,
    /// Where rows come from: a `type:` and that connector's keys (see `connectors`).
    pub source: Section,
    /// Where points go: a `type:` and that connector's keys.
    pub sink: Section,
    /// How rows of each source table become points. `auto` (or no `mappings:` at all)
    /// asks the source for its own schema as the mapping, where it has one (InfluxDB 1.x:
    /// every measurement copied as is); the list is then empty. An `ingest` source has no
    /// tables (points arrive whole) and takes no mappings.
    #[serde(default, deserialize_with = "mappings_or_auto")]
    pub mappings: Vec<MappingConfig>,
    /// Where and how often progress is recorded, so a restart resumes.
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    /// Where rejected rows and points are kept (JSON lines); default `<state dir>/dead-letter.jsonl`.
    #[serde(default)]
    pub dead_letter: Option<PathBuf>,
    /// Flow control between sources and sinks.
    #[serde(default)]
    pub flow: FlowConfig,
    /// How the verify job compares source and target.
    #[serde(default)]
    pub verify: VerifyConfig,
    /// How `backfill+follow` polls the source after the backfill.
    #[serde(default)]
    pub follow: FollowConfig,
    /// What the job does when a transient failure outlives a request's retries.
    #[serde(default)]
    pub restart: RestartConfig,
}

/// `restart:`, as Flink's restart strategies: when a transient failure (a server down, the
/// network cut) outlives a request's retries, the dataflow is torn down and rebuilt from the
/// last checkpoint, after a delay. Definite and fatal failures never restart.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartConfig {
    /// `exponential` (the delay doubles from `initial` to `max`), `fixed` (always
    /// `initial`) or `none` (a transient failure fails the job).
    #[serde(default)]
    pub strategy: RestartStrategy,
    /// The delay before the first restart (`fixed`: before every restart).
    #[serde(default = "default_restart_initial", deserialize_with = "duration")]
    pub initial: Duration,
    /// The longest delay (`exponential`).
    #[serde(default = "default_restart_max", deserialize_with = "duration")]
    pub max: Duration,
    /// Restarts before the job gives up and fails with the last cause: a number, or
    /// `unlimited`. Default: `unlimited` for jobs that follow a source (`cdc`,
    /// `backfill+cdc`, `backfill+follow`), 10 for a backfill (about three minutes of
    /// trying with the default delays).
    #[serde(default)]
    pub attempts: Option<Attempts>,
    /// A run that lasted this long before it failed starts the count and the delay over.
    #[serde(default = "default_restart_reset_after", deserialize_with = "duration")]
    pub reset_after: Duration,
}

impl Default for RestartConfig {
    fn default() -> Self {
        Self {
            strategy: RestartStrategy::default(),
            initial: default_restart_initial(),
            max: default_restart_max(),
            attempts: None,
            reset_after: default_restart_reset_after(),
        }
    }
}

fn default_restart_initial() -> Duration {
    Duration::from_secs(1)
}
fn default_restart_max() -> Duration {
    Duration::from_secs(30)
}
fn default_restart_reset_after() -> Duration {
    Duration::from_secs(600)
}

/// `restart.strategy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RestartStrategy {
    /// The delay doubles from `initial` to `max`.
    #[default]
    Exponential,
    /// Always `initial`.
    Fixed,
    /// No restart.
    None,
}

/// `restart.attempts`: a number or `unlimited`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempts {
    /// Never give up.
    Unlimited,
    /// Give up after this many restarts.
    AtMost(u32),
}

impl<'de> Deserialize<'de> for Attempts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_yaml::Value::deserialize(d)? {
            serde_yaml::Value::String(s) if s == "unlimited" => Ok(Attempts::Unlimited),
            serde_yaml::Value::Number(n) if n.as_u64().is_some_and(|n| n <= u32::MAX as u64) => {
                Ok(Attempts::AtMost(n.as_u64().unwrap_or_default() as u32))
            }
            other => Err(serde::de::Error::custom(format!(
                "`{}` is not a number of restarts or `unlimited`",
                serde_yaml::to_string(&other).unwrap_or_default().trim()
            ))),
        }
    }
}

/// `follow:`: how `backfill+follow` polls a source without a change log (TDengine,
/// InfluxDB 1.x) for points newer than the last round's, after the backfill.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FollowConfig {
    /// Time between the starts of two polling rounds.
    #[serde(default = "default_follow_interval", deserialize_with = "duration")]
    pub interval: Duration,
    /// How late a point may reach the source after its own time and still be copied: each
    /// round reads again the points this much older than the last round's end (writes are
    /// idempotent, so a point read twice is written once).
    #[serde(default = "default_lateness", deserialize_with = "duration")]
    pub lateness: Duration,
}

impl Default for FollowConfig {
    fn default() -> Self {
        Self {
            interval: default_follow_interval(),
            lateness: default_lateness(),
        }
    }
}

fn default_follow_interval() -> Duration {
    Duration::from_secs(10)
}

fn default_lateness() -> Duration {
    Duration::from_secs(60)
}

/// How the verify job compares source and target.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    /// Width of a time bucket: each series is compared bucket by bucket.
    #[serde(default = "default_bucket", deserialize_with = "duration")]
    pub bucket: Duration,
    /// Example keys shown per kind of difference.
    #[serde(default = "default_examples")]
    pub examples: usize,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        Self {
            bucket: default_bucket(),
            examples: default_examples(),
        }
    }
}

fn default_bucket() -> Duration {
    Duration::from_secs(3600)
}

fn default_examples() -> usize {
    5
}

/// The entry points of `tsmig-job`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Copy every existing row once, then exit.
    #[default]
    Backfill,
    /// Follow the source's change log.
    Cdc,
    /// Backfill from a consistent snapshot, then follow the change log from it.
    BackfillCdc,
    /// Backfill, then poll a source without a change log for newer points, round by round.
    BackfillFollow,
    /// Compare source and target.
    Verify,
    /// Serve an InfluxDB-compatible write endpoint.
    Ingest,
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        one_of(
            d,
            &[
                ("backfill", Mode::Backfill),
                ("cdc", Mode::Cdc),
                ("backfill+cdc", Mode::BackfillCdc),
                ("backfill+follow", Mode::BackfillFollow),
                ("verify", Mode::Verify),
                ("ingest", Mode::Ingest),
            ],
        )
    }
}

/// Deserialises one of a few words, with a message that lists them.
fn one_of<'de, D: Deserializer<'de>, T: Copy>(d: D, choices: &[(&str, T)]) -> Result<T, D::Error> {
    let value = serde_yaml::Value::deserialize(d)?;
    let text = match &value {
        serde_yaml::Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    };
    let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
    choices
        .iter()
        .find(|(n, _)| *n == text)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            serde::de::Error::custom(format!("`{text}` is not one of {}", names.join(", ")))
        })
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Backfill => "backfill",
            Mode::Cdc => "cdc",
            Mode::BackfillCdc => "backfill+cdc",
            Mode::BackfillFollow => "backfill+follow",
            Mode::Verify => "verify",
            Mode::Ingest => "ingest",
        })
    }
}

/// How the rows of one source table become points.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingConfig {
    /// Source table the mapping reads.
    pub table: String,
    /// Target measurement (InfluxDB); default: the table name.
    #[serde(default)]
    pub measurement: Option<String>,
    /// Device path (IoTDB), e.g. `root.factory.{device_id}`: levels separated by dots, a
    /// level either literal or one `{column}` whose value is quoted where IoTDB needs it.
    #[serde(default)]
    pub path: Option<String>,
    /// Column naming the device: written as a tag and used as the exchange key. Without
    /// it the exchange key is the series (measurement and tag set, or the IoTDB path).
    #[serde(default)]
    pub device_field: Option<String>,
    /// Column holding the point's time (DATETIME, TIMESTAMP, DATE, or an integer epoch).
    pub timestamp_field: String,
    /// Unit of an integer `timestamp_field`: `s`, `ms`, `us` or `ns`.
    #[serde(default)]
    pub timestamp_unit: Option<TimeUnit>,
    /// Further columns written as tags (NULL or empty values leave the tag out).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Columns written as fields — IoTDB's measurements (NULL values are left out, never
    /// written as 0).
    #[serde(alias = "measurements")]
    pub fields: Vec<String>,
    /// Target types declared for some fields (IoTDB: BOOLEAN, INT32, INT64, FLOAT, DOUBLE,
    /// TEXT); the others are inferred from the source column.
    #[serde(default)]
    pub types: std::collections::BTreeMap<String, String>,
    /// CDC: what an UPDATE of a row does. `overwrite` (default) writes the new values over
    /// the point (and deletes the old point first when the device or time changed, or a
    /// field became NULL); `ignore` leaves the target as it is.
    #[serde(default)]
    pub on_update: OnUpdate,
    /// CDC: what a DELETE of a row does. `delete` (default) deletes the point (every field
    /// at its series and time); `ignore` keeps it in the target.
    #[serde(default)]
    pub on_delete: OnDelete,
    /// CDC: the table only ever gets INSERTs, so its changes skip the consolidation step
    /// (each change goes to the sink as it comes). Updates and deletes that do arrive are
    /// still applied, in order, per `on_update` and `on_delete`.
    #[serde(default)]
    pub append_only: bool,
}

/// What a CDC UPDATE does to the target (`on_update`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnUpdate {
    /// Write the new values.
    #[default]
    Overwrite,
    /// Leave the target unchanged.
    Ignore,
}

impl<'de> Deserialize<'de> for OnUpdate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        one_of(
            d,
            &[
                ("overwrite", OnUpdate::Overwrite),
                ("ignore", OnUpdate::Ignore),
            ],
        )
    }
}

/// What a CDC DELETE does to the target (`on_delete`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnDelete {
    /// Delete the point.
    #[default]
    Delete,
    /// Keep the point.
    Ignore,
}

impl<'de> Deserialize<'de> for OnDelete {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        one_of(
            d,
            &[("delete", OnDelete::Delete), ("ignore", OnDelete::Ignore)],
        )
    }
}

/// `mappings:` as a list, or the word `auto` (an empty list: the source's own).
fn mappings_or_auto<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<MappingConfig>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Vec<MappingConfig>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of mappings, or `auto`")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            match v {
                "auto" => Ok(Vec::new()),
                other => Err(E::custom(format!(
                    "`{other}` is not a list of mappings or `auto`"
                ))),
            }
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            // Through the sequence itself, so an error inside keeps its key path.
            Vec::<MappingConfig>::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
        }
    }
    d.deserialize_any(Visitor)
}

/// A unit of time, for integer timestamps and sink precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    /// Seconds (`s`).
    Seconds,
    /// Milliseconds (`ms`).
    Millis,
    /// Microseconds (`us`).
    Micros,
    /// Nanoseconds (`ns`).
    Nanos,
}

impl<'de> Deserialize<'de> for TimeUnit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        one_of(
            d,
            &[
                ("s", TimeUnit::Seconds),
                ("ms", TimeUnit::Millis),
                ("us", TimeUnit::Micros),
                ("ns", TimeUnit::Nanos),
            ],
        )
    }
}

impl TimeUnit {
    /// Nanoseconds in one unit.
    pub fn nanos(self) -> i64 {
        match self {
            TimeUnit::Seconds => 1_000_000_000,
            TimeUnit::Millis => 1_000_000,
            TimeUnit::Micros => 1_000,
            TimeUnit::Nanos => 1,
        }
    }

    /// The unit's name as the job file and InfluxDB spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            TimeUnit::Seconds => "s",
            TimeUnit::Millis => "ms",
            TimeUnit::Micros => "us",
            TimeUnit::Nanos => "ns",
        }
    }
}

/// Where and how often progress is recorded.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// How often durable progress is written to the store (e.g. `1s`, `500ms`).
    #[serde(default = "default_interval", deserialize_with = "duration")]
    pub interval: Duration,
    /// The state store: `file:<directory>`; default `file:./state/<job name>`.
    #[serde(default)]
    pub store: Option<String>,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self {
            interval: default_interval(),
            store: None,
        }
    }
}

fn default_interval() -> Duration {
    Duration::from_secs(1)
}

/// Flow control: how far sources may run ahead of what the sinks have made durable.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowConfig {
    /// Length of an epoch. Sources stamp rows with the epoch of the moment they read them;
    /// a shorter epoch makes rows durable (and checkpointable) sooner.
    #[serde(default = "default_epoch", deserialize_with = "duration")]
    pub epoch: Duration,
    /// Rows a worker's source may have read that are not yet durable in the target; past
    /// this it waits. Bounds memory whatever the speed of source and target.
    #[serde(default = "default_max_in_flight_rows")]
    pub max_in_flight_rows: u64,
}

impl Default for FlowConfig {
    fn default() -> Self {
        Self {
            epoch: default_epoch(),
            max_in_flight_rows: default_max_in_flight_rows(),
        }
    }
}

fn default_epoch() -> Duration {
    // Rows become durable (and sources may read on) one epoch after they are read at the
    // earliest: with `max_in_flight_rows` this caps a worker at 40,000 rows per 20 ms.
    Duration::from_millis(20)
}

fn default_max_in_flight_rows() -> u64 {
    // Enough to cover the time an epoch takes to become durable at full speed (BENCHMARKS.md),
    // small enough to keep a job's memory in tens of megabytes.
    40_000
}

/// A loaded job: the file's content plus what is needed to report errors against it.
#[derive(Debug, Clone)]
pub struct Job {
    /// The parsed file.
    pub file: JobFile,
    /// Where it was read from.
    pub path: PathBuf,
    /// Key path → line, for errors found after parsing.
    pub locations: Locations,
    /// Values substituted from the environment, masked in messages.
    pub secrets: Secrets,
}

impl ErrorAt for Job {
    fn error_at(&self, key: &str, message: String) -> JobError {
        Job::error_at(self, key, message)
    }
}

impl Job {
    /// Reads, substitutes and parses a job file.
    pub fn load(path: &Path) -> Result<Job, JobError> {
        let text = std::fs::read_to_string(path).map_err(|e| JobError {
            file: path.to_path_buf(),
            place: None,
            key: None,
            message: format!("cannot read the job file: {e}"),
        })?;
        Self::parse(path, &text, |name| std::env::var(name).ok())
    }

    /// Parses job file text; `lookup` resolves `${VAR}` references.
    pub fn parse(
        path: &Path,
        text: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Job, JobError> {
        let Parsed {
            value: mut file,
            locations,
            secrets,
        } = parse_yaml::<JobFile>(path, text, lookup)?;
        file.source.at = "source".into();
        file.sink.at = "sink".into();
        let job = Job {
            file,
            path: path.to_path_buf(),
            locations,
            secrets,
        };
        job.check()?;
        Ok(job)
    }

    /// Where the file writes the key at `key` (`restart.initial`), if it does: a key it
    /// leaves out takes the process configuration's value (`config/tsmig.yaml`).
    pub fn sets(&self, key: &str) -> Option<(usize, usize)> {
        self.locations.get(key)
    }

    /// An error about the key at `key` (a path such as `mappings[0].fields[2]`).
    pub fn error_at(&self, key: &str, message: impl Into<String>) -> JobError {
        JobError {
            file: self.path.clone(),
            place: self.locations.find(key),
            key: Some(key.to_string()),
            message: self.secrets.redact(&message.into()),
        }
    }

    /// The state directory named by `checkpoint.store`.
    pub fn state_dir(&self) -> Result<PathBuf, JobError> {
        match &self.file.checkpoint.store {
            None => Ok(PathBuf::from("state").join(&self.file.name)),
            Some(store) => match store.strip_prefix("file:") {
                Some(dir) if !dir.is_empty() => Ok(PathBuf::from(dir)),
                _ => Err(self.error_at(
                    "checkpoint.store",
                    format!("`{store}` is not a state store; use file:<directory>"),
                )),
            },
        }
    }

    /// The dead-letter file.
    pub fn dead_letter_path(&self) -> Result<PathBuf, JobError> {
        match &self.file.dead_letter {
            Some(path) => Ok(path.clone()),
            None => Ok(self.state_dir()?.join("dead-letter.jsonl")),
        }
    }

    /// Checks that need neither a database nor the connectors (which check their own
    /// sections: `connectors::check`).
    fn check(&self) -> Result<(), JobError> {
        let f = &self.file;
        if f.name.trim().is_empty() {
            return Err(self.error_at("name", "the job name must not be empty"));
        }
        for (i, m) in f.mappings.iter().enumerate() {
            if m.fields.is_empty() {
                return Err(self.error_at(
                    &format!("mappings[{i}].fields"),
                    "a mapping needs at least one field",
                ));
            }
        }
        for (j, later) in f.mappings.iter().enumerate() {
            for (i, earlier) in f.mappings[..j].iter().enumerate() {
                if let Some(why) = same_points(earlier, later) {
                    return Err(self.error_at(
                        &format!("mappings[{j}]"),
                        format!("`mappings[{j}]` duplicates `mappings[{i}]`: {why}"),
                    ));
                }
            }
        }
        if f.flow.epoch < Duration::from_millis(1) {
            return Err(self.error_at("flow.epoch", "must be at least 1ms"));
        }
        // Where the file sets one of the two, the other may come from config/tsmig.yaml:
        // the pair is checked once merged (`config::Effective::apply_to`).
        let both = self.sets("restart.max").is_some() && self.sets("restart.initial").is_some();
        if both && f.restart.max < f.restart.initial {
            return Err(self.error_at("restart.max", "must be at least `restart.initial`"));
        }
        if f.follow.interval < Duration::from_millis(10) {
            return Err(self.error_at("follow.interval", "must be at least 10ms"));
        }
        if f.flow.max_in_flight_rows == 0 {
            return Err(self.error_at("flow.max_in_flight_rows", "must be at least 1"));
        }
        self.state_dir()?;
        Ok(())
    }
}

/// Why two mappings write the same points, if they do: the same table's rows to the same
/// series (measurement, or IoTDB path, and the same tag columns, the device's included) at
/// the same time column. Whatever their fields: both writing a field writes it twice, and
/// fields split between two mappings are two versions of one point, of which CDC keeps the
/// last (its rule: a point is written with its last values, deleted first when an earlier
/// version had a field the last lacks). Rows of different tables are different rows, and
/// another measurement, tag or time column makes other points: those are allowed.
fn same_points(a: &MappingConfig, b: &MappingConfig) -> Option<String> {
    if a.table != b.table
        || a.timestamp_field != b.timestamp_field
        || a.timestamp_unit != b.timestamp_unit
    {
        return None;
    }
    let target = |m: &MappingConfig| match &m.path {
        Some(path) => format!("path `{}`", path.trim()),
        None => format!(
            "measurement `{}`",
            m.measurement.as_deref().unwrap_or(&m.table)
        ),
    };
    fn tag_columns(m: &MappingConfig) -> Vec<&str> {
        let mut columns: Vec<&str> = m.tags.iter().map(String::as_str).collect();
        if m.path.is_none() {
            columns.extend(m.device_field.as_deref());
        }
        columns.sort_unstable();
        columns.dedup();
        columns
    }
    if target(a) != target(b) || tag_columns(a) != tag_columns(b) {
        return None;
    }
    let shared: Vec<&str> = a
        .fields
        .iter()
        .filter(|f| b.fields.contains(f))
        .map(String::as_str)
        .collect();
    let series = format!(
        "both write the rows of table `{}` to the same points ({}, tags [{}], time `{}`)",
        a.table,
        target(a),
        tag_columns(a).join(", "),
        a.timestamp_field
    );
    Some(if shared.is_empty() {
        format!(
            "{series}, one with fields [{}], the other with [{}]: every point would be written twice, and CDC would keep only one mapping's fields. List all the fields in one mapping",
            a.fields.join(", "),
            b.fields.join(", ")
        )
    } else {
        format!(
            "{series} and both write [{}]: every point would be written twice. Remove one, or list all the fields in one mapping",
            shared.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(mappings: &str) -> Result<Job, JobError> {
        let text = format!(
            "name: t\nsource:\n  type: mysql\n  url: mysql://u@h/db\n  tables:\n    - name: a\n    - name: b\nsink:\n  type: blackhole\nmappings:\n{mappings}"
        );
        Job::parse(Path::new("job.yaml"), &text, |_| None)
    }

    fn mapping(table: &str, rest: &str) -> String {
        format!("  - table: {table}\n    timestamp_field: ts\n{rest}")
    }

    #[test]
    fn two_mappings_of_the_same_points_are_refused_naming_both() {
        let first = mapping(
            "a",
            "    measurement: m\n    device_field: d\n    tags: [s]\n    fields: [x, y]\n",
        );
        // The same points: tags in another order, the device listed as a tag too, a field
        // subset; then fields split between the two.
        for (second, says) in [
            (
                mapping(
                    "a",
                    "    measurement: m\n    device_field: d\n    tags: [s, d]\n    fields: [y]\n",
                ),
                "and both write [y]: every point would be written twice",
            ),
            (
                mapping(
                    "a",
                    "    measurement: m\n    tags: [d, s]\n    fields: [z]\n",
                ),
                "one with fields [x, y], the other with [z]",
            ),
        ] {
            let other = mapping("b", "    fields: [x]\n");
            let err = job(&format!("{first}{other}{second}")).unwrap_err();
            assert_eq!(err.key.as_deref(), Some("mappings[2]"));
            assert_eq!(err.place, Some((20, 5)));
            assert!(
                err.message.starts_with(
                    "`mappings[2]` duplicates `mappings[0]`: both write the rows of table `a` to the same points (measurement `m`, tags [d, s], time `ts`)"
                ),
                "{}",
                err.message
            );
            assert!(err.message.contains(says), "{}", err.message);
        }
        // A measurement defaults to the table's name.
        let err = job(&format!(
            "{}{}",
            mapping("a", "    fields: [x]\n"),
            mapping("a", "    measurement: a\n    fields: [x]\n")
        ))
        .unwrap_err();
        assert!(
            err.message.contains("duplicates `mappings[0]`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn sets_tells_the_keys_the_file_writes_from_those_left_to_defaults() {
        let job = Job::parse(
            Path::new("job.yaml"),
            "name: t\nsource:\n  type: mysql\n  url: mysql://u@h/db\nsink:\n  type: blackhole\nrestart: {attempts: 3}\nflow:\n  epoch: 5ms\n",
            |_| None,
        )
        .unwrap();
        assert_eq!(job.sets("restart.attempts"), Some((7, 11)));
        assert_eq!(job.sets("flow.epoch"), Some((9, 3)));
        // Left out: the defaults stand in, and the process configuration may replace them.
        assert_eq!(job.sets("restart.strategy"), None);
        assert_eq!(job.sets("checkpoint.store"), None);
        assert_eq!(job.file.restart.strategy, RestartStrategy::Exponential);
        // One of restart.initial and restart.max alone is checked once merged.
        let text = "name: t\nsource:\n  type: mysql\n  url: mysql://u@h/db\nsink:\n  type: blackhole\nrestart:\n  initial: 1m\n";
        assert!(Job::parse(Path::new("job.yaml"), text, |_| None).is_ok());
        let err = Job::parse(
            Path::new("job.yaml"),
            &format!("{text}  max: 10s\n"),
            |_| None,
        )
        .unwrap_err();
        assert_eq!(err.key.as_deref(), Some("restart.max"));
    }

    #[test]
    fn mappings_that_write_other_points_are_allowed() {
        let base = "    measurement: m\n    device_field: d\n    tags: [s]\n    fields: [x]\n";
        for second in [
            mapping("b", base),
            mapping("a", &base.replace("measurement: m", "measurement: n")),
            mapping("a", &base.replace("tags: [s]", "tags: []")),
            mapping("a", &base.replace("device_field: d", "device_field: e")),
            mapping("a", base).replace("timestamp_field: ts", "timestamp_field: ts2"),
        ] {
            let text = format!("{}{second}", mapping("a", base));
            assert!(job(&text).is_ok(), "{text}");
        }
    }
}
