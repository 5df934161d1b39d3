//! The dead-letter file: every row or point a job could not deliver, with the reason.
//!
//! Nothing is dropped, silently or not. A row the mapping cannot turn into a point, a
//! value the source cannot convert, a line the target rejects for good: each becomes one
//! JSON line `{"time", "job", "stage", "reason", "record"}` here and is counted in the job
//! summary. The file is created on the first rejection only, so an empty job leaves none
//! behind.
//!
//! ```text
//!  record() on any worker or task ──▶ bounded queue ──▶ writer thread ──▶ file
//!  sync() (before every checkpoint) ──▶ same queue  ──▶ flush + fdatasync, answer
//! ```
//!
//! The file is written by a thread of its own: recording costs a push onto a bounded queue
//! (it waits only while the writer is that far behind), never file I/O on an async
//! runtime's thread or under a lock shared by every worker. The writer flushes its buffer
//! every second; [`DeadLetters::sync`] writes everything recorded before it and makes it
//! durable. The checkpoint store calls it before every save, so a checkpoint never covers
//! a row whose dead letter is not in the file.
//!
//! A file that cannot be opened or written is the job's failure, never a lost record: the
//! first error is handed to [`DeadLetters::on_failure`] (the runner ends the job with it),
//! and every later `sync` returns it, so no checkpoint is saved after it and the next run
//! reads those rows again.

use crate::metrics::Count;
use serde_json::json;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// Records the queue holds before `record` waits for the writer.
const QUEUE_RECORDS: usize = 4096;
/// How often the writer flushes what it buffered.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Where rejected records go; cheap to clone, shared by every worker of a process.
#[derive(Clone)]
pub struct DeadLetters {
    inner: Arc<Inner>,
}

struct Inner {
    job: String,
    path: PathBuf,
    /// Records handed to [`DeadLetters::record`] (the run's `tsmig_dead_letters_total`).
    count: Count,
    shared: Arc<Shared>,
    /// Started by the first record.
    writer: OnceLock<Writer>,
    /// The latest letters' time, stage and reason, newest last (the status page's list).
    latest: std::sync::Mutex<std::collections::VecDeque<Latest>>,
}

/// What the writer thread and the handles share.
#[derive(Default)]
struct Shared {
    /// The first error; once set, nothing more is written.
    failure: Mutex<Option<String>>,
    /// Told of the first error.
    on_failure: OnceLock<Box<dyn Fn(String) + Send + Sync>>,
    /// Records the writer has made durable.
    synced: AtomicU64,
}

impl Shared {
    fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records the first failure and reports it.
    fn fail(&self, message: String) {
        let first = {
            let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
            if failure.is_some() {
                return;
            }
            *failure = Some(message.clone());
            message
        };
        tracing::error!("{first}");
        if let Some(report) = self.on_failure.get() {
            report(first);
        }
    }
}

struct Writer {
    queue: SyncSender<Message>,
    thread: JoinHandle<()>,
}

enum Message {
    /// One rejected record.
    Letter(Letter),
    /// Write and make durable everything before this, then answer.
    Sync(SyncSender<Result<(), String>>),
}

/// How many of the latest letters [`DeadLetters::latest`] keeps.
const LATEST: usize = 10;

/// One of the latest dead letters, as the status page lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Latest {
    /// When, RFC 3339.
    pub time: String,
    /// Where it was rejected: `source`, `mapping`, `sink`.
    pub stage: String,
    /// Why.
    pub reason: String,
}

struct Letter {
    time: String,
    stage: String,
    reason: String,
    record: serde_json::Value,
}

impl DeadLetters {
    /// Dead letters of `job`, appended to `path`.
    pub fn new(job: &str, path: &Path) -> Self {
        Self {
            inner: Arc::new(Inner {
                job: job.to_string(),
                path: path.to_path_buf(),
                count: Count::default(),
                latest: Default::default(),
                shared: Arc::default(),
                writer: OnceLock::new(),
            }),
        }
    }

    /// Calls `report` with the first error writing the file (at most once; at once if it
    /// happened already). The runner fails the job with it.
    pub fn on_failure(&self, report: impl Fn(String) + Send + Sync + 'static) {
        let shared = &self.inner.shared;
        if shared.on_failure.set(Box::new(report)).is_ok() {
            if let (Some(failure), Some(report)) = (shared.failure(), shared.on_failure.get()) {
                report(failure);
            }
        }
    }

