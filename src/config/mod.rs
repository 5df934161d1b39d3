//! The process configuration, `config/tsmig.yaml`: what a process runs with whatever its
//! job — workers, the cluster, where state lives, the restart strategy and flow bounds for
//! jobs that set none, the metrics and status endpoints, the log — as Flink keeps it in
//! `conf/`. The job file stays in `jobs/`.
//!
//! ```text
//!   built-in default ──▶ config/tsmig.yaml ──▶ job file ──▶ command line, environment
//!                        (--conf-dir DIR,       (restart, flow,
//!                         TSMIG_CONF_DIR,        checkpoint.store)
//!                         else ./config)
//! ```
//!
//! Each source to the right overrides those to its left, key by key ([`Effective`]), and
//! every value remembers where it came from: `tsmig-job config` prints them. The file is
//! read as a job file is ([`crate::spec::parse_yaml`]): `${ENV}` references, unknown keys
//! and wrong types refused with the file, line and key, secrets masked.
//!
//! A leaf beside the job: it builds on `spec` and `job`; only the binary imports it.

pub mod cluster;
mod effective;
pub mod log;

pub use cluster::ProcessIndex;
pub use effective::{Effective, Flags, Origin, Row, Sourced};
pub use log::LogFormat;

use crate::job::{duration, FlowConfig, JobError, Locations, RestartConfig, Secrets};
use crate::spec::{parse_yaml, Parsed};
use serde::{Deserialize, Deserializer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file's name in the configuration directory.
pub const FILE_NAME: &str = "tsmig.yaml";

/// `config/tsmig.yaml` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Worker threads in each process (`--workers`). Default 1.
    #[serde(default = "one")]
    pub workers: usize,
    /// The processes of the cluster and how they reach each other.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// Where jobs keep their state.
    #[serde(default)]
    pub state: StateConfig,
    /// The restart strategy of jobs whose file leaves it out, key by key: the job file's
    /// `restart:` keys (`strategy`, `initial`, `max`, `attempts`, `reset_after`).
    #[serde(default)]
    pub restart: RestartConfig,
    /// The Prometheus endpoint.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// The status page and API, and the probes `/health` and `/ready`.
    #[serde(default)]
    pub status: StatusConfig,
    /// What the log looks like.
    #[serde(default)]
    pub log: LogConfig,
    /// Flow control of jobs whose file leaves it out, key by key: the job file's `flow:`
    /// keys (`epoch`, `max_in_flight_rows`).
    #[serde(default)]
    pub flow: FlowConfig,
    /// How long a stop (SIGTERM) may take to write what was read and checkpoint before the
    /// job stops at once (`--stop-timeout`). Default 60s.
    #[serde(default = "default_stop_timeout", deserialize_with = "duration")]
    pub stop_timeout: Duration,
}

impl Default for ConfigFile {
    fn default() -> Self {
        Self {
            workers: one(),
            cluster: ClusterConfig::default(),
            state: StateConfig::default(),
            restart: RestartConfig::default(),
            metrics: MetricsConfig::default(),
            status: StatusConfig::default(),
            log: LogConfig::default(),
            flow: FlowConfig::default(),
            stop_timeout: default_stop_timeout(),
        }
    }
}

fn one() -> usize {
    1
}

fn default_stop_timeout() -> Duration {
    Duration::from_secs(60)
}

/// `cluster:`. One process needs none of it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Processes in the cluster (`--processes`). Default: as many as `hosts` names, else 1.
    #[serde(default)]
    pub processes: Option<usize>,
    /// Every process's `host:port`, in process order, as a hostfile's lines
    /// (`--hostfile`). Not with `dns`.
    #[serde(default)]
    pub hosts: Option<Vec<String>>,
    /// The hosts as one `host:port` pattern in which `{i}` stands for the process index,
    /// 0 ..= processes-1: `tsmig-{i}.tsmig:2101` names the pods of a StatefulSet `tsmig`
    /// behind its headless Service `tsmig`. Needs `processes`; not with `hosts`.
    #[serde(default)]
    pub dns: Option<String>,
    /// This process's index (`--process`), or `auto`: from `TSMIG_PROCESS` if set, else the
    /// ordinal the hostname ends with (`tsmig-2` → 2, as a StatefulSet pod's name does).
    /// Process 0 plans and writes the checkpoints. Default 0.
    #[serde(default)]
    pub process: ProcessIndex,
}

