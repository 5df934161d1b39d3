//! Progress while a job runs: a bar with rows, rows/s and ETA on a terminal, a `tracing`
//! line every few seconds elsewhere.

use crate::dead_letter::DeadLetters;
use crate::metrics::Counters;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// A bar on a terminal, log lines otherwise.
    Auto,
    /// Always the bar.
    Bar,
    /// Always log lines.
    Log,
    /// Nothing.
    Off,
}

/// The running display; [`Progress::finish`] stops it.
pub struct Progress {
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    /// Stops the display.
    pub fn finish(mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts showing progress from `counters`.
pub fn start(mode: ProgressMode, counters: Arc<Counters>, dead_letters: DeadLetters) -> Progress {
    let done = Arc::new(AtomicBool::new(false));
    let bar = match mode {
        ProgressMode::Off => None,
        ProgressMode::Bar => Some(true),
        ProgressMode::Log => Some(false),
        ProgressMode::Auto => Some(std::io::stderr().is_terminal()),
    };
    let Some(bar) = bar else {
        return Progress { done, thread: None };
    };
    let flag = done.clone();
    let thread = std::thread::Builder::new()
        .name("tsmig-progress".into())
        .spawn(move || {
            if bar {
                show_bar(&flag, &counters, &dead_letters)
            } else {
                show_log(&flag, &counters, &dead_letters)
            }
        })
        .ok();
    Progress { done, thread }
}

fn show_bar(done: &AtomicBool, c: &Counters, dead_letters: &DeadLetters) {
    let bar = ProgressBar::with_draw_target(
        Some(c.rows_expected.get().max(1)),
        ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {human_pos}/{human_len} rows  {per_sec}  ETA {eta}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    while !done.load(Ordering::SeqCst) {
        let read = c.rows_read.get();
        bar.set_length(c.rows_expected.get().max(read).max(1));
        bar.set_position(read);
        bar.set_message(format!(
            "written {}  dead-lettered {}  splits {}/{}",
            c.points_written.get(),
            dead_letters.count(),
            c.splits_done.get(),
            c.splits_planned.get()
        ));
        std::thread::sleep(Duration::from_millis(200));
    }
    bar.finish_and_clear();
}

fn show_log(done: &AtomicBool, c: &Counters, dead_letters: &DeadLetters) {
    let started = Instant::now();
    let mut last = Instant::now();
    while !done.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        if last.elapsed() < Duration::from_secs(5) {
            continue;
        }
        last = Instant::now();
        let read = c.rows_read.get();
        tracing::info!(
            rows_read = read,
            points_written = c.points_written.get(),
            dead_lettered = dead_letters.count(),
            splits_done = c.splits_done.get(),
            splits_planned = c.splits_planned.get(),
            rows_per_second = (read as f64 / started.elapsed().as_secs_f64()) as u64,
            retries = c.retries.get(),
            "progress"
        );
    }
}