    /// Records one rejected record. `stage` says where it was rejected (`source`,
    /// `mapping`, `sink`), `reason` why, `record` what it was.
    pub fn record(&self, stage: &str, reason: &str, record: serde_json::Value) {
        self.inner.count.add(1);
        let letter = Letter {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            stage: stage.to_string(),
            reason: reason.to_string(),
            record,
        };
        {
            let mut latest = self.inner.latest.lock().unwrap_or_else(|p| p.into_inner());
            if latest.len() == LATEST {
                latest.pop_front();
            }
            latest.push_back(Latest {
                time: letter.time.clone(),
                stage: letter.stage.clone(),
                reason: letter.reason.clone(),
            });
        }
        if self.writer().queue.send(Message::Letter(letter)).is_err() {
            self.inner.shared.fail(format!(
                "cannot write the dead-letter file {}: its writer stopped",
                self.inner.path.display()
            ));
        }
    }

    /// Writes every record recorded before this call to the file and makes it durable
    /// (flush, fdatasync). `Err` names the file and the cause when any record could not be
    /// written, now or before: a checkpoint must not be saved then. Cheap when nothing was
    /// recorded since the last call. Blocks: call it from a plain thread (a worker, the
    /// runner), not from an async task.
    pub fn sync(&self) -> Result<(), String> {
        let shared = &self.inner.shared;
        if let Some(failure) = shared.failure() {
            return Err(failure);
        }
        if shared.synced.load(Ordering::Acquire) == self.count() {
            return Ok(());
        }
        let (answer, answered) = sync_channel(1);
        let stopped = || {
            format!(
                "cannot write the dead-letter file {}: its writer stopped",
                self.inner.path.display()
            )
        };
        self.writer()
            .queue
            .send(Message::Sync(answer))
            .map_err(|_| stopped())?;
        answered.recv().map_err(|_| stopped())?
    }

    /// How many records were rejected so far.
    pub fn count(&self) -> u64 {
        self.inner.count.get()
    }

    /// The count of records rejected, where it lives (the run's metrics show it).
    pub fn counter(&self) -> &Count {
        &self.inner.count
    }