/// `state:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// The directory under which a job whose file sets no `checkpoint.store` keeps its
    /// state, in `<dir>/<job name>` (checkpoints, lock, dead letters). Default `state`
    /// (relative to the working directory).
    #[serde(default = "default_state_dir")]
    pub dir: PathBuf,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            dir: default_state_dir(),
        }
    }
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("state")
}

/// `metrics:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve Prometheus metrics at `http://ADDR/metrics` (`--metrics-addr`), e.g.
    /// `127.0.0.1:9464`; in a pod `0.0.0.0:9464`. Default: not served.
    #[serde(default, deserialize_with = "address")]
    pub addr: Option<SocketAddr>,
}

/// `status:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusConfig {
    /// Serve the status page, its API and the probes `/health` and `/ready` at
    /// `http://ADDR/` (`--status-addr`), e.g. `127.0.0.1:8081`; in a pod `0.0.0.0:8081`.
    /// Default: not served.
    #[serde(default, deserialize_with = "address")]
    pub addr: Option<SocketAddr>,
    /// The bearer token the API's POSTs (stop, cutover) need when `addr` is not loopback;
    /// without one they are refused there. Write `${TSMIG_STATUS_TOKEN}` rather than the
    /// token; the environment variable `TSMIG_STATUS_TOKEN` overrides it. Masked in
    /// everything tsmig prints.
    #[serde(default)]
    pub token: Option<String>,
}

/// `log:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (a line per event) or `json` (a JSON object per line, for a log collector).
    /// Secrets are masked in both.
    #[serde(default)]
    pub format: LogFormat,
    /// The least severe level logged: `error`, `warn`, `info`, `debug` or `trace`, or
    /// `off`; or per module, `info,tsmig::runner=debug`. `RUST_LOG` overrides it. Default
    /// `info`.
    #[serde(default = "default_level")]
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::default(),
            level: default_level(),
        }
    }
}

fn default_level() -> String {
    "info".into()
}

/// An optional socket address, with a message that shows the form.
fn address<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    text.parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "`{text}` is not an address (IP:port, e.g. 0.0.0.0:9464)"
        ))
    })
}

/// How the configuration was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// `--conf-dir`.
    Flag,
    /// `TSMIG_CONF_DIR`.
    Env,
    /// `./config`.
    WorkingDir,
}

/// A loaded process configuration: the file's content plus what is needed to report
/// errors against it, or the built-in defaults where there is no file.
#[derive(Debug, Clone, Default)]
pub struct ProcessConfig {
    /// The parsed file (the built-in defaults without one).
    pub file: ConfigFile,
    /// Where it was read from, and how it was found; `None`: no file.
    pub source: Option<(PathBuf, Found)>,
    /// Key path → line.
    pub locations: Locations,
    /// Values substituted from the environment and secrets written in the file.
    pub secrets: Secrets,
}

