//! One owner per state directory: the run that holds its lock.
//!
//! Two runs of one job on one state would each read everything and overwrite each other's
//! checkpoints. So process 0 of a run (the only one that writes state) takes an exclusive
//! lock on `<state dir>/state.lock` before it connects anywhere, and holds it until it
//! exits; a second run is refused at once, naming the holder.
//!
//! The lock is the operating system's (`flock`), not the file's existence: the kernel
//! releases it when its holder exits, however it exits (`kill -9` included), so a run that
//! died never blocks the next one. The file's content — the holder's job, mode, pid, host
//! and start time — is only there to be shown: written once the lock is held, emptied on a
//! clean exit. A file still naming a holder when the lock is free was left by a run that
//! died (or whose host did); the new run takes over and says so. A lock that is held is
//! never broken on the strength of its content: its holder may run on another host or in
//! another container that shares the directory, where its pid means nothing here.
//!
//! The file is never deleted: a run that deleted it on exit could leave a second run
//! holding the lock of an unlinked file while a third locks a new one.

use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The lock file's name in the state directory.
pub const LOCK_FILE: &str = "state.lock";

/// Who holds (or last held) a state directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The job's name.
    pub job: String,
    /// The entry point it runs (`backfill`, `cdc`, ...).
    pub mode: String,
    /// Its process id, on `host`.
    pub pid: u32,
    /// The host it runs on.
    pub host: String,
    /// When it took the lock (RFC 3339, UTC).
    pub started: String,
}

impl Holder {
    /// This process, running `job` as `mode`, from now.
    pub fn this_process(job: &str, mode: &str) -> Self {
        Self {
            job: job.to_string(),
            mode: mode.to_string(),
            pid: std::process::id(),
            host: host_name(),
            started: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }

    /// `pid 1234 on host db-7, started 2026-01-01T00:00:00Z (job x, backfill)`.
    fn describe(&self) -> String {
        format!(
            "pid {} on host {}, started {} (job `{}`, {})",
            self.pid, self.host, self.started, self.job, self.mode
        )
    }

    /// Whether this holder is a process of this host that no longer runs.
    fn is_gone_here(&self) -> bool {
        self.host == host_name()
            && rustix::process::Pid::from_raw(self.pid as i32)
                .map(|pid| {
                    matches!(
                        rustix::process::test_kill_process(pid),
                        Err(rustix::io::Errno::SRCH)
                    )
                })
                .unwrap_or(true)
    }
}

/// The held lock of a state directory; released (and its file emptied) when dropped.
#[derive(Debug)]
pub struct StateLock {
    file: File,
    path: PathBuf,
    /// The holder before this one, when it died holding the lock (for the log).
    taken_over: Option<Holder>,
}

impl StateLock {
    /// Locks `dir` (created if missing) for `holder`, or says who holds it.
    pub fn acquire(dir: &Path, holder: &Holder) -> Result<StateLock, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the state directory {}: {e}", dir.display()))?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| format!("cannot open the state lock {}: {e}", path.display()))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Err(refusal(dir, &path, &mut file)),
            Err(e) => {
                return Err(format!(
                    "cannot lock {}: {e}; the state directory must be on a file system with file locks (flock)",
                    path.display()
                ))
            }
        }
        let taken_over = read_holder(&mut file);
        let text = serde_json::to_string(holder).map_err(|e| e.to_string())?;
        (|| {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            file.write_all(text.as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_data()
        })()
        .map_err(|e| format!("cannot write the state lock {}: {e}", path.display()))?;
        Ok(StateLock {
            file,
            path,
            taken_over,
        })
    }

    /// The holder before this run, if it ended without releasing the lock (killed, or its
    /// host went down), and a line saying so.
    pub fn taken_over(&self) -> Option<(&Holder, String)> {
        self.taken_over.as_ref().map(|h| {
            let gone = if h.is_gone_here() {
                " (that process is gone)"
            } else {
                ""
            };
            (
                h,
                format!(
                    "took over the state lock {}: its last holder, {}{gone}, ended without releasing it; its recorded progress is resumed",
                    self.path.display(),
                    h.describe()
                ),
            )
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        // Empty: nobody holds it. The kernel releases the lock when the file closes.
        let _ = self.file.set_len(0);
    }
}

/// The error for a held lock, naming its holder.
fn refusal(dir: &Path, path: &Path, file: &mut File) -> String {
    // The holder writes its name just after it locks: give it a moment if it has not yet.
    let mut holder = read_holder(file);
    for _ in 0..10 {
        if holder.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        holder = read_holder(file);
    }
    let who = match &holder {
        Some(h) => {
            let elsewhere = if h.is_gone_here() {
                " (no such process runs here: it holds the lock from another pid namespace, e.g. a container sharing this directory)"
            } else {
                ""
            };
            format!("{}{elsewhere}", h.describe())
        }
        None => format!(
            "a process that has not written its name into {}",
            path.display()
        ),
    };
    format!(
        "the state in {} is in use by another run: {who}. Two runs of one job would both read everything and overwrite each other's checkpoints; wait for it to end, or stop it (a run that is killed releases the lock)",
        dir.display()
    )
}

/// The holder a lock file names, if it names one.
fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(text.trim()).ok()
}

/// This host's name.
fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tsmig-lock-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_second_owner_is_refused_with_the_holder_named_until_the_first_lets_go() {
        let dir = dir("second");
        let me = Holder::this_process("j", "backfill");
        let first = StateLock::acquire(&dir, &me).unwrap();
        assert!(first.taken_over().is_none());
        let err = StateLock::acquire(&dir, &Holder::this_process("j", "cdc")).unwrap_err();
        assert!(
            err.contains(&format!(
                "in use by another run: pid {} on host {}, started {} (job `j`, backfill)",
                me.pid, me.host, me.started
            )),
            "{err}"
        );
        drop(first);
        assert_eq!(std::fs::read_to_string(dir.join(LOCK_FILE)).unwrap(), "");
        let again = StateLock::acquire(&dir, &me).unwrap();
        assert!(
            again.taken_over().is_none(),
            "a clean exit leaves no holder"
        );
        drop(again);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_lock_file_left_by_a_dead_holder_is_taken_over() {
        let dir = dir("stale");
        std::fs::create_dir_all(&dir).unwrap();
        // No process has this pid: Linux's pid_max is at most 2^22.
        let dead = Holder {
            pid: 4_999_999,
            ..Holder::this_process("j", "backfill")
        };
        std::fs::write(dir.join(LOCK_FILE), serde_json::to_string(&dead).unwrap()).unwrap();
        let lock = StateLock::acquire(&dir, &Holder::this_process("j", "backfill")).unwrap();
        let (previous, line) = lock.taken_over().unwrap();
        assert_eq!(previous, &dead);
        assert!(line.contains("pid 4999999"), "{line}");
        assert!(line.contains("(that process is gone)"), "{line}");
        let recorded: Holder =
            serde_json::from_str(&std::fs::read_to_string(dir.join(LOCK_FILE)).unwrap()).unwrap();
        assert_eq!(recorded.pid, std::process::id());
        drop(lock);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
