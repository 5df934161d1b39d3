//! The directory the files are written in: this connector's "server". It opens a temp
//! file, appends batches to it (each fsynced before it counts as written), closes it —
//! fsync, rename to its final name, fsync of the directory — when it is full, old, or the
//! run is over, and recovers the temp files a crashed run left.
//!
//! Every call here is blocking file I/O; the sink runs them on tokio's blocking threads.
//! One [`Directory`] serves every worker of a process: appends take turns at the open file
//! (a lock held while the bytes are copied in), and fsync outside the lock, so concurrent
//! writers share their fsyncs rather than queue for them.

use super::encoding::whole_lines;
use super::names;
use crate::job::TimeUnit;
use crate::sink::WriteError;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Where and how files are written.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The directory.
    pub dir: PathBuf,
    /// The start of every file name.
    pub prefix: String,
    /// A file is closed before an append would take it past this many bytes.
    pub roll_bytes: u64,
    /// A file is closed once it has been open this long.
    pub roll_after: Option<Duration>,
    /// The unit of the times in the files (recovery reads them back).
    pub precision: TimeUnit,
}

/// The files of one sink: at most one open (a temp name), the others closed (final names).
pub struct Directory {
    layout: Layout,
    state: Mutex<State>,
}

struct State {
    open: Option<OpenFile>,
    /// The sequence number the next closed file gets (or a later one, if it is taken).
    next_seq: u64,
    /// The number in the next temp file's name.
    next_temp: u64,
    /// Why nothing more can be written: a file whose content is in doubt (an fsync or a
    /// cut-back failed). It is left under its temp name for the next run's recovery.
    broken: Option<String>,
}

/// The file being written.
struct OpenFile {
    /// Shared with the appends that fsync it outside the lock. Holds an exclusive `flock`,
    /// which says to any recovery that a live writer has it.
    file: Arc<File>,
    temp: PathBuf,
    /// Bytes written (whole batches only).
    len: u64,
    /// The earliest point time in it, ns.
    first_time: Option<i64>,
    opened: Instant,
}

/// What recovery did with the temp files a crashed run left.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Files kept, with the final names they were given.
    pub kept: Vec<String>,
    /// Lines they hold.
    pub lines: usize,
    /// Bytes cut from their ends (a line half written when the run died).
    pub cut_bytes: u64,
    /// Temp files removed: nothing whole in them, or already renamed before the crash.
    pub removed: usize,
    /// Temp files left alone: a live writer holds them.
    pub live: usize,
}

impl Directory {
    /// The files under `layout`; nothing is touched before [`Directory::recover`].
    pub fn new(layout: Layout) -> Self {
        Self {
            layout,
            state: Mutex::new(State {
                open: None,
                next_seq: 0,
                next_temp: 0,
                broken: None,
            }),
        }
    }

