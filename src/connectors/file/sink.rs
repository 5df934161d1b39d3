//! The file sink: each batch is one append to the open file and one fsync, run on tokio's
//! blocking threads; the write is acknowledged once both are done.

use super::client::{Directory, Recovered};
use super::config::FileSinkConfig;
use crate::sink::line_protocol::{Encoding, LineBatch};
use crate::sink::{BatchConfig, Sink, WriteError};
use std::sync::Arc;
use std::time::Duration;

/// Writes points into files in one directory.
pub struct FileSink {
    directory: Arc<Directory>,
    encoding: Encoding,
    batching: BatchConfig,
    target: String,
}

impl FileSink {
    /// A sink for `config`; nothing is touched before [`Sink::prepare`].
    pub fn new(config: &FileSinkConfig, batching: &BatchConfig) -> Self {
        let layout = config.layout();
        let target = format!(
            "files in {} (line protocol, precision {}, named {}-<first time>-<seq>.{}, rolled at {}{})",
            layout.dir.display(),
            config.precision.as_str(),
            layout.prefix,
            super::names::EXTENSION,
            show_bytes(layout.roll_bytes),
            layout
                .roll_after
                .map(|d| format!(" or after {}", humantime::format_duration(d)))
                .unwrap_or_default()
        );
        Self {
            directory: Arc::new(Directory::new(layout)),
            encoding: Encoding {
                precision: config.precision,
                unsigned: config.unsigned,
            },
            batching: batching.clone(),
            target,
        }
    }

    /// Runs `f` on the directory on a blocking thread.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Directory) -> Result<T, WriteError> + Send + 'static,
    ) -> Result<T, WriteError> {
        let directory = self.directory.clone();
        tokio::task::spawn_blocking(move || f(&directory))
            .await
            .unwrap_or_else(|e| {
                Err(WriteError::Fatal {
                    message: format!("a file write stopped: {e}"),
                })
            })
    }
}

#[async_trait::async_trait]
impl Sink for FileSink {
    type Batch = LineBatch;

    fn new_batch(&self) -> LineBatch {
        LineBatch::with_times(self.encoding, self.batching.batch_size)
    }

    fn batching(&self) -> &BatchConfig {
        &self.batching
    }

    async fn write(&self, batch: &LineBatch) -> Result<(), WriteError> {
        let body = batch.shared_body();
        let first_time = batch.first_time();
        self.blocking(move |directory| directory.append(body.as_ref(), first_time))
            .await
    }

    /// Creates the directory and recovers what a crashed run left in it; with
    /// `roll_after`, starts the clock that closes a file left open too long.
    async fn prepare(&self) -> Result<(), WriteError> {
        let recovered = self.blocking(Directory::recover).await?;
        report(&recovered, self.directory.layout().dir.display());
        if let Some(after) = self.directory.layout().roll_after {
            let directory = Arc::downgrade(&self.directory);
            let every = (after / 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    // Ends with the sink.
                    let Some(directory) = directory.upgrade() else {
                        break;
                    };
                    let rolled = tokio::task::spawn_blocking(move || directory.roll_if_due()).await;
                    if let Ok(Err(e)) = rolled {
                        // The directory is broken now: the next write fails the job.
                        tracing::warn!("closing a file open for {after:?}: {e}");
                    }
                }
            });
        }
        Ok(())
    }

    async fn finish(&self) -> Result<(), WriteError> {
        self.blocking(Directory::finish).await
    }

    fn describe(&self) -> String {
        self.target.clone()
    }

    fn read_back(&self) -> Result<&dyn crate::sink::ReadBack, String> {
        Err(format!(
            "verify cannot read {} back (yet); a file may also hold a point twice after a crash",
            self.target
        ))
    }
}

/// `64MiB`, `1500 bytes`: a size as the job file would write it.
fn show_bytes(n: u64) -> String {
    match n {
        n if n % (1 << 30) == 0 => format!("{}GiB", n >> 30),
        n if n % (1 << 20) == 0 => format!("{}MiB", n >> 20),
        n if n % (1 << 10) == 0 => format!("{}KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

fn report(recovered: &Recovered, dir: impl std::fmt::Display) {
    if !recovered.kept.is_empty() {
        tracing::warn!(
            files = recovered.kept.len(),
            lines = recovered.lines,
            cut_bytes = recovered.cut_bytes,
            "recovered the files a crashed run left open in {dir}: {}; what it wrote after its last checkpoint is written again (an ingest client resends what got no answer), so some points may appear twice",
            recovered.kept.join(", ")
        );
    }
    if recovered.removed > 0 {
        tracing::info!(
            files = recovered.removed,
            "removed temp files with nothing whole in them (or already renamed) from {dir}"
        );
    }
    if recovered.live > 0 {
        tracing::info!(
            files = recovered.live,
            "left alone temp files another live writer holds in {dir}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::TimeUnit;
    use crate::model::{Name, Point, Value};
    use crate::sink::Batch;

    fn config(dir: &std::path::Path) -> FileSinkConfig {
        FileSinkConfig {
            path: dir.to_path_buf(),
            prefix: "points".into(),
            format: Default::default(),
            precision: TimeUnit::Millis,
            unsigned: false,
            roll_bytes: 64 << 20,
            roll_after: Some(Duration::from_millis(20)),
        }
    }

    fn point(t: i64) -> Point {
        Point {
            measurement: Name::from("m"),
            tags: vec![],
            fields: vec![(Name::from("v"), Value::UInt(t as u64))],
            time: t * 1_000_000,
            device_hash: 0,
        }
    }

    fn listing(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_acknowledged_batch_is_in_a_file_and_an_idle_file_is_closed_after_roll_after() {
        let dir = std::env::temp_dir()
            .join("tsmig-file-sink")
            .join(format!("sink-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let sink = FileSink::new(&config(&dir), &BatchConfig::default());
        sink.prepare().await.unwrap();
        let mut batch = sink.new_batch();
        batch.push(&point(1_000)).unwrap();
        // An unsigned value beyond InfluxDB 1.x's integers, with `unsigned: false`.
        let mut big = point(2_000);
        big.fields[0].1 = Value::UInt(u64::MAX);
        assert!(batch.push(&big).unwrap_err().contains("signed 64-bit"));
        sink.write(&batch).await.unwrap();
        let open = listing(&dir);
        assert_eq!(open.len(), 1);
        assert_eq!(
            std::fs::read_to_string(dir.join(&open[0])).unwrap(),
            "m v=1000i 1000\n"
        );
        // Idle past roll_after: the clock closes it (polled, with a deadline).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while listing(&dir) != ["points-19700101T000001Z-000000.lp"] {
            assert!(
                std::time::Instant::now() < deadline,
                "not rolled after 10 s: {:?}",
                listing(&dir)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        sink.finish().await.unwrap();
        assert!(sink.read_back().is_err());
        assert!(
            sink.describe().contains("rolled at 64MiB or after 20ms"),
            "{}",
            sink.describe()
        );
        assert_eq!(show_bytes(1500), "1500 bytes");
        assert_eq!(show_bytes(3 << 10), "3KiB");
    }
}
