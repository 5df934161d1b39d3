//! What a process runs with, once the command line, the environment, the job file and
//! `config/tsmig.yaml` have had their say, and where each value came from.
//!
//! Precedence, highest first: a command-line flag (or, for the log level and the status
//! token, the environment variable), then the job file for the keys a job has
//! (`restart`, `flow`, `checkpoint.store`), then `config/tsmig.yaml`, then tsmig's
//! default. Key by key: a job file that sets `restart.attempts` keeps the configuration's
//! `restart.strategy`.

use super::cluster::{self, AutoFrom, ProcessIndex};
use super::{LogFormat, ProcessConfig};
use crate::job::{Attempts, FlowConfig, Job, RestartConfig, RestartStrategy, Secrets};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What the command line says (`None`: the flag was not given).
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// `--workers`.
    pub workers: Option<usize>,
    /// `--processes`.
    pub processes: Option<usize>,
    /// `--process`.
    pub process: Option<usize>,
    /// `--hostfile`.
    pub hostfile: Option<PathBuf>,
    /// `--metrics-addr`.
    pub metrics_addr: Option<SocketAddr>,
    /// `--status-addr`.
    pub status_addr: Option<SocketAddr>,
    /// `--stop-timeout`.
    pub stop_timeout: Option<Duration>,
    /// `--log-format`.
    pub log_format: Option<LogFormat>,
    /// `--restart`.
    pub restart: Option<RestartStrategy>,
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// tsmig's own default.
    Default,
    /// A command-line flag, e.g. `--workers`.
    Flag(&'static str),
    /// An environment variable.
    Env(&'static str),
    /// A key of the process configuration, at this line.
    Config(PathBuf, usize),
    /// A key of the job file, at this line.
    Job(PathBuf, usize),
    /// `cluster.process: auto`, from the ordinal of this hostname.
    Hostname(String),
    /// Made from another value: `checkpoint.store` from `state.dir` and the job's name.
    From(&'static str, Box<Origin>),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
            Origin::Env(name) => write!(f, "env {name}"),
            Origin::Config(path, line) => write!(f, "{}:{line}", path.display()),
            Origin::Job(path, line) => write!(f, "job {}:{line}", path.display()),
            Origin::Hostname(name) => write!(f, "hostname {name} (cluster.process: auto)"),
            Origin::From(key, origin) => write!(f, "{key}, {origin}"),
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Sourced<T> {
    /// The value.
    pub value: T,
    /// Where it came from.
    pub from: Origin,
}

impl<T> Sourced<T> {
    fn new(value: T, from: Origin) -> Self {
        Self { value, from }
    }
}

/// One line of `tsmig-job config`: a key, its value as shown, where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The key, as in `config/tsmig.yaml` (`cluster.processes`).
    pub key: String,
    /// The value as shown (secrets as `***`).
    pub value: String,
    /// Where it came from.
    pub from: Origin,
}

/// The process configuration in effect.
#[derive(Debug, Clone)]
pub struct Effective {
    /// The file read, if any.
    pub file: Option<PathBuf>,
    /// Worker threads in this process.
    pub workers: Sourced<usize>,
    /// Processes in the cluster.
    pub processes: Sourced<usize>,
    /// This process's index.
    pub process: Sourced<usize>,
    /// `host:port` of every process, in process order; empty for one process.
    pub hosts: Sourced<Vec<String>>,
    /// Where this process listens for its peers, when that is not its own entry in
    /// `hosts` ([`cluster::listen_address`]).
    pub listen: Option<String>,
    /// The base of the default state directory.
    pub state_dir: Sourced<PathBuf>,
    /// Where the Prometheus endpoint listens.
    pub metrics_addr: Sourced<Option<SocketAddr>>,
    /// Where the status page and API listen.
    pub status_addr: Sourced<Option<SocketAddr>>,
    /// The status API's bearer token.
    pub status_token: Sourced<Option<String>>,
    /// The log's format.
    pub log_format: Sourced<LogFormat>,
    /// The log's level or directives.
    pub log_level: Sourced<String>,
    /// How long a stop may drain.
    pub stop_timeout: Sourced<Duration>,
    /// `--restart`, applied over the job's strategy.
    restart_flag: Option<RestartStrategy>,
    /// The configuration, for the job-level keys ([`Effective::apply_to`]).
    config: ProcessConfig,
    /// Secrets to mask: the configuration's and the token's.
    pub secrets: Secrets,
}

impl Effective {
    /// Resolves `config` under the command line `flags`; `env` reads the environment and
    /// `hostname` names this machine (for `cluster.process: auto`).
    pub fn resolve(
        config: &ProcessConfig,
        flags: &Flags,
        env: impl Fn(&str) -> Option<String>,
        hostname: impl FnOnce() -> Option<String>,
    ) -> Result<Effective, String> {
        let f = &config.file;
        let c = &f.cluster;
        let from_config = |key: &str| origin(config, key);

        let workers = match flags.workers {
            Some(0) => return Err("--workers must be at least 1".into()),
            Some(n) => Sourced::new(n, Origin::Flag("--workers")),
            None => Sourced::new(f.workers, from_config("workers")),
        };

        let listed = match (&flags.hostfile, &c.hosts) {
            (Some(path), _) => Some(Sourced::new(
                cluster::read_hostfile(path)?,
                Origin::Flag("--hostfile"),
            )),
            (None, Some(hosts)) => Some(Sourced::new(hosts.clone(), from_config("cluster.hosts"))),
            (None, None) => None,
        };
        let processes = match (flags.processes, c.processes) {
            (Some(0), _) => return Err("--processes must be at least 1".into()),
            (Some(p), _) => Sourced::new(p, Origin::Flag("--processes")),
            (None, Some(p)) => Sourced::new(p, from_config("cluster.processes")),
            (None, None) => match (&flags.hostfile, &c.hosts) {
                (None, Some(hosts)) => Sourced::new(hosts.len(), from_config("cluster.hosts")),
                _ => Sourced::new(1, Origin::Default),
            },
        };

        let process = match (flags.process, c.process) {
            (Some(i), _) => Sourced::new(i, Origin::Flag("--process")),
            // One process is process 0, whatever the hostname (a Job's pod has no ordinal).
            (None, ProcessIndex::Auto) if processes.value == 1 => {
                Sourced::new(0, from_config("cluster.process"))
            }
            (None, ProcessIndex::Auto) => {
                let (i, found) = cluster::auto_index(&env, hostname)
                    .map_err(|e| config.error_at("cluster.process", e).to_string())?;
                let from = match found {
                    AutoFrom::Env => Origin::Env("TSMIG_PROCESS"),
                    AutoFrom::Hostname(name) => Origin::Hostname(name),
                };
                Sourced::new(i, from)
            }
            (None, ProcessIndex::At(i)) => Sourced::new(i, from_config("cluster.process")),
        };
        if process.value >= processes.value {
            let message = format!(
                "process {} ({}) is not below processes {} ({})",
                process.value, process.from, processes.value, processes.from
            );
            return Err(match (&process.from, &processes.from) {
                (Origin::Flag(_), Origin::Flag(_)) => format!(
                    "--process {} is not below --processes {}",
                    process.value, processes.value
                ),
                (Origin::Flag(_), _) => message,
                _ if config.sets("cluster.process").is_some() => {
                    config.error_at("cluster.process", message).to_string()
                }
                _ => message,
            });
        }

        let mut listen = None;
        let hosts = if processes.value == 1 {
            Sourced::new(Vec::new(), Origin::Default)
        } else {
            let hosts = match (listed, &c.dns) {
                (Some(listed), _) => listed,
                (None, Some(dns)) => {
                    let hosts = cluster::expand_dns(dns, processes.value);
                    listen = cluster::listen_address(&hosts[process.value]);
                    Sourced::new(hosts, from_config("cluster.dns"))
                }
                (None, None) => {
                    return Err(format!(
                        "{} processes need their hosts: --hostfile FILE, or cluster.hosts or cluster.dns in config/tsmig.yaml",
                        processes.value
                    ))
                }
            };
            if hosts.value.len() < processes.value {
                return Err(format!(
                    "{} names {} hosts but the processes are {} ({})",
                    match &hosts.from {
                        Origin::Flag(_) => flags
                            .hostfile
                            .as_deref()
                            .unwrap_or(Path::new(""))
                            .display()
                            .to_string(),
                        other => other.to_string(),
                    },
                    hosts.value.len(),
                    processes.value,
                    processes.from
                ));
            }
            Sourced::new(hosts.value[..processes.value].to_vec(), hosts.from)
        };

        let mut secrets = config.secrets.clone();
        let status_token = match env("TSMIG_STATUS_TOKEN").filter(|t| !t.is_empty()) {
            Some(token) => Sourced::new(Some(token), Origin::Env("TSMIG_STATUS_TOKEN")),
            None => Sourced::new(f.status.token.clone(), from_config("status.token")),
        };
        if let Some(token) = &status_token.value {
            secrets.add(token);
        }
        let log_level = match env("RUST_LOG").filter(|l| !l.is_empty()) {
            Some(level) => Sourced::new(level, Origin::Env("RUST_LOG")),
            None => Sourced::new(f.log.level.clone(), from_config("log.level")),
        };
        let flag_or = |flag: &'static str, key: &str, given: bool| {
            if given {
                Origin::Flag(flag)
            } else {
                from_config(key)
            }
        };
        Ok(Effective {
            file: config.path().map(Path::to_path_buf),
            workers,
            processes,
            process,
            hosts,
            listen,
            state_dir: Sourced::new(f.state.dir.clone(), from_config("state.dir")),
            metrics_addr: Sourced::new(
                flags.metrics_addr.or(f.metrics.addr),
                flag_or(
                    "--metrics-addr",
                    "metrics.addr",
                    flags.metrics_addr.is_some(),
                ),
            ),
            status_addr: Sourced::new(
                flags.status_addr.or(f.status.addr),
                flag_or("--status-addr", "status.addr", flags.status_addr.is_some()),
            ),
            status_token,
            log_format: Sourced::new(
                flags.log_format.unwrap_or(f.log.format),
                flag_or("--log-format", "log.format", flags.log_format.is_some()),
            ),
            log_level,
            stop_timeout: Sourced::new(
                flags.stop_timeout.unwrap_or(f.stop_timeout),
                flag_or(
                    "--stop-timeout",
                    "stop_timeout",
                    flags.stop_timeout.is_some(),
                ),
            ),
            restart_flag: flags.restart,
            config: config.clone(),
            secrets,
        })
    }

    /// The hosts timely is given: `hosts`, with this process's own entry replaced by the
    /// address it listens on where that differs ([`cluster::listen_address`]).
    pub fn timely_hosts(&self) -> Vec<String> {
        let mut hosts = self.hosts.value.clone();
        if let (Some(listen), Some(own)) = (&self.listen, hosts.get_mut(self.process.value)) {
            *own = listen.clone();
        }
        hosts
    }

    /// Gives `job` the configuration's values for the job-level keys its file leaves out
    /// (`restart.*`, `flow.*`, and `checkpoint.store` as `<state.dir>/<job name>`), then
    /// `--restart`; returns what it decided, key by key.
    pub fn apply_to(&self, job: &mut Job) -> Result<Vec<Row>, String> {
        let config = &self.config.file;
        let mut rows = Vec::new();
        let mut restart = job.file.restart.clone();
        let RestartConfig {
            strategy,
            initial,
            max,
            attempts,
            reset_after,
        } = &config.restart;
        let mut pick = |key: &str, into: &mut dyn FnMut(bool) -> String| {
            let (from_job, from) = match job.sets(key) {
                Some((line, _)) => (true, Origin::Job(job.path.clone(), line)),
                None => (false, origin(&self.config, key)),
            };
            let value = into(from_job);
            rows.push(Row {
                key: key.to_string(),
                value,
                from,
            });
        };
        pick("restart.strategy", &mut |keep| {
            if !keep {
                restart.strategy = *strategy;
            }
            strategy_name(restart.strategy).into()
        });
        pick("restart.initial", &mut |keep| {
            if !keep {
                restart.initial = *initial;
            }
            show_duration(restart.initial)
        });
        pick("restart.max", &mut |keep| {
            if !keep {
                restart.max = *max;
            }
            show_duration(restart.max)
        });
        pick("restart.attempts", &mut |keep| {
            if !keep {
                restart.attempts = *attempts;
            }
            show_attempts(restart.attempts)
        });
        pick("restart.reset_after", &mut |keep| {
            if !keep {
                restart.reset_after = *reset_after;
            }
            show_duration(restart.reset_after)
        });
        let mut flow = job.file.flow.clone();
        let FlowConfig {
            epoch,
            max_in_flight_rows,
        } = &config.flow;
        pick("flow.epoch", &mut |keep| {
            if !keep {
                flow.epoch = *epoch;
            }
            show_duration(flow.epoch)
        });
        pick("flow.max_in_flight_rows", &mut |keep| {
            if !keep {
                flow.max_in_flight_rows = *max_in_flight_rows;
            }
            flow.max_in_flight_rows.to_string()
        });
        if let Some(strategy) = self.restart_flag {
            restart.strategy = strategy;
            if let Some(row) = rows.iter_mut().find(|r| r.key == "restart.strategy") {
                row.value = strategy_name(strategy).into();
                row.from = Origin::Flag("--restart");
            }
        }
        if restart.max < restart.initial {
            let show = |key: &str| {
                rows.iter()
                    .find(|r| r.key == key)
                    .map(|r| format!("{} ({})", r.value, r.from))
                    .unwrap_or_default()
            };
            return Err(format!(
                "restart.max {} must be at least restart.initial {}",
                show("restart.max"),
                show("restart.initial")
            ));
        }
        job.file.restart = restart;
        job.file.flow = flow;

        let store = match (&job.file.checkpoint.store, job.sets("checkpoint.store")) {
            (Some(store), Some((line, _))) => {
                Sourced::new(store.clone(), Origin::Job(job.path.clone(), line))
            }
            _ => {
                let dir = self.state_dir.value.join(&job.file.name);
                let store = format!("file:{}", dir.display());
                job.file.checkpoint.store = Some(store.clone());
                Sourced::new(
                    store,
                    Origin::From("state.dir", Box::new(self.state_dir.from.clone())),
                )
            }
        };
        rows.push(Row {
            key: "checkpoint.store".into(),
            value: store.value,
            from: store.from,
        });
        Ok(rows)
    }

    /// The process-level values, key by key, for `tsmig-job config`.
    pub fn rows(&self) -> Vec<Row> {
        fn row<T>(key: &str, value: &Sourced<T>, show: impl Fn(&T) -> String) -> Row {
            Row {
                key: key.into(),
                value: show(&value.value),
                from: value.from.clone(),
            }
        }
        let addr = |a: &Option<SocketAddr>| a.map_or("none".into(), |a| a.to_string());
        let mut rows = vec![
            row("workers", &self.workers, usize::to_string),
            row("cluster.processes", &self.processes, usize::to_string),
            row("cluster.process", &self.process, usize::to_string),
            row("cluster.hosts", &self.hosts, |h| {
                if h.is_empty() {
                    "none (one process)".into()
                } else {
                    format!("[{}]", h.join(", "))
                }
            }),
        ];
        if let Some(listen) = &self.listen {
            rows.push(Row {
                key: "cluster.listen".into(),
                value: listen.clone(),
                from: Origin::From("cluster.dns", Box::new(self.hosts.from.clone())),
            });
        }
        rows.extend([
            row("state.dir", &self.state_dir, |d| d.display().to_string()),
            row("metrics.addr", &self.metrics_addr, addr),
            row("status.addr", &self.status_addr, addr),
            row("status.token", &self.status_token, |t| {
                t.as_ref().map_or("none".into(), |_| "***".into())
            }),
            row("log.format", &self.log_format, |f| f.as_str().into()),
            row("log.level", &self.log_level, String::clone),
            row("stop_timeout", &self.stop_timeout, |d| show_duration(*d)),
        ]);
        rows
    }

    /// The job-level defaults (`restart`, `flow`, `state.dir`) as a job that sets none of
    /// them gets them, for `tsmig-job config` without a job file.
    pub fn job_defaults(&self) -> Vec<Row> {
        let config = &self.config;
        let r = &config.file.restart;
        let flow = &config.file.flow;
        let mut rows: Vec<Row> = [
            ("restart.strategy", strategy_name(r.strategy).to_string()),
            ("restart.initial", show_duration(r.initial)),
            ("restart.max", show_duration(r.max)),
            ("restart.attempts", show_attempts(r.attempts)),
            ("restart.reset_after", show_duration(r.reset_after)),
            ("flow.epoch", show_duration(flow.epoch)),
            (
                "flow.max_in_flight_rows",
                flow.max_in_flight_rows.to_string(),
            ),
        ]
        .into_iter()
        .map(|(key, value)| Row {
            key: key.into(),
            from: origin(config, key),
            value,
        })
        .collect();
        if let Some(strategy) = self.restart_flag {
            rows[0].value = strategy_name(strategy).into();
            rows[0].from = Origin::Flag("--restart");
        }
        rows
    }
}

/// Where the configuration's value of `key` came from: its line, or the default.
fn origin(config: &ProcessConfig, key: &str) -> Origin {
    match (config.path(), config.sets(key)) {
        (Some(path), Some((line, _))) => Origin::Config(path.to_path_buf(), line),
        _ => Origin::Default,
    }
}

fn strategy_name(strategy: RestartStrategy) -> &'static str {
    match strategy {
        RestartStrategy::Exponential => "exponential",
        RestartStrategy::Fixed => "fixed",
        RestartStrategy::None => "none",
    }
}