    /// The layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves whole batches behind it (a batch counts
        // only once written): the state is still good.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates the directory if it is missing, numbers new files after the last final one,
    /// and gives the temp files a crashed run left final names (see [`Directory::recover_temp`]).
    pub fn recover(&self) -> Result<Recovered, WriteError> {
        let Layout { dir, prefix, .. } = &self.layout;
        if fs::metadata(dir).is_ok_and(|m| !m.is_dir()) {
            return Err(WriteError::Fatal {
                message: format!(
                    "{} is a file, not a directory: `path` names the directory the files go in",
                    dir.display()
                ),
            });
        }
        fs::create_dir_all(dir).map_err(|e| io_error("cannot create the directory", dir, e))?;
        let mut temps = Vec::new();
        let mut next_seq = 0;
        for entry in fs::read_dir(dir).map_err(|e| io_error("cannot list", dir, e))? {
            let entry = entry.map_err(|e| io_error("cannot list", dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(seq) = names::final_seq(prefix, name) {
                next_seq = next_seq.max(seq + 1);
            } else if names::is_temp(prefix, name) {
                temps.push(entry.path());
            }
        }
        temps.sort();
        let mut state = self.state();
        state.next_seq = state.next_seq.max(next_seq);
        let mut recovered = Recovered::default();
        for temp in temps {
            self.recover_temp(&mut state, &temp, &mut recovered)?;
        }
        if !recovered.kept.is_empty() || recovered.removed > 0 {
            sync_dir(dir)?;
        }
        Ok(recovered)
    }

    /// A temp file nobody writes any more (its `flock` is free: its writer died) holds whole
    /// batches, each fsynced before it was acknowledged, and possibly, at its end, part of
    /// a batch that was never acknowledged. Its longest prefix of whole lines is kept under
    /// a final name: every acknowledged point is there (the checkpoint may have counted
    /// it), and the points after the last acknowledgement are written again by the
    /// restarted job — in another file, so a reader may see them twice.
    fn recover_temp(
        &self,
        state: &mut State,
        temp: &Path,
        recovered: &mut Recovered,
    ) -> Result<(), WriteError> {
        let file = match OpenOptions::new().read(true).write(true).open(temp) {
            Ok(file) => file,
            // Closed by its writer meanwhile.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error("cannot open", temp, e)),
        };
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                recovered.live += 1;
                return Ok(());
            }
            Err(e) => return Err(io_error("cannot lock", temp, e.into())),
        }
        let meta = file
            .metadata()
            .map_err(|e| io_error("cannot read", temp, e))?;
        // Its writer may have renamed it between our listing and our lock: the name must
        // still be this file.
        match fs::symlink_metadata(temp) {
            Ok(now) if now.ino() == meta.ino() && now.dev() == meta.dev() => {}
            _ => return Ok(()),
        }
        if meta.nlink() > 1 {
            // Linked under its final name already (the link-then-unlink rename of a file
            // system without RENAME_NOREPLACE), the unlink not done.
            fs::remove_file(temp).map_err(|e| io_error("cannot remove", temp, e))?;
            recovered.removed += 1;
            return Ok(());
        }
        let bytes = fs::read(temp).map_err(|e| io_error("cannot read", temp, e))?;
        let whole = whole_lines(&bytes, self.layout.precision);
        let Some(first_time) = whole.first_time else {
            fs::remove_file(temp).map_err(|e| io_error("cannot remove", temp, e))?;
            recovered.removed += 1;
            return Ok(());
        };
        if (whole.len as u64) < meta.len() {
            file.set_len(whole.len as u64)
                .map_err(|e| io_error("cannot cut the torn end of", temp, e))?;
            recovered.cut_bytes += meta.len() - whole.len as u64;
        }
        file.sync_all()
            .map_err(|e| io_error("cannot fsync", temp, e))?;
        let name = self.rename_final(state, temp, first_time)?;
        recovered.kept.push(name);
        recovered.lines += whole.lines;
        Ok(())
    }

