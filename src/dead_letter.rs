//! The dead-letter file: every row or point a job could not deliver, with the reason.
//!
//! Nothing is dropped silently. A row the mapping cannot turn into a point, a value the
//! source cannot convert, a line the target rejects for good: each becomes one JSON line
//! `{"time", "job", "stage", "reason", "record"}` here and is counted in the job summary.
//! The file is created on the first rejection only, so an empty job leaves none behind.

use serde_json::json;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Where rejected records go; cheap to clone, shared by every worker of a process.
#[derive(Clone)]
pub struct DeadLetters {
    inner: Arc<Inner>,
}

struct Inner {
    job: String,
    path: PathBuf,
    file: Mutex<Option<BufWriter<File>>>,
    count: AtomicU64,
}

impl DeadLetters {
    /// Dead letters of `job`, appended to `path`.
    pub fn new(job: &str, path: &Path) -> Self {
        Self {
            inner: Arc::new(Inner {
                job: job.to_string(),
                path: path.to_path_buf(),
                file: Mutex::new(None),
                count: AtomicU64::new(0),
            }),
        }
    }

    /// Records one rejected record. `stage` says where it was rejected (`source`,
    /// `mapping`, `sink`), `reason` why, `record` what it was.
    pub fn record(&self, stage: &str, reason: &str, record: serde_json::Value) {
        self.inner.count.fetch_add(1, Ordering::Relaxed);
        let line = json!({
            "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "job": self.inner.job,
            "stage": stage,
            "reason": reason,
            "record": record,
        });
        let mut file = self.inner.file.lock().unwrap_or_else(|p| p.into_inner());
        if file.is_none() {
            if let Some(dir) = self.inner.path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            match OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.inner.path)
            {
                Ok(f) => *file = Some(BufWriter::new(f)),
                Err(e) => {
                    // The record is still counted; losing the file is reported loudly.
                    tracing::error!(path = %self.inner.path.display(), error = %e,
                        "cannot open the dead-letter file; rejected record: {line}");
                    return;
                }
            }
        }
        if let Some(f) = file.as_mut() {
            if let Err(e) = writeln!(f, "{line}").and_then(|_| f.flush()) {
                tracing::error!(path = %self.inner.path.display(), error = %e,
                    "cannot write the dead-letter file; rejected record: {line}");
            }
        }
    }

    /// How many records were rejected so far.
    pub fn count(&self) -> u64 {
        self.inner.count.load(Ordering::Relaxed)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_json_lines_with_reason_and_are_counted() {
        let dir = std::env::temp_dir().join(format!("tsmig-dl-{}", std::process::id()));
        let path = dir.join("dl.jsonl");
        let dl = DeadLetters::new("j", &path);
        assert!(!path.exists(), "no file before the first rejection");
        dl.record("mapping", "device is NULL", json!({"id": 7}));
        dl.record("sink", "bad", json!("m f=1 1"));
        assert_eq!(dl.count(), 2);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["stage"], "mapping");
        assert_eq!(lines[0]["reason"], "device is NULL");
        assert_eq!(lines[0]["record"]["id"], 7);
        assert_eq!(lines[1]["record"], "m f=1 1");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