fn show_attempts(attempts: Option<Attempts>) -> String {
    match attempts {
        None => "by mode (unlimited for jobs that follow a source, 10 for a backfill)".into(),
        Some(Attempts::Unlimited) => "unlimited".into(),
        Some(Attempts::AtMost(n)) => n.to_string(),
    }
}

fn show_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::super::Found;
    use super::*;

    fn config(text: &str) -> ProcessConfig {
        ProcessConfig::parse(
            Path::new("config/tsmig.yaml"),
            Found::WorkingDir,
            text,
            |_| None,
        )
        .unwrap()
    }

    fn resolve(
        text: &str,
        flags: &Flags,
        env: &[(&str, &str)],
        hostname: &str,
    ) -> Result<Effective, String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Effective::resolve(
            &config(text),
            flags,
            |name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
            || Some(hostname.to_string()),
        )
    }

    const STATEFULSET: &str =
        "workers: 2\ncluster:\n  processes: 3\n  dns: tsmig-{i}.tsmig:2101\n  process: auto\n";

    #[test]
    fn a_statefulset_pod_finds_its_index_and_its_peers() {
        let e = resolve(STATEFULSET, &Flags::default(), &[], "tsmig-2").unwrap();
        assert_eq!(e.workers.value, 2);
        assert_eq!(e.process.value, 2);
        assert_eq!(e.process.from, Origin::Hostname("tsmig-2".into()));
        assert_eq!(
            e.hosts.value,
            [
                "tsmig-0.tsmig:2101",
                "tsmig-1.tsmig:2101",
                "tsmig-2.tsmig:2101"
            ]
        );
        assert_eq!(
            e.hosts.from,
            Origin::Config(PathBuf::from("config/tsmig.yaml"), 4)
        );
        // It listens on every interface, and dials the others by name.
        assert_eq!(
            e.timely_hosts(),
            ["tsmig-0.tsmig:2101", "tsmig-1.tsmig:2101", "0.0.0.0:2101"]
        );
        // TSMIG_PROCESS beats the hostname; a hostname past the processes is refused.
        let e = resolve(
            STATEFULSET,
            &Flags::default(),
            &[("TSMIG_PROCESS", "1")],
            "x",
        )
        .unwrap();
        assert_eq!(
            (e.process.value, e.process.from),
            (1, Origin::Env("TSMIG_PROCESS"))
        );
        let err = resolve(STATEFULSET, &Flags::default(), &[], "tsmig-3").unwrap_err();
        assert!(
            err.starts_with("config/tsmig.yaml:5:3: key `cluster.process`: process 3 (hostname tsmig-3 (cluster.process: auto)) is not below processes 3 (config/tsmig.yaml:3)"),
            "{err}"
        );
        let err = resolve(STATEFULSET, &Flags::default(), &[], "laptop").unwrap_err();
        assert!(err.contains("key `cluster.process`: `auto` takes"), "{err}");
    }

    #[test]
    fn flags_beat_the_file() {
        let flags = Flags {
            workers: Some(5),
            processes: Some(1),
            stop_timeout: Some(Duration::from_secs(5)),
            metrics_addr: Some("127.0.0.1:9000".parse().unwrap()),
            log_format: Some(LogFormat::Text),
            ..Flags::default()
        };
        let text = format!(
            "{STATEFULSET}metrics:\n  addr: 0.0.0.0:9464\nlog:\n  format: json\nstop_timeout: 2m\n"
        );
        // One process: no hostname is looked at, no hosts are needed.
        let e = resolve(&text, &flags, &[], "laptop").unwrap();
        assert_eq!(e.workers, Sourced::new(5, Origin::Flag("--workers")));
        assert_eq!(e.processes, Sourced::new(1, Origin::Flag("--processes")));
        assert_eq!(e.process.value, 0);
        assert!(e.hosts.value.is_empty());
        assert_eq!(
            e.metrics_addr.value,
            Some("127.0.0.1:9000".parse().unwrap())
        );
        assert_eq!(e.log_format.value, LogFormat::Text);
        assert_eq!(e.stop_timeout.value, Duration::from_secs(5));
        let e = resolve(&text, &Flags::default(), &[], "tsmig-0").unwrap();
        assert_eq!(
            e.metrics_addr.from,
            Origin::Config("config/tsmig.yaml".into(), 7)
        );
        assert_eq!(e.log_format.value, LogFormat::Json);
        assert_eq!(e.stop_timeout.value, Duration::from_secs(120));
    }

    #[test]
    fn nothing_set_is_the_old_command_line_defaults() {
        let e = resolve("", &Flags::default(), &[], "tsmig-3").unwrap();
        assert_eq!(e.workers, Sourced::new(1, Origin::Default));
        assert_eq!((e.processes.value, e.process.value), (1, 0));
        assert!(e.hosts.value.is_empty());
        assert_eq!(e.stop_timeout.value, Duration::from_secs(60));
        assert_eq!(e.log_level.value, "info");
        assert_eq!(e.metrics_addr.value, None);
        assert_eq!(e.status_token.value, None);
    }

    #[test]
    fn the_environment_beats_the_file_for_token_and_level() {
        let text = "status:\n  token: from-the-file\nlog:\n  level: debug\n";
        let e = resolve(text, &Flags::default(), &[], "h").unwrap();
        assert_eq!(e.status_token.value.as_deref(), Some("from-the-file"));
        assert_eq!(e.log_level.value, "debug");
        let env = [("TSMIG_STATUS_TOKEN", "from-the-env"), ("RUST_LOG", "warn")];
        let e = resolve(text, &Flags::default(), &env, "h").unwrap();
        assert_eq!(
            e.status_token,
            Sourced::new(
                Some("from-the-env".into()),
                Origin::Env("TSMIG_STATUS_TOKEN")
            )
        );
        assert_eq!(e.log_level.value, "warn");
        // Both are secrets; the shown value is masked.
        assert_eq!(e.secrets.redact("from-the-env from-the-file"), "*** ***");
        let shown = e
            .rows()
            .into_iter()
            .find(|r| r.key == "status.token")
            .unwrap();
        assert_eq!(shown.value, "***");
    }

    #[test]
    fn processes_need_hosts_enough() {
        let flags = Flags {
            processes: Some(2),
            ..Flags::default()
        };
        let err = resolve("", &flags, &[], "h").unwrap_err();
        assert!(err.contains("2 processes need their hosts"), "{err}");
        let flags = Flags {
            processes: Some(3),
            process: Some(1),
            ..Flags::default()
        };
        let err = resolve("cluster:\n  hosts: [a:1, b:2]\n", &flags, &[], "h").unwrap_err();
        assert_eq!(
            err,
            "config/tsmig.yaml:2 names 2 hosts but the processes are 3 (flag --processes)"
        );
        let e = resolve(
            "cluster:\n  hosts: [a:1, b:2]\n",
            &Flags::default(),
            &[],
            "h",
        )
        .unwrap();
        assert_eq!(e.processes.value, 2);
        // Names listed by hand are dialled and listened on as written.
        assert_eq!(e.timely_hosts(), ["a:1", "b:2"]);
        let flags = Flags {
            process: Some(2),
            processes: Some(2),
            ..Flags::default()
        };
        let err = resolve("", &flags, &[], "h").unwrap_err();
        assert_eq!(err, "--process 2 is not below --processes 2");
    }

    fn job(text: &str) -> Job {
        let base = "name: j\nsource:\n  type: mysql\n  url: mysql://u@h/db\n  tables:\n    - name: t\nsink:\n  type: blackhole\n";
        Job::parse(Path::new("jobs/j.yaml"), &format!("{base}{text}"), |_| None).unwrap()
    }

    #[test]
    fn the_job_file_beats_the_configuration_key_by_key() {
        let text = "state:\n  dir: /var/lib/tsmig\nrestart:\n  strategy: fixed\n  initial: 2s\n  max: 4s\n  attempts: 3\nflow:\n  epoch: 50ms\n";
        let e = resolve(text, &Flags::default(), &[], "h").unwrap();
        let mut j = job("restart:\n  attempts: 7\n  max: 5s\ncheckpoint:\n  interval: 2s\n");
        let rows = e.apply_to(&mut j).unwrap();
        let r = &j.file.restart;
        assert_eq!(r.strategy, RestartStrategy::Fixed);
        assert_eq!(r.initial, Duration::from_secs(2));
        assert_eq!(r.max, Duration::from_secs(5));
        assert_eq!(r.attempts, Some(Attempts::AtMost(7)));
        assert_eq!(j.file.flow.epoch, Duration::from_millis(50));
        assert_eq!(j.file.flow.max_in_flight_rows, 40_000);
        assert_eq!(j.state_dir().unwrap(), Path::new("/var/lib/tsmig/j"));
        let from = |key: &str| rows.iter().find(|r| r.key == key).unwrap().from.to_string();
        assert_eq!(from("restart.strategy"), "config/tsmig.yaml:4");
        assert_eq!(from("restart.attempts"), "job jobs/j.yaml:10");
        assert_eq!(from("flow.max_in_flight_rows"), "default");
        assert_eq!(from("checkpoint.store"), "state.dir, config/tsmig.yaml:2");

        // The job's own store wins; --restart wins over both files.
        let flags = Flags {
            restart: Some(RestartStrategy::None),
            ..Flags::default()
        };
        let e = resolve(text, &flags, &[], "h").unwrap();
        let mut j = job("restart:\n  strategy: exponential\ncheckpoint:\n  store: file:/data/j\n");
        let rows = e.apply_to(&mut j).unwrap();
        assert_eq!(j.file.restart.strategy, RestartStrategy::None);
        assert_eq!(j.state_dir().unwrap(), Path::new("/data/j"));
        let from = |key: &str| rows.iter().find(|r| r.key == key).unwrap().from.to_string();
        assert_eq!(from("restart.strategy"), "flag --restart");
        assert_eq!(from("checkpoint.store"), "job jobs/j.yaml:12");
    }

    #[test]
    fn without_configuration_a_job_runs_as_before() {
        let e = resolve("", &Flags::default(), &[], "h").unwrap();
        let mut j = job("");
        let before = j.file.restart.clone();
        e.apply_to(&mut j).unwrap();
        assert_eq!(j.file.restart, before);
        assert_eq!(j.state_dir().unwrap(), Path::new("state/j"));
        assert_eq!(
            j.dead_letter_path().unwrap(),
            Path::new("state/j/dead-letter.jsonl")
        );
    }

    #[test]
    fn a_merge_that_breaks_a_rule_names_both_sides() {
        let e = resolve(
            "restart:\n  initial: 1s\n  max: 10s\n",
            &Flags::default(),
            &[],
            "h",
        )
        .unwrap();
        let err = e
            .apply_to(&mut job("restart:\n  initial: 1m\n"))
            .unwrap_err();
        assert_eq!(
            err,
            "restart.max 10s (config/tsmig.yaml:3) must be at least restart.initial 1m (job jobs/j.yaml:10)"
        );
    }
}