impl ProcessConfig {
    /// The file to read: `DIR/tsmig.yaml` of `--conf-dir DIR`, else of `TSMIG_CONF_DIR`
    /// (either must exist), else `./config/tsmig.yaml` if there is one; `None`: no file,
    /// the built-in defaults.
    pub fn find(
        conf_dir: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<(PathBuf, Found)>, String> {
        let given = match conf_dir {
            Some(dir) => Some((dir.to_path_buf(), Found::Flag, "--conf-dir")),
            None => env("TSMIG_CONF_DIR")
                .filter(|d| !d.is_empty())
                .map(|d| (PathBuf::from(d), Found::Env, "TSMIG_CONF_DIR")),
        };
        if let Some((dir, found, by)) = given {
            if !dir.is_dir() {
                return Err(format!("{by} {}: no such directory", dir.display()));
            }
            let file = dir.join(FILE_NAME);
            if !file.is_file() {
                return Err(format!(
                    "{by} {}: the directory has no {FILE_NAME}",
                    dir.display()
                ));
            }
            return Ok(Some((file, found)));
        }
        let file = Path::new("config").join(FILE_NAME);
        Ok(file.is_file().then_some((file, Found::WorkingDir)))
    }

    /// Finds ([`ProcessConfig::find`]) and loads the configuration; the built-in defaults
    /// where there is none.
    pub fn discover(
        conf_dir: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ProcessConfig, String> {
        match Self::find(conf_dir, &env)? {
            None => Ok(ProcessConfig::default()),
            Some((path, found)) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                Self::parse(&path, found, &text, env).map_err(|e| e.to_string())
            }
        }
    }

    /// Parses the file's text; `lookup` resolves `${VAR}` references.
    pub fn parse(
        path: &Path,
        found: Found,
        text: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<ProcessConfig, JobError> {
        let Parsed {
            value: file,
            locations,
            secrets,
        } = parse_yaml::<Option<ConfigFile>>(path, text, lookup)?;
        let config = ProcessConfig {
            // An empty file, or one of comments only, is the defaults.
            file: file.unwrap_or_default(),
            source: Some((path.to_path_buf(), found)),
            locations,
            secrets,
        };
        config.check()?;
        Ok(config)
    }

    /// The file, if there is one.
    pub fn path(&self) -> Option<&Path> {
        self.source.as_ref().map(|(p, _)| p.as_path())
    }

    /// Where the file writes the key at `key`, if it does.
    pub fn sets(&self, key: &str) -> Option<(usize, usize)> {
        self.source.as_ref()?;
        self.locations.get(key)
    }

    /// An error about the key at `key`.
    pub fn error_at(&self, key: &str, message: impl Into<String>) -> JobError {
        JobError {
            file: self.path().map(Path::to_path_buf).unwrap_or_default(),
            place: self.locations.find(key),
            key: Some(key.to_string()),
            message: self.secrets.redact(&message.into()),
        }
    }

    /// What can be checked of the file alone; the rest needs the command line
    /// ([`Effective::resolve`]).
    fn check(&self) -> Result<(), JobError> {
        let f = &self.file;
        if f.workers == 0 {
            return Err(self.error_at("workers", "must be at least 1"));
        }
        let c = &f.cluster;
        if c.processes == Some(0) {
            return Err(self.error_at("cluster.processes", "must be at least 1"));
        }
        if c.hosts.is_some() && c.dns.is_some() {
            return Err(self.error_at(
                "cluster.dns",
                "`cluster.hosts` and `cluster.dns` are both set; name the hosts one way",
            ));
        }
        if let Some(hosts) = &c.hosts {
            if let Some(i) = hosts.iter().position(|h| !cluster::is_host_port(h)) {
                return Err(self.error_at(
                    &format!("cluster.hosts[{i}]"),
                    format!("`{}` is not host:port", hosts[i]),
                ));
            }
            if let Some(p) = c.processes.filter(|&p| p > hosts.len()) {
                return Err(self.error_at(
                    "cluster.hosts",
                    format!("names {} hosts but `cluster.processes` is {p}", hosts.len()),
                ));
            }
        }
        if let Some(dns) = &c.dns {
            cluster::check_dns(dns).map_err(|e| self.error_at("cluster.dns", e))?;
            if c.processes.is_none() {
                return Err(self.error_at(
                    "cluster.dns",
                    "needs `cluster.processes`: how many hosts the pattern names",
                ));
            }
        }
        if let (ProcessIndex::At(i), Some(p)) = (c.process, self.processes()) {
            if i >= p {
                return Err(self.error_at(
                    "cluster.process",
                    format!("{i} is not below `cluster.processes` {p}"),
                ));
            }
        }
        if f.state.dir.as_os_str().is_empty() {
            return Err(self.error_at("state.dir", "must not be empty"));
        }
        // One of the two alone is checked once merged with the job's (`Effective::apply_to`).
        let both = self.sets("restart.max").is_some() && self.sets("restart.initial").is_some();
        if both && f.restart.max < f.restart.initial {
            return Err(self.error_at("restart.max", "must be at least `restart.initial`"));
        }
        if f.flow.epoch < Duration::from_millis(1) {
            return Err(self.error_at("flow.epoch", "must be at least 1ms"));
        }
        if f.flow.max_in_flight_rows == 0 {
            return Err(self.error_at("flow.max_in_flight_rows", "must be at least 1"));
        }
        log::check_level(&f.log.level).map_err(|e| self.error_at("log.level", e))?;
        if f.status.token.as_deref() == Some("") {
            return Err(self.error_at(
                "status.token",
                "is empty (an unset ${VAR:-} perhaps); leave the key out for no token",
            ));
        }
        Ok(())
    }

    /// The processes the file says the cluster has: `cluster.processes`, else as many as
    /// `cluster.hosts` names; `None`: it does not say.
    fn processes(&self) -> Option<usize> {
        let c = &self.file.cluster;
        c.processes.or(c.hosts.as_ref().map(Vec::len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ProcessConfig, JobError> {
        ProcessConfig::parse(
            Path::new("config/tsmig.yaml"),
            Found::WorkingDir,
            text,
            |name| (name == "TOKEN").then(|| "s3cret-token".to_string()),
        )
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn every_key_is_read() {
        let c = parse(
            "workers: 4\ncluster:\n  processes: 3\n  dns: tsmig-{i}.tsmig:2101\n  process: auto\nstate:\n  dir: /var/lib/tsmig\nrestart:\n  strategy: fixed\n  initial: 2s\n  attempts: unlimited\nmetrics:\n  addr: 0.0.0.0:9464\nstatus:\n  addr: 0.0.0.0:8081\n  token: ${TOKEN}\nlog:\n  format: json\n  level: info,tsmig=debug\nflow:\n  epoch: 50ms\n  max_in_flight_rows: 1000\nstop_timeout: 2m\n",
        )
        .unwrap();
        let f = &c.file;
        assert_eq!(f.workers, 4);
        assert_eq!(f.cluster.processes, Some(3));
        assert_eq!(f.cluster.dns.as_deref(), Some("tsmig-{i}.tsmig:2101"));
        assert_eq!(f.cluster.process, ProcessIndex::Auto);
        assert_eq!(f.state.dir, Path::new("/var/lib/tsmig"));
        assert_eq!(f.restart.strategy, crate::job::RestartStrategy::Fixed);
        assert_eq!(f.restart.initial, Duration::from_secs(2));
        assert_eq!(f.metrics.addr, Some("0.0.0.0:9464".parse().unwrap()));
        assert_eq!(f.status.addr, Some("0.0.0.0:8081".parse().unwrap()));
        assert_eq!(f.status.token.as_deref(), Some("s3cret-token"));
        assert_eq!(f.log.format, LogFormat::Json);
        assert_eq!(f.flow.epoch, Duration::from_millis(50));
        assert_eq!(f.flow.max_in_flight_rows, 1000);
        assert_eq!(f.stop_timeout, Duration::from_secs(120));
        assert_eq!(c.sets("cluster.dns"), Some((4, 3)));
        assert_eq!(c.sets("restart.max"), None);
        assert_eq!(c.secrets.redact("token s3cret-token"), "token ***");
    }

    #[test]
    fn an_empty_file_is_the_defaults() {
        for text in ["", "# nothing set\n"] {
            let c = parse(text).unwrap();
            assert_eq!(c.file.workers, 1);
            assert_eq!(c.file.stop_timeout, Duration::from_secs(60));
            assert_eq!(c.file.state.dir, Path::new("state"));
        }
    }

    #[test]
    fn errors_name_the_line_and_key() {
        for (text, says) in [
            (
                "workers: 2\ncluster:\n  processes: 2\n  hosts: [a:1, b:2]\n  dns: tsmig-{i}:2101\n",
                "config/tsmig.yaml:5:3: key `cluster.dns`: `cluster.hosts` and `cluster.dns` are both set",
            ),
            (
                "cluster:\n  processes: 2\n  dns: tsmig.tsmig:2101\n",
                ":3:3: key `cluster.dns`: `tsmig.tsmig:2101` has no `{i}`",
            ),
            (
                "cluster:\n  dns: tsmig-{i}:2101\n",
                ":2:3: key `cluster.dns`: needs `cluster.processes`",
            ),
            (
                "cluster:\n  processes: 2\n  dns: tsmig-{i}:2101\n  process: 2\n",
                ":4:3: key `cluster.process`: 2 is not below `cluster.processes` 2",
            ),
            (
                "cluster:\n  hosts:\n    - a:1\n    - b\n",
                ":4:7: key `cluster.hosts[1]`: `b` is not host:port",
            ),
            (
                "cluster:\n  processes: 3\n  hosts: [a:1, b:2]\n",
                ":3:3: key `cluster.hosts`: names 2 hosts but `cluster.processes` is 3",
            ),
            (
                "cluster:\n  process: first\n",
                ":2:3: key `cluster.process`: `first` is not a process index or `auto`",
            ),
            ("workers: 0\n", ":1:1: key `workers`: must be at least 1"),
            (
                "workers: two\n",
                ":1:1: key `workers`: invalid type: string \"two\", expected usize",
            ),
            (
                "metrics:\n  addr: localhost\n",
                ":2:3: key `metrics.addr`: `localhost` is not an address",
            ),
            (
                "status:\n  adr: 0.0.0.0:8081\n",
                ":2:3: key `status.adr`: unknown field `adr`, expected `addr` or `token`",
            ),
            (
                "log:\n  format: xml\n",
                ":2:3: key `log.format`: `xml` is not one of text, json",
            ),
            ("log:\n  level: loud\n", ":2:3: key `log.level`: `loud` is not"),
            (
                "restart:\n  initial: 1m\n  max: 10s\n",
                ":3:3: key `restart.max`: must be at least `restart.initial`",
            ),
            ("flow:\n  epoch: 0s\n", ":2:3: key `flow.epoch`: must be at least 1ms"),
            (
                "stop_timeout: soon\n",
                ":1:1: key `stop_timeout`: `soon` is not a duration",
            ),
            (
                "status:\n  token: ${NOT_SET_ANYWHERE}\n",
                ":2:10: environment variable NOT_SET_ANYWHERE is not set",
            ),
        ] {
            let err = error(text);
            assert!(err.contains(says), "{text:?}:\n{err}\nlacks\n{says}");
            assert!(err.starts_with("config/tsmig.yaml:"), "{err}");
        }
    }

    #[test]
    fn a_secret_in_a_bad_value_is_masked() {
        let err = error("status:\n  addr: ${TOKEN}\n  token: ${TOKEN}\n");
        assert!(err.contains("`***` is not an address"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn hosts_give_the_process_count() {
        let c = parse("cluster:\n  hosts: [a:1, b:2]\n  process: 1\n").unwrap();
        assert_eq!(c.processes(), Some(2));
        assert!(error("cluster:\n  hosts: [a:1, b:2]\n  process: 2\n")
            .contains("2 is not below `cluster.processes` 2"));
    }

    #[test]
    fn an_explicit_directory_must_exist_and_hold_the_file() {
        let none = |_: &str| None;
        let dir = std::env::temp_dir().join(format!("tsmig-conf-find-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let err = ProcessConfig::find(Some(&dir), none).unwrap_err();
        assert!(err.ends_with("no such directory"), "{err}");
        std::fs::create_dir_all(&dir).unwrap();
        let err = ProcessConfig::find(None, |n: &str| {
            (n == "TSMIG_CONF_DIR").then(|| dir.display().to_string())
        })
        .unwrap_err();
        assert!(
            err.starts_with("TSMIG_CONF_DIR ") && err.ends_with("has no tsmig.yaml"),
            "{err}"
        );
        std::fs::write(dir.join(FILE_NAME), "workers: 3\n").unwrap();
        // The flag wins over the variable.
        let found = ProcessConfig::find(Some(&dir), |_: &str| Some("/nowhere".into())).unwrap();
        assert_eq!(found, Some((dir.join(FILE_NAME), Found::Flag)));
        let c = ProcessConfig::discover(Some(&dir), none).unwrap();
        assert_eq!(c.file.workers, 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