    /// Appends `bytes` (whole lines, the earliest at `first_time`) to the open file —
    /// opening one first, or closing a full or old one and opening the next — and fsyncs
    /// it. `Ok` means the bytes are in the file and on disk: a crash from then on keeps
    /// them (under a temp name until recovery renames it).
    pub fn append(&self, bytes: &[u8], first_time: Option<i64>) -> Result<(), WriteError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let file = {
            let mut state = self.state();
            if let Some(why) = &state.broken {
                return Err(WriteError::Fatal {
                    message: why.clone(),
                });
            }
            let full = state.open.as_ref().is_some_and(|open| {
                open.len > 0
                    && (open.len + bytes.len() as u64 > self.layout.roll_bytes
                        || self.too_old(open, Instant::now()))
            });
            if full {
                self.close(&mut state)?;
            }
            if state.open.is_none() {
                state.open = Some(self.open_temp(&mut state)?);
            }
            let open = state.open.as_mut().expect("a file is open");
            if let Err(e) = open.file.write_all_at(bytes, open.len) {
                // Cut back what went in, so the file holds whole batches only.
                let cut = open.file.set_len(open.len);
                let error = io_error("cannot write", &open.temp, e);
                if let Err(cut) = cut {
                    let why = format!(
                        "{error}, and cannot cut the partial write back ({cut}); the file is left for the next run's recovery"
                    );
                    state.broken = Some(why.clone());
                    return Err(WriteError::Fatal { message: why });
                }
                return Err(error);
            }
            open.len += bytes.len() as u64;
            open.first_time = match (open.first_time, first_time) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            open.file.clone()
        };
        // Outside the lock: appends of other workers go on meanwhile, and one fsync covers
        // every append before it.
        if let Err(e) = file.sync_data() {
            let why = format!(
                "cannot fsync a file in {}: {e}; what it holds is in doubt, so it is left for the next run's recovery",
                self.layout.dir.display()
            );
            self.state().broken = Some(why.clone());
            return Err(WriteError::Fatal { message: why });
        }
        Ok(())
    }

    /// Closes the open file if it has been open longer than `roll_after`.
    pub fn roll_if_due(&self) -> Result<(), WriteError> {
        let mut state = self.state();
        if state.broken.is_some() {
            return Ok(());
        }
        let due = state
            .open
            .as_ref()
            .is_some_and(|open| open.len > 0 && self.too_old(open, Instant::now()));
        if due {
            self.close(&mut state)?;
        }
        Ok(())
    }

    /// Closes the open file: every acknowledged batch gets its final name. The next append
    /// opens a new file.
    pub fn finish(&self) -> Result<(), WriteError> {
        let mut state = self.state();
        if let Some(why) = &state.broken {
            return Err(WriteError::Fatal {
                message: why.clone(),
            });
        }
        self.close(&mut state)
    }

    fn too_old(&self, open: &OpenFile, now: Instant) -> bool {
        self.layout
            .roll_after
            .is_some_and(|after| now.saturating_duration_since(open.opened) >= after)
    }

    /// Creates the next temp file, locked, its name made durable before anything is
    /// acknowledged in it.
    fn open_temp(&self, state: &mut State) -> Result<OpenFile, WriteError> {
        let Layout { dir, prefix, .. } = &self.layout;
        loop {
            let temp = dir.join(names::temp_name(
                prefix,
                std::process::id(),
                state.next_temp,
            ));
            state.next_temp += 1;
            let file = match OpenOptions::new().write(true).create_new(true).open(&temp) {
                Ok(file) => file,
                // Left by an earlier process with this pid, still live or not yet recovered.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_error("cannot create a file in", dir, e)),
            };
            rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
                .map_err(|e| io_error("cannot lock", &temp, e.into()))?;
            sync_dir(dir)?;
            return Ok(OpenFile {
                file: Arc::new(file),
                temp,
                len: 0,
                first_time: None,
                opened: Instant::now(),
            });
        }
    }

    /// Closes the open file, if any: fsync, rename to its final name, fsync the directory.
    /// A file that holds nothing is removed instead.
    fn close(&self, state: &mut State) -> Result<(), WriteError> {
        let Some(open) = state.open.take() else {
            return Ok(());
        };
        let result = match open.first_time {
            Some(first_time) if open.len > 0 => open
                .file
                .sync_all()
                .map_err(|e| io_error("cannot fsync", &open.temp, e))
                .and_then(|()| self.rename_final(state, &open.temp, first_time))
                .map(|_| ()),
            _ => fs::remove_file(&open.temp).map_err(|e| io_error("cannot remove", &open.temp, e)),
        }
        .and_then(|()| sync_dir(&self.layout.dir));
        if let Err(e) = &result {
            state.broken = Some(format!(
                "{e}; the file is left under its temp name for the next run's recovery"
            ));
        }
        // Dropping the file releases its lock (after the rename: recovery never sees it
        // unlocked under its temp name).
        drop(open);
        result
    }

    /// Renames `temp` to the next free final name; never over an existing file.
    fn rename_final(
        &self,
        state: &mut State,
        temp: &Path,
        first_time: i64,
    ) -> Result<String, WriteError> {
        let Layout { dir, prefix, .. } = &self.layout;
        loop {
            let name = names::final_name(prefix, first_time, state.next_seq);
            state.next_seq += 1;
            let target = dir.join(&name);
            match rename_no_replace(temp, &target) {
                Ok(()) => return Ok(name),
                // Another process's file (several processes may share a directory).
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_error("cannot rename", temp, e)),
            }
        }
    }
}

impl Drop for Directory {
    /// A run that failed still leaves what it acknowledged under final names where it can:
    /// the open file holds whole batches only. (A file whose content is in doubt stays a
    /// temp file for the next run's recovery, as everything does when the process dies.)
    fn drop(&mut self) {
        let mut state = self.state();
        if state.broken.is_none() && state.open.is_some() {
            if let Err(e) = self.close(&mut state) {
                tracing::warn!("closing the open file at the end of the run: {e}");
            }
        }
    }
}

/// `rename(from, to)` that fails with `AlreadyExists` rather than replace `to`: Linux's
/// `RENAME_NOREPLACE`, or where a file system lacks it, a hard link then an unlink (a
/// crash between the two leaves the temp name linked to a final file, which recovery
/// sees by its link count and removes).
fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
            fs::hard_link(from, to)?;
            fs::remove_file(from)
        }
        Err(e) => Err(e.into()),
    }
}

/// Makes the directory's entries (a created or renamed file) durable.
fn sync_dir(dir: &Path) -> Result<(), WriteError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("cannot fsync the directory", dir, e))
}

