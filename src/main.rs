//! `tsmig-job`: runs a tsmig job file.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::OnceLock;
use tsmig::engine::Cluster;
use tsmig::job::{mask_urls, Job, Mode, Secrets};
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
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Entry point (as `flink run -c`); overrides `mode:` in the job file.
    #[arg(short = 'c', long = "class", value_enum, value_name = "ENTRY")]
    entry: Option<Entry>,
    /// The job file (YAML).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Worker threads in this process.
    #[arg(long, default_value_t = 1, value_name = "N")]
    workers: usize,
    /// Processes in the cluster (each started with the same flags and its own --process).
    #[arg(long, default_value_t = 1, value_name = "P")]
    processes: usize,
    /// This process's index, 0 ..= P-1. Process 0 plans and writes the checkpoints.
    #[arg(long, default_value_t = 0, value_name = "I")]
    process: usize,
    /// The cluster's hosts: one host:port a line, in process order (see cluster/).
    #[arg(long, value_name = "FILE")]
    hostfile: Option<PathBuf>,
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
    /// Serve Prometheus metrics at http://ADDR/metrics (rows per operator, write latency,
    /// retries, dead letters, CDC lag), e.g. 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Serve the status page and API at http://ADDR/ (progress per table and split, lag,
    /// checkpoints, dead letters; stop and cutover buttons), e.g. 127.0.0.1:8081. On an
    /// address other than loopback its POSTs need the token in TSMIG_STATUS_TOKEN.
    #[arg(long, value_name = "ADDR")]
    status_addr: Option<std::net::SocketAddr>,
    /// After SIGTERM (or Ctrl-C) the job stops reading, writes what it read and records a
    /// final checkpoint. If that takes longer than this, or a second signal comes, it stops
    /// at once (exit 1); what was durable is checkpointed either way.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    stop_timeout: std::time::Duration,
    /// Overrides `restart.strategy` of the job file: `none` fails the job at the first
    /// transient failure that outlives its retries.
    #[arg(long, value_enum, value_name = "STRATEGY")]
    restart: Option<Restart>,
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
    tsmig::metrics::process_start();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(RedactedStderr::default)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Messages are masked where they are made; this catches any URL's secrets.
            eprintln!("error: {}", mask_urls(&e.to_string()));
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// The job file's secrets, once it is read: every log line is masked with them.
static SECRETS: OnceLock<Secrets> = OnceLock::new();

/// A log line's way to stderr: gathered whole, then written with the job's secrets and
/// every URL's password and tokens masked (a library may log a URL or an error holding
/// one).
#[derive(Default)]
struct RedactedStderr {
    line: Vec<u8>,
}

impl Write for RedactedStderr {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for RedactedStderr {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.line);
        // `<time> <LEVEL> <target>: <message>`: the prefix holds no secret, and masking a
        // value in it would mask a module path (`tsmig::runner`) that happens to hold it.
        let (prefix, message) = text.split_at(text.find(": ").unwrap_or(0));
        let masked = match SECRETS.get() {
            Some(secrets) => secrets.redact(message),
            None => mask_urls(message),
        };
        let _ = std::io::stderr().write_all(format!("{prefix}{masked}").as_bytes());
    }
}

/// Loads the job file and has its connectors parse and check their sections.
fn load(path: &Path) -> Result<(Job, tsmig::connectors::Checked), RunError> {
    let job = Job::load(path).map_err(|e| RunError::Usage(e.to_string()))?;
    let _ = SECRETS.set(job.secrets.clone());
    let checked = runner::connectors(&job)?;
    Ok((job, checked))
}

fn run(cli: Cli) -> Result<(), RunError> {
    match cli.command {
        Some(Command::Validate { config }) => {
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
            let (job, _) = load(&config)?;
            print!("{}", job.secrets.redact(&runner::plan(&job)?));
            Ok(())
        }
        None => {
            let args = cli.run;
            let config = args
                .config
                .clone()
                .ok_or_else(|| RunError::Usage("--config FILE is required (see --help)".into()))?;
            let cluster = cluster(&args)?;
            let (mut job, _) = load(&config)?;
            if let Some(restart) = args.restart {
                job.file.restart.strategy = match restart {
                    Restart::Exponential => tsmig::job::RestartStrategy::Exponential,
                    Restart::Fixed => tsmig::job::RestartStrategy::Fixed,
                    Restart::None => tsmig::job::RestartStrategy::None,
                };
            }
            let mode = args.entry.map(Mode::from).unwrap_or(job.file.mode);
            let options = RunOptions {
                cluster,
                fresh: args.fresh,
                progress: args.progress,
                until_caught_up: args.until_caught_up,
                metrics_addr: args.metrics_addr,
                repair: args.repair,
                stop_timeout: args.stop_timeout,
                status_addr: args.status_addr,
                status_token: std::env::var("TSMIG_STATUS_TOKEN").ok(),
            };
            runner::run(&job, mode, &options)
        }
    }
}

fn cluster(args: &RunArgs) -> Result<Cluster, RunError> {
    if args.workers == 0 {
        return Err(RunError::Usage("--workers must be at least 1".into()));
    }
    if args.process >= args.processes {
        return Err(RunError::Usage(format!(
            "--process {} is not below --processes {}",
            args.process, args.processes
        )));
    }
    if args.processes == 1 {
        return Ok(Cluster::local(args.workers));
    }
    let Some(hostfile) = &args.hostfile else {
        return Err(RunError::Usage(
            "--processes above 1 needs --hostfile FILE".into(),
        ));
    };
    let text = std::fs::read_to_string(hostfile)
        .map_err(|e| RunError::Usage(format!("cannot read {}: {e}", hostfile.display())))?;
    let hosts: Vec<String> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    for (i, h) in hosts.iter().enumerate() {
        if h.rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .is_none()
        {
            return Err(RunError::Usage(format!(
                "{}: host {} is `{h}`, not host:port",
                hostfile.display(),
                i + 1
            )));
        }
    }
    if hosts.len() < args.processes {
        return Err(RunError::Usage(format!(
            "{} names {} hosts but --processes is {}",
            hostfile.display(),
            hosts.len(),
            args.processes
        )));
    }
    Ok(Cluster {
        workers: args.workers,
        process: args.process,
        hosts: hosts[..args.processes].to_vec(),
    })
}
