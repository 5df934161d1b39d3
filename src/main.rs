//! `tsmig-job`: runs a tsmig job file.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tsmig::config::{log, Effective, Flags, Found, LogFormat, ProcessConfig};
use tsmig::engine::Cluster;
use tsmig::job::{mask_urls, Job, Mode, RestartStrategy};
use tsmig::runner::{self, ProgressMode, RunError, RunOptions};

/// mimalloc: a job allocates a few small objects per row on several threads at once,
/// which glibc's allocator serves markedly slower.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Migrates and replicates time-series data between databases, as a timely dataflow.
///
/// Run a job:      tsmig-job -c backfill --config jobs/NAME.yaml --workers 2
/// Check a file:   tsmig-job validate --config jobs/NAME.yaml
/// Show the plan:  tsmig-job plan --config jobs/NAME.yaml
/// Show what a process runs with (config/tsmig.yaml, environment, flags):
///                 tsmig-job config [--conf-dir DIR] [--config jobs/NAME.yaml] [flags]
///
/// Flags override the process configuration, config/tsmig.yaml (found by --conf-dir,
/// TSMIG_CONF_DIR, else ./config), which gives the defaults of every process.
#[derive(Parser, Debug)]
#[command(
    name = "tsmig-job",
    version,
    verbatim_doc_comment,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Checks a job file (keys, types, ${ENV} references) without connecting anywhere.
    Validate {
        /// The job file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Connects to the source, checks the mappings against its tables and shows splits,
    /// mappings and target. Writes nothing.
    Plan {
        /// The job file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Shows the process configuration in effect and where each value came from: the
    /// flags (those of a run), the environment, config/tsmig.yaml, the defaults. With
    /// --config, also the job-level keys (restart, flow, checkpoint.store) as that job
    /// would run with them. Connects nowhere.
    Config {
        #[command(flatten)]
        run: RunArgs,
    },
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Entry point (as `flink run -c`); overrides `mode:` in the job file.
    #[arg(short = 'c', long = "class", value_enum, value_name = "ENTRY")]
    entry: Option<Entry>,
    /// The job file (YAML).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    process: ProcessArgs,
    /// Forget recorded progress (backfill splits, the CDC binlog position, the follow
    /// watermark) and start over.
    #[arg(long)]
    fresh: bool,
    /// How progress is shown.
    #[arg(long, value_enum, default_value = "auto")]
    progress: ProgressMode,
    /// CDC: stop once the reader has caught up with the server's binlog (the server sent a
    /// heartbeat: nothing newer), after every change read is written and checkpointed — the
    /// cutover step: pause writes to MySQL, run this, switch the application.
    /// backfill+follow: stop after a polling round that found no point newer than the one
    /// before it.
    #[arg(long)]
    until_caught_up: bool,
    /// verify: re-copy each series × bucket found different (delete that window in the
    /// target, write the source's points of it again), then verify again; exit 0 only if
    /// the second verify is clean.
    #[arg(long)]
    repair: bool,
}

/// The flags that override config/tsmig.yaml.
#[derive(Args, Debug)]
struct ProcessArgs {
    /// The directory holding tsmig.yaml, the process configuration (default:
    /// TSMIG_CONF_DIR, else ./config if it has one; none: built-in defaults).
    #[arg(long, value_name = "DIR")]
    conf_dir: Option<PathBuf>,
    /// Worker threads in this process [default: `workers`, else 1].
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Processes in the cluster (each started with the same flags and its own --process)
    /// [default: `cluster.processes`, else 1].
    #[arg(long, value_name = "P")]
    processes: Option<usize>,
    /// This process's index, 0 ..= P-1. Process 0 plans and writes the checkpoints
    /// [default: `cluster.process`, else 0].
    #[arg(long, value_name = "I")]
    process: Option<usize>,
    /// The cluster's hosts: one host:port a line, in process order (see cluster/)
    /// [default: `cluster.hosts` or `cluster.dns`].
    #[arg(long, value_name = "FILE")]
    hostfile: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics (rows per operator, write latency,
    /// retries, dead letters, CDC lag), e.g. 127.0.0.1:9464 [default: `metrics.addr`].
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Serve the status page and API at http://ADDR/ (progress per table and split, lag,
    /// checkpoints, dead letters; stop and cutover buttons), e.g. 127.0.0.1:8081. On an
    /// address other than loopback its POSTs need the token in TSMIG_STATUS_TOKEN
    /// [default: `status.addr`].
    #[arg(long, value_name = "ADDR")]
    status_addr: Option<std::net::SocketAddr>,
    /// After SIGTERM (or Ctrl-C) the job stops reading, writes what it read and records a
    /// final checkpoint. If that takes longer than this, or a second signal comes, it stops
    /// at once (exit 1); what was durable is checkpointed either way [default:
    /// `stop_timeout`, else 60s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    stop_timeout: Option<std::time::Duration>,
    /// Overrides `restart.strategy` of the job file and config/tsmig.yaml: `none` fails
    /// the job at the first transient failure that outlives its retries.
    #[arg(long, value_enum, value_name = "STRATEGY")]
    restart: Option<Restart>,
    /// The log's format: text lines or JSON lines [default: `log.format`, else text].
    #[arg(long, value_enum, value_name = "FORMAT")]
    log_format: Option<LogFormatArg>,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormatArg {
    /// `<time> <LEVEL> <target>: <message>`.
    Text,
    /// One JSON object a line.
    Json,
}

/// `--restart`.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Restart {
    /// The delay doubles from restart.initial to restart.max.
    Exponential,
    /// Always restart.initial.
    Fixed,
    /// No restart.
    None,
}

/// The entry points.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Entry {
    /// Copy every existing row once, then exit.
    Backfill,
    /// Follow the source's change log.
    Cdc,
    /// Backfill from a consistent snapshot, then follow the change log.
    #[value(name = "backfill+cdc")]
    BackfillCdc,
    /// Backfill, then poll a source without a change log (TDengine, InfluxDB 1.x) for
    /// newer points, round by round.
    #[value(name = "backfill+follow")]
    BackfillFollow,
    /// Compare source and target.
    Verify,
    /// Serve an InfluxDB-compatible write endpoint.
    Ingest,
}

impl From<Entry> for Mode {
    fn from(e: Entry) -> Mode {
        match e {
            Entry::Backfill => Mode::Backfill,
            Entry::Cdc => Mode::Cdc,
            Entry::BackfillCdc => Mode::BackfillCdc,
            Entry::BackfillFollow => Mode::BackfillFollow,
            Entry::Verify => Mode::Verify,
            Entry::Ingest => Mode::Ingest,
        }
    }
}

fn main() -> ExitCode {
    // No transparent huge pages for this process: mimalloc's arenas are 2 MiB-aligned, so
    // with THP each touched region is backed by a whole huge page, and a job's peak RSS was
    // ~80 MB instead of ~50 at the same CPU (BENCHMARKS.md, "Peak memory"). mimalloc's
    // `no_thp` feature stops it asking for them (THP "madvise"); this stops the kernel
    // giving them anyway (THP "always"). A kernel without the flag changes nothing.
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    tsmig::metrics::process_start();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Messages are masked where they are made; this catches any URL's secrets.
            eprintln!("error: {}", mask_urls(&e.to_string()));
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// Loads the job file and has its connectors parse and check their sections.
fn load(path: &Path) -> Result<(Job, tsmig::connectors::Checked), RunError> {
    let job = Job::load(path).map_err(|e| RunError::Usage(e.to_string()))?;
    log::add_secrets(&job.secrets);
    let checked = runner::connectors(&job)?;
    Ok((job, checked))
}

/// The process configuration in effect: config/tsmig.yaml under the flags and the
/// environment.
fn process_config(args: &ProcessArgs) -> Result<(ProcessConfig, Effective), RunError> {
    let env = |name: &str| std::env::var(name).ok();
    let config = ProcessConfig::discover(args.conf_dir.as_deref(), env).map_err(RunError::Usage)?;
    let flags = Flags {
        workers: args.workers,
        processes: args.processes,
        process: args.process,
        hostfile: args.hostfile.clone(),
        metrics_addr: args.metrics_addr,
        status_addr: args.status_addr,
        stop_timeout: args.stop_timeout,
        log_format: args.log_format.map(|f| match f {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        }),
        restart: args.restart.map(|r| match r {
            Restart::Exponential => RestartStrategy::Exponential,
            Restart::Fixed => RestartStrategy::Fixed,
            Restart::None => RestartStrategy::None,
        }),
    };
    let effective = Effective::resolve(&config, &flags, env, || {
        tsmig::config::cluster::hostname(env)
    })
    .map_err(RunError::Usage)?;
    log::add_secrets(&effective.secrets);
    Ok((config, effective))
}

fn run(cli: Cli) -> Result<(), RunError> {
    match cli.command {
        Some(Command::Validate { config }) => {
            log::init(LogFormat::Text, &env_log_level());
            let (job, checked) = load(&config)?;
            let has_tables = !checked.source.arrives_as_points();
            let tables = match checked.source.table_names().len() {
                0 if has_tables => "tables found on the server".to_string(),
                n => format!("{n} tables"),
            };
            let mappings = match job.file.mappings.len() {
                0 if has_tables => "mappings: auto".to_string(),
                n => format!("{n} mappings"),
            };
            println!(
                "{}: valid job `{}` (mode {}, {tables}, {mappings})",
                config.display(),
                job.file.name,
                job.file.mode,
            );
            Ok(())
        }
        Some(Command::Plan { config }) => {
            log::init(LogFormat::Text, &env_log_level());
            let (job, _) = load(&config)?;
            print!("{}", job.secrets.redact(&runner::plan(&job)?));
            Ok(())
        }
        Some(Command::Config { run: args }) => show_config(&args),
        None => {
            let args = cli.run;
            let config = args
                .config
                .clone()
                .ok_or_else(|| RunError::Usage("--config FILE is required (see --help)".into()))?;
            let (_, effective) = process_config(&args.process)?;
            log::init(effective.log_format.value, &effective.log_level.value);
            let (mut job, _) = load(&config)?;
            effective.apply_to(&mut job).map_err(RunError::Usage)?;
            let mode = args.entry.map(Mode::from).unwrap_or(job.file.mode);
            let cluster = if effective.processes.value == 1 {
                Cluster::local(effective.workers.value)
            } else {
                Cluster {
                    workers: effective.workers.value,
                    process: effective.process.value,
                    hosts: effective.timely_hosts(),
                }
            };
            let options = RunOptions {
                cluster,
                fresh: args.fresh,
                progress: args.progress,
                until_caught_up: args.until_caught_up,
                metrics_addr: effective.metrics_addr.value,
                repair: args.repair,
                stop_timeout: effective.stop_timeout.value,
                status_addr: effective.status_addr.value,
                status_token: effective.status_token.value.clone(),
            };
            runner::run(&job, mode, &options)
        }
    }
}

/// The log level of the commands that read no process configuration: `RUST_LOG`, else
/// `info`.
fn env_log_level() -> String {
    std::env::var("RUST_LOG")
        .ok()
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| "info".into())
}

/// `tsmig-job config`: every key in effect, its value and where it came from, as
/// `key: value  # origin` lines.
fn show_config(args: &RunArgs) -> Result<(), RunError> {
    let (config, effective) = process_config(&args.process)?;
    let mut out = match &config.source {
        Some((path, found)) => format!(
            "# process configuration: {} (found by {})\n",
            path.display(),
            match found {
                Found::Flag => "--conf-dir",
                Found::Env => "TSMIG_CONF_DIR",
                Found::WorkingDir => "./config",
            }
        ),
        None => "# process configuration: none found (no --conf-dir, TSMIG_CONF_DIR or ./config/tsmig.yaml): the defaults\n".into(),
    };
    let mut rows = effective.rows();
    let mut secrets = effective.secrets.clone();
    match &args.config {
        Some(path) => {
            let (mut job, _) = load(path)?;
            secrets.extend(&job.secrets);
            out.push_str(&format!(
                "# job {} ({}): the keys of config/tsmig.yaml a job may set\n",
                job.file.name,
                path.display()
            ));
            rows.extend(effective.apply_to(&mut job).map_err(RunError::Usage)?);
        }
        None => rows.extend(effective.job_defaults()),
    }
    let width = rows
        .iter()
        .map(|r| r.key.len() + r.value.len() + 2)
        .max()
        .unwrap_or(0);
    for row in rows {
        let line = format!("{}: {}", row.key, row.value);
        out.push_str(&format!("{line:<width$}  # {}\n", row.from));
    }
    print!("{}", secrets.redact(&out));
    Ok(())
}