/// A file-system error as a write error: a full disk or quota is transient (space may be
/// freed, and the append was cut back, so a retry writes it once); anything else — no
/// permission, a read-only or failing disk — fails the job.
fn io_error(what: &str, path: &Path, e: io::Error) -> WriteError {
    let message = format!("{what} {}: {e}", path.display());
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => WriteError::Transient {
            message,
            retry_after: None,
        },
        _ => WriteError::Fatal { message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(name: &str, roll_bytes: u64) -> Layout {
        let dir = std::env::temp_dir()
            .join("tsmig-file-sink")
            .join(format!("{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        Layout {
            dir,
            prefix: "p".into(),
            roll_bytes,
            roll_after: None,
            precision: TimeUnit::Seconds,
        }
    }

    /// The directory's file names, sorted.
    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    fn line(t: i64) -> Vec<u8> {
        format!("m v={t}i {t}\n").into_bytes()
    }

    #[test]
    fn a_file_is_written_under_a_temp_name_and_renamed_when_it_is_closed() {
        let layout = layout("rename", 1 << 20);
        let dir = layout.dir.clone();
        let files = Directory::new(layout);
        assert_eq!(files.recover().unwrap(), Recovered::default());
        files
            .append(&line(1_767_225_601), Some(1_767_225_601_000_000_000))
            .unwrap();
        files
            .append(&line(1_767_225_600), Some(1_767_225_600_000_000_000))
            .unwrap();
        // Acknowledged, on disk, but under the temp name: no reader takes it yet.
        let open = listing(&dir);
        assert_eq!(open.len(), 1);
        assert!(names::is_temp("p", &open[0]), "{open:?}");
        assert_eq!(
            fs::read_to_string(dir.join(&open[0])).unwrap(),
            "m v=1767225601i 1767225601\nm v=1767225600i 1767225600\n"
        );
        files.finish().unwrap();
        assert_eq!(listing(&dir), ["p-20260101T000000Z-000000.lp"]);
        // The next append opens the next file.
        files.append(&line(5), Some(5_000_000_000)).unwrap();
        drop(files);
        assert_eq!(
            listing(&dir),
            [
                "p-19700101T000005Z-000001.lp",
                "p-20260101T000000Z-000000.lp"
            ],
            "dropping the directory closes its open file too"
        );
    }

    #[test]
    fn files_roll_before_an_append_would_pass_roll_bytes_and_hold_whole_batches() {
        let batch = [line(10), line(11)].concat();
        // Two batches fit, a third does not.
        let layout = layout("roll", 2 * batch.len() as u64 + 1);
        let dir = layout.dir.clone();
        let files = Directory::new(layout);
        files.recover().unwrap();
        for _ in 0..5 {
            files.append(&batch, Some(10_000_000_000)).unwrap();
        }
        files.finish().unwrap();
        let names = listing(&dir);
        assert_eq!(
            names,
            [
                "p-19700101T000010Z-000000.lp",
                "p-19700101T000010Z-000001.lp",
                "p-19700101T000010Z-000002.lp"
            ]
        );
        let sizes: Vec<usize> = names
            .iter()
            .map(|n| fs::read(dir.join(n)).unwrap().len())
            .collect();
        assert_eq!(sizes, [2 * batch.len(), 2 * batch.len(), batch.len()]);

        // A batch larger than roll_bytes gets a file of its own, whole.
        let big = [batch.clone(), batch.clone(), batch.clone()].concat();
        files.append(&batch, Some(10_000_000_000)).unwrap();
        files.append(&big, Some(10_000_000_000)).unwrap();
        files.finish().unwrap();
        let names = listing(&dir);
        assert_eq!(names.len(), 5);
        assert_eq!(fs::read(dir.join(&names[4])).unwrap(), big);
    }

    #[test]
    fn files_roll_after_a_while_even_when_not_full() {
        let mut layout = layout("after", 1 << 20);
        layout.roll_after = Some(Duration::from_millis(50));
        let dir = layout.dir.clone();
        let files = Directory::new(layout);
        files.recover().unwrap();
        files.append(&line(1), Some(1_000_000_000)).unwrap();
        files.roll_if_due().unwrap();
        assert!(names::is_temp("p", &listing(&dir)[0]), "not due yet");
        std::thread::sleep(Duration::from_millis(60));
        files.roll_if_due().unwrap();
        assert_eq!(listing(&dir), ["p-19700101T000001Z-000000.lp"]);
        // And an append to an old file closes it first.
        files.append(&line(2), Some(2_000_000_000)).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        files.append(&line(3), Some(3_000_000_000)).unwrap();
        files.finish().unwrap();
        assert_eq!(
            listing(&dir),
            [
                "p-19700101T000001Z-000000.lp",
                "p-19700101T000002Z-000001.lp",
                "p-19700101T000003Z-000002.lp"
            ]
        );
    }

    #[test]
    fn recovery_keeps_the_whole_lines_of_a_dead_writers_file_under_a_final_name() {
        let layout = layout("recover", 1 << 20);
        let dir = layout.dir.clone();
        fs::create_dir_all(&dir).unwrap();
        // Earlier runs: a final file numbered 6, a torn temp file, one with nothing whole,
        // one linked under its final name already, and another prefix's temp file.
        fs::write(dir.join("p-19700101T000000Z-000006.lp"), line(0)).unwrap();
        let torn = [line(9), line(8), b"m v=7i".to_vec()].concat();
        fs::write(dir.join(names::temp_name("p", 1, 0)), &torn).unwrap();
        fs::write(dir.join(names::temp_name("p", 1, 1)), b"m v=").unwrap();
        fs::write(dir.join("p-19700101T000003Z-000005.lp"), line(3)).unwrap();
        fs::hard_link(
            dir.join("p-19700101T000003Z-000005.lp"),
            dir.join(names::temp_name("p", 1, 2)),
        )
        .unwrap();
        fs::write(dir.join(names::temp_name("q", 1, 0)), line(1)).unwrap();

        let files = Directory::new(layout);
        let recovered = files.recover().unwrap();
        assert_eq!(
            recovered,
            Recovered {
                kept: vec!["p-19700101T000008Z-000007.lp".into()],
                lines: 2,
                cut_bytes: 6,
                removed: 2,
                live: 0,
            }
        );
        assert_eq!(
            fs::read(dir.join("p-19700101T000008Z-000007.lp")).unwrap(),
            [line(9), line(8)].concat()
        );
        // New files are numbered after the last.
        files.append(&line(20), Some(20_000_000_000)).unwrap();
        files.finish().unwrap();
        assert_eq!(
            listing(&dir),
            [
                ".q-1-0.lp.tmp",
                "p-19700101T000000Z-000006.lp",
                "p-19700101T000003Z-000005.lp",
                "p-19700101T000008Z-000007.lp",
                "p-19700101T000020Z-000008.lp",
            ]
        );
    }

    #[test]
    fn recovery_leaves_a_live_writers_file_alone() {
        let layout = layout("live", 1 << 20);
        let dir = layout.dir.clone();
        let writer = Directory::new(layout.clone());
        writer.recover().unwrap();
        writer.append(&line(1), Some(1_000_000_000)).unwrap();
        // Another sink on the same directory (another process of a cluster, a restarted
        // attempt while the old one drains) starts meanwhile.
        let other = Directory::new(layout);
        let recovered = other.recover().unwrap();
        assert_eq!(recovered.live, 1);
        assert!(recovered.kept.is_empty());
        writer.append(&line(2), Some(2_000_000_000)).unwrap();
        writer.finish().unwrap();
        assert_eq!(
            fs::read(dir.join("p-19700101T000001Z-000000.lp")).unwrap(),
            [line(1), line(2)].concat()
        );
    }

    #[test]
    fn a_path_that_is_a_file_is_refused_naming_it() {
        let layout = layout("not-a-dir", 1 << 20);
        fs::create_dir_all(layout.dir.parent().unwrap()).unwrap();
        fs::write(&layout.dir, b"a file\n").unwrap();
        let err = Directory::new(layout.clone()).recover().unwrap_err();
        assert!(matches!(err, WriteError::Fatal { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "{} is a file, not a directory: `path` names the directory the files go in",
                layout.dir.display()
            )
        );
        fs::remove_file(&layout.dir).unwrap();
    }

    #[test]
    fn a_final_name_is_never_written_over() {
        let layout = layout("noreplace", 1 << 20);
        let dir = layout.dir.clone();
        let files = Directory::new(layout);
        files.recover().unwrap();
        // Another process took the name this one would give next.
        fs::write(dir.join("p-19700101T000001Z-000000.lp"), b"theirs\n").unwrap();
        files.append(&line(1), Some(1_000_000_000)).unwrap();
        files.finish().unwrap();
        assert_eq!(
            fs::read(dir.join("p-19700101T000001Z-000000.lp")).unwrap(),
            b"theirs\n"
        );
        assert_eq!(
            fs::read(dir.join("p-19700101T000001Z-000001.lp")).unwrap(),
            line(1)
        );
    }
}
