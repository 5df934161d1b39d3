//! The file state store: one JSON file per job in the state directory, replaced
//! atomically (write a temp file, fsync it, rename it over the old one, fsync the
//! directory), so a crash leaves either the old checkpoint or the new one, never half.

use super::{BackfillState, CdcState, FollowState};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A state directory.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
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
        }
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
        let text = serde_json::to_vec(state).map_err(|e| e.to_string())?;
        self.replace(CDC, &text)
            .map_err(|e| format!("cannot write checkpoint in {}: {e}", self.dir.display()))
    }

    /// The recorded watermark of `backfill+follow`, if any.
    pub fn load_follow(&self) -> Result<Option<FollowState>, String> {
        self.load(FOLLOW, "run with --fresh to copy everything again")
    }

    /// Records the watermark of `backfill+follow`, atomically.
    pub fn save_follow(&self, state: &FollowState) -> Result<(), String> {
        let text = serde_json::to_vec(state).map_err(|e| e.to_string())?;
        self.replace(FOLLOW, &text)
            .map_err(|e| format!("cannot write checkpoint in {}: {e}", self.dir.display()))
    }

    /// The store of the `backfill+follow` round under way: its plan and finished splits,
    /// kept like a backfill's (`backfill.json`) in a subdirectory.
    pub fn follow_round(&self) -> FileStore {
        FileStore::new(&self.dir.join(FOLLOW_ROUND))
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
        let text = serde_json::to_vec(state).map_err(|e| e.to_string())?;
        self.replace(BACKFILL, &text)
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
