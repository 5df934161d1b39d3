//! The file sink: points written into files in a directory, as InfluxDB line protocol, one
//! point a line — an archive, an export for another tool, or a hand-over to a system tsmig
//! has no connector for (`influx write`, Telegraf's `file` input, the ingest endpoint).
//!
//! A file system is a target with none of a database's semantics, so this module says
//! which of them a reader of the files gets:
//!
//! - **Durable means fsynced.** A batch is one append to the open file and one fsync; the
//!   write is acknowledged, and the engine may checkpoint past its points, only after
//!   both. A crash keeps every acknowledged point.
//! - **Only whole files under final names.** A file is written under a temp name (hidden,
//!   not `*.lp`) and renamed to its final name when it is closed: when the next append
//!   would take it past `roll_bytes`, once it is older than `roll_after`, and when the
//!   run ends (the job drained, or its input ended). Closing is fsync, rename (never over
//!   an existing name), fsync of the directory. A file under a final name never changes
//!   again and every line in it is a whole point.
//! - **At least once, not exactly once.** Files cannot be overwritten per point as a
//!   database's series and time can, so a point written twice is in the files twice. That
//!   happens after a crash (a `kill -9`, a power loss) or a restart after a transient
//!   failure, and only for what followed the last checkpoint: a backfill reads again,
//!   whole, every split its checkpoint does not record as finished, and CDC applies again
//!   the changes after its recorded binlog position; what the dead run had already written
//!   of them (in closed files, or kept by recovery) is then in the files twice. An ingest
//!   job replays nothing itself: a client that got no answer sends its request again, and
//!   what of it was already written is there twice. And with `backfill+cdc`, for rows
//!   inserted while the backfill ran (a chunk read after the snapshot may hold a row whose
//!   insert CDC then applies). A reader that needs each point once keeps the last line per
//!   series and time (loading the files into InfluxDB does exactly that). Otherwise a run
//!   writes every point once: `backfill+follow`, whose rounds read their lateness window
//!   again, is refused unless `follow.lateness` is `0s`. Why not exactly once: a sink is
//!   not told which checkpoint epoch a batch belongs to, so neither recovery nor a restart
//!   can tell a line the checkpoint covers from one it does not. Files named by epoch and
//!   renamed only once that epoch's checkpoint is written (a replay then overwrites them)
//!   would be; that needs the engine to tell sinks their epochs, and is not done.
//! - **Crash recovery.** The next run (before its first write) finds the temp files of its
//!   prefix whose writer is dead — a live writer holds an `flock` on its file — keeps the
//!   longest prefix of whole lines of each (a crash may cut the last append short; every
//!   acknowledged append precedes it, whole), and gives it a final name, as a closed
//!   file. Nothing acknowledged is dropped; a temp file with nothing whole is removed.
//!   After a run that ends well, no temp file of the prefix remains.
//! - **No deletes.** Files are only appended to, and no tombstones are written: a CDC job
//!   whose mappings could delete a point (`on_delete: delete`, or `on_update: overwrite`,
//!   which deletes the old point of an UPDATE that moves it) is refused before it starts.
//!   Backfills, `backfill+follow` and ingest only write.
//! - **No order across files.** Within a file, lines are in the order their batches were
//!   appended; workers append to the same open file in turns, so neither a file nor the
//!   set of files is sorted by time. A file's name carries the earliest time in it.
//! - **No verify.** Files are not read back (`-c verify` refuses this sink).
//!
//! ```text
//!  batch ──append + fsync──▶ .points-<pid>-<n>.lp.tmp ──ack──▶ engine may checkpoint
//!                               │ full / old / run ends
//!                               ▼ fsync, rename (no replace), fsync dir
//!                            points-20260101T000000Z-000042.lp   (final, whole, never changed)
//!  crash ─▶ next run: dead writer's temp file ─▶ cut to whole lines ─▶ final name
//! ```
//!
//! `config.rs` is the job-file section, `names.rs` the file names, `encoding.rs` points to
//! lines (the shared line-protocol encoder) and lines read back, `client.rs` the directory
//! (open, append, fsync, roll, rename, recover), `sink.rs` the [`Sink`](crate::sink::Sink).

pub mod client;
pub mod config;
pub mod encoding;
pub mod names;
pub mod sink;

pub use sink::FileSink;

/// `type: file`, a sink only.
pub const CONNECTOR: super::Connector = super::Connector {
    kind: "file",
    source: None,
    sink: Some(|job| {
        let (config, batching) = crate::sink::parse_section::<config::FileSinkConfig>(job)?;
        Ok(Box::new(config::FileSinkSpec { config, batching }))
    }),
};
