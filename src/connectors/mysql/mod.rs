//! The MySQL/MariaDB source: a chunked, parallel scan of tables (the backfill) and the
//! binlog (CDC).
//!
//! `config.rs` is the job-file section, `source.rs` plans splits and streams rows over
//! mysql_async's binary protocol (`binrow.rs` decodes each row's packet), `binlog.rs`
//! follows the binlog (`rowimage.rs` decodes its row images, `schema_change.rs` notices a
//! followed table changing), `encoding.rs` converts MySQL values into tsmig's.

pub mod binlog;
mod binrow;
pub mod config;
pub mod encoding;
mod rowimage;
mod schema_change;
pub mod source;

/// `type: mysql`, a source (backfill and binlog CDC).
pub const CONNECTOR: super::Connector = super::Connector {
    kind: "mysql",
    source: Some(|job| {
        let (mut config, retry) = crate::source::parse_section::<config::MysqlSourceConfig>(job)?;
        config.retry = retry;
        Ok(Box::new(config))
    }),
    sink: None,
};
