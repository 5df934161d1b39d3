//! The file state store: one JSON file per job in the state directory, replaced
//! atomically (write a temp file, fsync it, rename it over the old one, fsync the
//! directory), so a crash leaves either the old checkpoint or the new one, never half; a
//! save that fails leaves no temp file behind.
//!
//! A checkpoint says which rows are done, dead-lettered ones included: before each save the
//! store makes the job's dead letters durable ([`DeadLetters::sync`]), and a dead letter
//! that could not be written fails the save, so no checkpoint covers a lost dead letter.

use super::{BackfillState, CdcState, FollowState};
use crate::dead_letter::DeadLetters;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A state directory.
#[derive(Clone)]
pub struct FileStore {
    dir: PathBuf,
    /// Made durable before every save.
    dead_letters: Option<DeadLetters>,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore").field("dir", &self.dir).finish()
    }
}

const BACKFILL: &str = "backfill.json";
const CDC: &str = "cdc.json";
const FOLLOW: &str = "follow.json";
/// The subdirectory holding the plan and progress of a `backfill+follow` round.
const FOLLOW_ROUND: &str = "follow-round";

impl FileStore {
    /// The store in `dir` (created on first save).
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            dead_letters: None,
        }
    }

    /// The store, making `dead_letters` durable before every save (a save fails if one
    /// could not be written).
    pub fn with_dead_letters(mut self, dead_letters: DeadLetters) -> Self {
        self.dead_letters = Some(dead_letters);
        self
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The recorded backfill state, if any.
    pub fn load_backfill(&self) -> Result<Option<BackfillState>, String> {
        self.load(BACKFILL, "move it away to start the backfill over")
    }

    /// The recorded change-log position, if any.
    pub fn load_cdc(&self) -> Result<Option<CdcState>, String> {
        self.load(
            CDC,
            "delete it and run `-c backfill+cdc --fresh` to start over from a new snapshot",
        )
    }

    /// Records the change-log position, atomically.
    pub fn save_cdc(&self, state: &CdcState) -> Result<(), String> {
        self.save(CDC, state)
    }

    /// The recorded watermark of `backfill+follow`, if any.
    pub fn load_follow(&self) -> Result<Option<FollowState>, String> {
        self.load(FOLLOW, "run with --fresh to copy everything again")
    }

    /// Records the watermark of `backfill+follow`, atomically.
    pub fn save_follow(&self, state: &FollowState) -> Result<(), String> {
        self.save(FOLLOW, state)
    }

    /// The store of the `backfill+follow` round under way: its plan and finished splits,
    /// kept like a backfill's (`backfill.json`) in a subdirectory.
    pub fn follow_round(&self) -> FileStore {
        FileStore {
            dir: self.dir.join(FOLLOW_ROUND),
            dead_letters: self.dead_letters.clone(),
        }
    }

    fn load<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
        remedy: &str,
    ) -> Result<Option<T>, String> {
        let path = self.dir.join(name);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read checkpoint {}: {e}", path.display())),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| format!("checkpoint {} is damaged ({e}); {remedy}", path.display()))
    }

    /// Records `state`, atomically.
    pub fn save_backfill(&self, state: &BackfillState) -> Result<(), String> {
        self.save(BACKFILL, state)
    }

    /// Makes the dead letters durable, then replaces `name` with `state`.
    ///
    /// Blocks on two or three fsyncs: callers are plain threads (the timely worker that
    /// commits, the runner before the dataflow starts), never a task of the async runtime,
    /// whose few threads every connection and write shares. Debug builds (every test) check.
    fn save(&self, name: &str, state: &impl serde::Serialize) -> Result<(), String> {
        debug_assert!(
            tokio::runtime::Handle::try_current().is_err(),
            "a checkpoint saved on the async runtime: it blocks that runtime's thread on fsync"
        );
        if let Some(dead_letters) = &self.dead_letters {
            dead_letters.sync()?;
        }
        let text = serde_json::to_vec(state).map_err(|e| e.to_string())?;
        self.replace(name, &text)
            .map_err(|e| format!("cannot write checkpoint in {}: {e}", self.dir.display()))
    }

    /// Removes the recorded state, backfill, change-log position and follow watermark with
    /// its round (`--fresh`).
    pub fn clear_backfill(&self) -> Result<(), String> {
        let round = Path::new(FOLLOW_ROUND).join(BACKFILL);
        for name in [
            Path::new(BACKFILL),
            Path::new(CDC),
            Path::new(FOLLOW),
            round.as_path(),
        ] {
            match fs::remove_file(self.dir.join(name)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("cannot remove checkpoint: {e}")),
            }
        }
        Ok(())
    }

    fn replace(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let written =
            write_synced(&tmp, bytes).and_then(|()| fs::rename(&tmp, self.dir.join(name)));
        if written.is_err() {
            // A full disk must not keep what it let us write of the temp file.
            let _ = fs::remove_file(&tmp);
        }
        written?;
        // The rename itself is durable only once the directory is.
        File::open(&self.dir)?.sync_all()
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_loads_and_replaces() {
        let dir = std::env::temp_dir().join(format!("tsmig-store-{}", std::process::id()));
        let store = FileStore::new(&dir);
        assert_eq!(store.load_backfill().unwrap(), None);
        let mut state = BackfillState::new("j", vec![]);
        store.save_backfill(&state).unwrap();
        state.finished = vec![(0, 4)];
        store.save_backfill(&state).unwrap();
        assert_eq!(store.load_backfill().unwrap(), Some(state));
        assert!(!dir.join(".backfill.json.tmp").exists());
        fs::write(dir.join(BACKFILL), b"{ nope").unwrap();
        assert!(store.load_backfill().unwrap_err().contains("damaged"));
        store.clear_backfill().unwrap();
        assert_eq!(store.load_backfill().unwrap(), None);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn no_checkpoint_is_saved_over_a_dead_letter_that_could_not_be_written() {
        let dir = std::env::temp_dir().join(format!("tsmig-store-dl-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("blocker"), "").unwrap();
        let good = DeadLetters::new("j", &dir.join("dead.jsonl"));
        let store = FileStore::new(&dir.join("state")).with_dead_letters(good.clone());
        let state = BackfillState::new("j", vec![]);
        good.record("mapping", "device is NULL", serde_json::json!({"id": 1}));
        store.save_backfill(&state).unwrap();
        assert_eq!(
            fs::read_to_string(dir.join("dead.jsonl"))
                .unwrap()
                .lines()
                .count(),
            1,
            "written and durable before the checkpoint"
        );

        let lost = DeadLetters::new("j", &dir.join("blocker/dead.jsonl"));
        let store = store.with_dead_letters(lost.clone()).follow_round();
        lost.record("mapping", "device is NULL", serde_json::json!({"id": 2}));
        let err = store.save_backfill(&state).unwrap_err();
        assert!(err.contains("cannot write the dead-letter file"), "{err}");
        assert_eq!(store.load_backfill().unwrap(), None, "nothing saved");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn every_dead_letter_recorded_before_a_checkpoint_is_on_disk_after_it() {
        let dir = std::env::temp_dir().join(format!("tsmig-store-all-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let letters = DeadLetters::new("j", &dir.join("dead.jsonl"));
        let store = FileStore::new(&dir.join("state")).with_dead_letters(letters.clone());
        // More than the writer's queue holds, from several workers at once.
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let letters = letters.clone();
                std::thread::spawn(move || {
                    for i in 0..3_000 {
                        letters.record("sink", "refused", serde_json::json!(w * 10_000 + i));
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        store
            .save_backfill(&BackfillState::new("j", vec![]))
            .unwrap();
        // Read at once, every handle still open: nothing waits in a buffer or a queue.
        let mut ids: Vec<i64> = fs::read_to_string(dir.join("dead.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["record"]
                    .as_i64()
                    .unwrap()
            })
            .collect();
        ids.sort();
        let expected: Vec<i64> = (0..4)
            .flat_map(|w| (0..3_000).map(move |i| w * 10_000 + i))
            .collect();
        assert_eq!(ids, expected);
        drop((store, letters));
        fs::remove_dir_all(dir).unwrap();
    }

    #[cfg(debug_assertions)]
    #[tokio::test]
    #[should_panic(expected = "a checkpoint saved on the async runtime")]
    async fn a_checkpoint_saved_on_the_async_runtime_is_caught_in_debug_builds() {
        let dir = std::env::temp_dir().join(format!("tsmig-store-rt-{}", std::process::id()));
        let _ = FileStore::new(&dir).save_backfill(&BackfillState::new("j", vec![]));
    }

    #[test]
    fn a_failed_save_leaves_no_temp_file() {
        let dir = std::env::temp_dir().join(format!("tsmig-store-fail-{}", std::process::id()));
        let store = FileStore::new(&dir);
        // The checkpoint's name taken by a directory: the rename fails, as a full disk
        // fails the write before it.
        fs::create_dir_all(dir.join(BACKFILL).join("x")).unwrap();
        let error = store
            .save_backfill(&BackfillState::new("j", vec![]))
            .unwrap_err();
        assert!(error.starts_with("cannot write checkpoint in"), "{error}");
        assert!(!dir.join(".backfill.json.tmp").exists());
        fs::remove_dir_all(dir).unwrap();
    }
}
