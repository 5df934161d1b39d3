//! A table for CDC and a writer that keeps changing it — inserts, updates of values,
//! times and devices, deletes, multi-statement transactions — and rides out its server
//! restarting: a statement whose connection breaks is given up (the table, not the writer,
//! is the truth the target is compared with) and the writer connects again.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A sensor table with a unique (device, time): one row is one point of the target; every
/// row has a temperature, so `count(temperature)` counts the points.
pub fn create_cdc_table(url: &str, table: &str) {
    super::sql_at(
        url,
        &[
            &format!("DROP TABLE IF EXISTS {table}"),
            &format!(
                "CREATE TABLE {table} (id BIGINT AUTO_INCREMENT PRIMARY KEY, device_id VARCHAR(32) NOT NULL, \
                 site VARCHAR(16), ts DATETIME(3) NOT NULL, temperature DOUBLE NOT NULL, humidity FLOAT, status INT, \
                 UNIQUE KEY point (device_id, ts))"
            ),
            &format!(
                "INSERT INTO {table} (device_id, site, ts, temperature, humidity, status) \
                 SELECT CONCAT('d', seq % 10), IF(seq % 3 = 0, NULL, CONCAT('s', seq % 2)), \
                 TIMESTAMP('2026-01-01') + INTERVAL seq SECOND, seq * 0.25, IF(seq % 4 = 0, NULL, (seq % 100) + 0.5), seq % 7 \
                 FROM seq_1_to_500"
            ),
        ],
    );
}

/// The mapping of that table, for a job file.
pub const CDC_MAPPING: &str = "    measurement: sensors
    device_field: device_id
    timestamp_field: ts
    tags: [site]
    fields: [temperature, humidity, status]";

pub struct Writer {
    stop: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    /// Starts changing `table` of the MariaDB at `url`, a statement every 2 ms.
    pub fn start(url: &str, table: &str) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let (url, table) = (url.to_string(), table.to_string());
        let (flag, count) = (stop.clone(), written.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(write(&url, &table, &flag, &count));
        });
        Writer {
            stop,
            written,
            thread: Some(thread),
        }
    }

    /// Statements written (committed) so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Stops writing; returns the statements written.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        self.written()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

async fn write(url: &str, table: &str, stop: &AtomicBool, written: &AtomicU64) {
    use mysql_async::prelude::Queryable;
    let mut rng = fastrand::Rng::with_seed(table.len() as u64);
    let mut conn: Option<mysql_async::Conn> = None;
    let mut n = 0u64;
    let max_id = 500u64;
    while !stop.load(Ordering::Relaxed) {
        if conn.is_none() {
            match mysql_async::Conn::from_url(url).await {
                Ok(c) => conn = Some(c),
                Err(_) => {
                    // The server is restarting: try again shortly.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
        }
        let id = rng.u64(1..max_id + n / 3 + 2);
        let statement = match rng.u8(0..10) {
            0..=2 => format!(
                "INSERT IGNORE INTO {table} (device_id, site, ts, temperature, humidity, status) \
                 VALUES ('w{}', 's1', TIMESTAMP('2026-06-01') + INTERVAL {} SECOND, {}.25, NULL, {})",
                rng.u8(0..5),
                rng.u32(0..100_000),
                rng.u32(0..1000),
                rng.u8(0..10)
            ),
            3 | 4 => format!(
                "UPDATE {table} SET temperature = {}.5, humidity = IF(humidity IS NULL, 1.5, NULL) WHERE id = {id}",
                rng.u32(0..1000)
            ),
            5 => format!("UPDATE IGNORE {table} SET ts = ts + INTERVAL 1 MINUTE WHERE id = {id}"),
            6 => format!(
                "UPDATE IGNORE {table} SET device_id = 'm{}' WHERE id = {id}",
                rng.u8(0..5)
            ),
            7 => format!("DELETE FROM {table} WHERE id = {id}"),
            _ => format!(
                "BEGIN; UPDATE {table} SET status = {} WHERE id = {id}; DELETE FROM {table} WHERE id = {}; \
                 INSERT IGNORE INTO {table} (device_id, ts, temperature) VALUES ('t{}', TIMESTAMP('2026-07-01') + INTERVAL {} SECOND, 1.75); COMMIT",
                rng.u8(0..100),
                id + 1,
                rng.u8(0..3),
                rng.u32(0..100_000)
            ),
        };
        match conn.as_mut().unwrap().query_drop(statement).await {
            Ok(()) => {
                n += 1;
                written.store(n, Ordering::Relaxed);
            }
            // 1053: the server is shutting down; 1927: it killed the connection.
            Err(mysql_async::Error::Server(e)) if ![1053, 1927].contains(&e.code) => {
                panic!("the writer's statement failed: {e}")
            }
            // The connection broke (the server stopped): connect again.
            Err(_) => conn = None,
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    if let Some(c) = conn {
        let _ = c.disconnect().await;
    }
}
