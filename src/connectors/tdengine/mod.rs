//! The TDengine source: super tables and plain tables read over TDengine's REST interface
//! (taosAdapter, `POST /rest/sql`), as sub-table × time-window splits (the backfill).
//!
//! ```text
//!  open   SELECT name, `precision` FROM information_schema.ins_databases WHERE name = 'db'
//!         DESCRIBE `db`.`table`              columns, then TAG columns (note = 'TAG')
//!  plan   SELECT COUNT(*) FROM `db`.`table`
//!         SELECT tbname, FIRST(ts), LAST(ts), COUNT(*) FROM `db`.`table` PARTITION BY tbname
//!           → per sub-table, windows of `window` aligned since the epoch: one split each
//!           (their counts must add up to the table's: nothing cut off the list)
//!  follow the same two queries `WHERE ts >= from AND ts < to`, for a polling round of
//!         `backfill+follow`: the sub-tables with rows in the round, created since included
//!  read   SELECT ts, <columns and tags> FROM `db`.`sub-table`
//!           WHERE ts >= start AND ts < end ORDER BY ts LIMIT page_rows
//!           … then WHERE ts > <last ts read> AND ts < end, until a page comes back empty
//! ```
//!
//! A table's schema is its timestamp, its data columns, its tags and `tbname` (the
//! sub-table's name), so a mapping can take the device and tags from tags or the sub-table
//! name and fields from the columns. Tags are not looked up in a separate catalogue: a
//! query on a sub-table may select its super table's tags, so each row carries them and a
//! restart, which reads splits from the recorded plan without planning again, needs no
//! tag cache. A plain table has no tags; its `tbname` is its own name.
//!
//! Splits are `(table, sub-table, [start, end))` with `start`/`end` in the database's
//! precision (ms, us or ns, read from `information_schema.ins_databases`), `partition`
//! naming the sub-table. Each sub-table's first window is open below and its last open
//! above, so rows written at either end while the job runs are still read. A window is
//! read in pages of `page_rows`, each starting after the last timestamp of the page before
//! (the timestamp is the primary key of a sub-table, so no row is skipped or read twice);
//! no cursor is held between pages. Only an empty page ends a window — one more small
//! query per split — because taosAdapter truncates a reply at its `restfulRowLimit`
//! without a word, and a short page must not be taken for the end. Sub-tables created
//! after planning are not read.
//! Every statement goes through [`client::RestClient::query`], which retries transient
//! failures with backoff and fails the job on definite ones, naming TDengine's code.

pub mod client;
pub mod config;
pub mod encoding;
pub mod source;

pub use source::TdengineSource;

/// `type: tdengine`, a source.
pub const CONNECTOR: super::Connector = super::Connector {
    kind: "tdengine",
    source: Some(|job| {
        let (mut config, retry) =
            crate::source::parse_section::<config::TdengineSourceConfig>(job)?;
        config.retry = retry;
        Ok(Box::new(config))
    }),
    sink: None,
};