    /// The latest letters (at most ten), newest last.
    pub fn latest(&self) -> Vec<Latest> {
        self.inner
            .latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn writer(&self) -> &Writer {
        self.inner.writer.get_or_init(|| {
            let (queue, letters) = sync_channel(QUEUE_RECORDS);
            let (job, path, shared) = (
                self.inner.job.clone(),
                self.inner.path.clone(),
                self.inner.shared.clone(),
            );
            let thread = std::thread::Builder::new()
                .name("tsmig-dead-letters".into())
                .spawn(move || write_letters(&job, &path, letters, &shared))
                .expect("cannot start the dead-letter writer thread");
            Writer { queue, thread }
        })
    }
}

impl Drop for Inner {
    /// The last handle is gone: the writer writes what is queued, syncs and ends.
    fn drop(&mut self) {
        if let Some(Writer { queue, thread }) = self.writer.take() {
            drop(queue);
            let _ = thread.join();
        }
    }
}

/// The writer thread: appends letters to `path` (opened on the first), flushes every
/// [`FLUSH_EVERY`] and on a sync, until every handle is gone.
fn write_letters(job: &str, path: &Path, letters: Receiver<Message>, shared: &Shared) {
    let mut file: Option<BufWriter<File>> = None;
    let mut written = 0u64;
    let mut dirty = false;
    let failed = |e: std::io::Error| {
        shared.fail(format!(
            "cannot write the dead-letter file {}: {e}; the job stops rather than lose a dead letter (what was not checkpointed is read again by the next run)",
            path.display()
        ))
    };
    loop {
        let message = match letters.recv_timeout(FLUSH_EVERY) {
            Ok(message) => message,
            Err(RecvTimeoutError::Timeout) => {
                if dirty {
                    if let Some(Err(e)) = file.as_mut().map(|f| f.flush()) {
                        failed(e);
                    }
                    dirty = false;
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => {
                if let Some(Err(e)) = file.as_mut().map(durable) {
                    failed(e);
                }
                return;
            }
        };
        match message {
            Message::Letter(letter) => {
                written += 1;
                if shared.failure().is_some() {
                    // The job is failing already; the checkpoint will not cover this row.
                    continue;
                }
                let line = json!({
                    "time": letter.time,
                    "job": job,
                    "stage": letter.stage,
                    "reason": letter.reason,
                    "record": letter.record,
                });
                match append(&mut file, path, &line) {
                    Ok(()) => dirty = true,
                    Err(e) => failed(e),
                }
            }
            Message::Sync(answer) => {
                if shared.failure().is_none() {
                    if let Some(Err(e)) = file.as_mut().map(durable) {
                        failed(e);
                    }
                    dirty = false;
                }
                let result = match shared.failure() {
                    Some(failure) => Err(failure),
                    None => {
                        shared.synced.store(written, Ordering::Release);
                        Ok(())
                    }
                };
                let _ = answer.send(result);
            }
        }
    }
}

/// Appends one line, opening (and creating) the file first if needed.
fn append(
    file: &mut Option<BufWriter<File>>,
    path: &Path,
    line: &serde_json::Value,
) -> std::io::Result<()> {
    let f = match file {
        Some(f) => f,
        None => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let opened = OpenOptions::new().create(true).append(true).open(path)?;
            file.insert(BufWriter::new(opened))
        }
    };
    serde_json::to_writer(&mut *f, line)?;
    f.write_all(b"\n")
}

/// Flushes the buffer and makes the file's content durable.
fn durable(file: &mut BufWriter<File>) -> std::io::Result<()> {
    file.flush()?;
    file.get_ref().sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tsmig-dl-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn records_are_json_lines_with_reason_and_are_counted() {
        let dir = scratch("lines");
        let path = dir.join("dl.jsonl");
        let dl = DeadLetters::new("j", &path);
        dl.sync().unwrap();
        assert!(!path.exists(), "no file before the first rejection");
        dl.record("mapping", "device is NULL", json!({"id": 7}));
        dl.record("sink", "bad", json!("m f=1 1"));
        assert_eq!(dl.count(), 2);
        dl.sync().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["job"], "j");
        assert_eq!(lines[0]["stage"], "mapping");
        assert_eq!(lines[0]["reason"], "device is NULL");
        assert_eq!(lines[0]["record"]["id"], 7);
        assert_eq!(lines[1]["record"], "m f=1 1");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn letters_reach_the_file_within_a_flush_interval_without_a_sync() {
        let dir = scratch("interval");
        let path = dir.join("dl.jsonl");
        let dl = DeadLetters::new("j", &path);
        for id in 0..3 {
            dl.record("mapping", "device is NULL", json!({ "id": id }));
        }
        // No sync, the handle kept: only the writer's own flush can put them there.
        let deadline = std::time::Instant::now() + FLUSH_EVERY * 5;
        let lines = loop {
            let lines = std::fs::read_to_string(&path)
                .map(|t| t.lines().count())
                .unwrap_or(0);
            if lines == 3 || std::time::Instant::now() > deadline {
                break lines;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(lines, 3, "not flushed within {:?}", FLUSH_EVERY * 5);
        drop(dl);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn many_writers_lose_nothing_and_the_last_handle_flushes() {
        let dir = scratch("many");
        let path = dir.join("dl.jsonl");
        let dl = DeadLetters::new("j", &path);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let dl = dl.clone();
                std::thread::spawn(move || {
                    for i in 0..5_000 {
                        dl.record("sink", "r", json!(t * 10_000 + i));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(dl);
        let mut seen: Vec<i64> = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["record"]
                    .as_i64()
                    .unwrap()
            })
            .collect();
        seen.sort();
        let expected: Vec<i64> = (0..4)
            .flat_map(|t| (0..5_000).map(move |i| t * 10_000 + i))
            .collect();
        assert_eq!(seen, expected);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_file_that_cannot_be_written_fails_loudly_and_stays_failed() {
        let dir = scratch("blocked");
        std::fs::create_dir_all(&dir).unwrap();
        // A regular file where the directory should be: even root cannot create under it.
        let blocker = dir.join("not-a-directory");
        std::fs::write(&blocker, "").unwrap();
        let path = blocker.join("dl.jsonl");
        let dl = DeadLetters::new("j", &path);
        let reported = Arc::new(Mutex::new(Vec::new()));
        let into = reported.clone();
        dl.on_failure(move |e| into.lock().unwrap().push(e));
        dl.record("mapping", "device is NULL", json!({"id": 1}));
        let err = dl.sync().unwrap_err();
        assert!(
            err.contains(&format!(
                "cannot write the dead-letter file {}",
                path.display()
            )),
            "{err}"
        );
        assert_eq!(*reported.lock().unwrap(), vec![err.clone()]);
        dl.record("mapping", "device is NULL", json!({"id": 2}));
        assert_eq!(dl.sync().unwrap_err(), err, "a failure is never forgotten");
        assert_eq!(reported.lock().unwrap().len(), 1, "reported once");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
