//! The job's metrics, in one registry: what the Prometheus endpoint serves, what the
//! progress display shows and what the exit summary prints are the same atomics.
//!
//! ```text
//!  hot paths ── Count::add: one atomic add a batch ──┐
//!  metrics::counter!(..), gauge!(..) (rare events) ──┼──▶ Registry ──▶ GET /metrics (render)
//!                                                    │            ──▶ progress bar, summary (get)
//! ```
//!
//! [`Counters`] registers the engine's metrics once per run and keeps their handles, so a
//! hot path adds to an atomic and never looks a name up. Code that keeps no handle (the
//! ingest endpoint's connection events) uses the `metrics` crate's macros, which reach the
//! same registry: [`serve`] makes it the process's recorder, and [`Registry`] gives the
//! facade handles over its own atomics (`metrics::Counter::from_arc`). Nothing is copied
//! from one store to another.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, OnceLock, RwLock};
use std::time::{Duration, Instant};

/// When this process started (the first call; `main` makes it early).
pub fn process_start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Source reads and queries retried after a transient failure, by every source of this
/// process (opening and planning included): sources keep no handle to the job's
/// [`Counters`], so [`crate::retry::retry`] counts their retries here, and every run's
/// registry shows this count.
pub static SOURCE_RETRIES: LazyLock<Count> = LazyLock::new(Count::default);

/// An integer that only the process changes: a total, or a level kept as an integer.
#[derive(Clone, Debug, Default)]
pub struct Count(Arc<AtomicU64>);

impl Count {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets the value (a level).
    pub fn set(&self, n: u64) {
        self.0.store(n, Ordering::Relaxed);
    }

    /// The value now.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// The atomic itself, for code that counts without knowing of metrics
    /// ([`crate::retry::retry`]).
    pub fn as_atomic(&self) -> &AtomicU64 {
        &self.0
    }
}

/// A level that need not be whole (seconds), kept as the bits of an `f64` (as the
/// `metrics` crate keeps a gauge in an `AtomicU64`, so its macros can move it too).
#[derive(Clone, Debug, Default)]
pub struct Gauge(Arc<AtomicU64>);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }

    /// The value now.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// How many observations fell at or under each bound, their sum and their count: a
/// Prometheus histogram with fixed buckets.
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds, increasing; the last bucket (`+Inf`) is implied.
    bounds: Vec<f64>,
    /// Observations per bucket (not cumulative), one more than `bounds`.
    buckets: Vec<AtomicU64>,
    /// The sum, as `f64` bits.
    sum: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &[f64]) -> Self {
        Self {
            bounds: bounds.to_vec(),
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
            count: AtomicU64::new(0),
        }
    }

    /// Notes one observation.
    pub fn record(&self, value: f64) {
        // Prometheus's buckets include their bound: `le`.
        let at = self.bounds.partition_point(|bound| *bound < value);
        self.buckets[at].fetch_add(1, Ordering::Relaxed);
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |sum| {
                Some((f64::from_bits(sum) + value).to_bits())
            });
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

impl metrics::HistogramFn for Histogram {
    fn record(&self, value: f64) {
        Histogram::record(self, value)
    }
}

/// Buckets of a histogram registered without its own (through the `metrics` macros).
const DEFAULT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A metric's name and labels, as the endpoint shows them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    name: String,
    labels: Vec<(String, String)>,
}

impl Key {
    fn plain(name: &str) -> Self {
        Self {
            name: name.to_string(),
            labels: Vec::new(),
        }
    }

    fn of(key: &metrics::Key) -> Self {
        let mut labels: Vec<(String, String)> = key
            .labels()
            .map(|l| (l.key().to_string(), l.value().to_string()))
            .collect();
        labels.sort();
        Self {
            name: key.name().to_string(),
            labels,
        }
    }
}

/// What a metric is, and where its value lives.
#[derive(Clone, Debug)]
enum Metric {
    /// A total that only grows (`counter`).
    Total(Count),
    /// A level kept as an integer (`gauge`).
    Level(Count),
    /// A level kept as an `f64` (`gauge`).
    Gauge(Gauge),
    /// Observations in buckets (`histogram`).
    Histogram(Arc<Histogram>),
}

impl Metric {
    fn kind(&self) -> &'static str {
        match self {
            Metric::Total(_) => "counter",
            Metric::Level(_) | Metric::Gauge(_) => "gauge",
            Metric::Histogram(_) => "histogram",
        }
    }
}

/// Every metric of a run, by name and labels; each registered once, then moved through
/// its handle.
#[derive(Debug, Default)]
pub struct Registry {
    metrics: RwLock<BTreeMap<Key, Metric>>,
    /// `# HELP` text, by name.
    help: RwLock<BTreeMap<String, String>>,
}

impl Registry {
    /// The metric under `key`, made by `make` if there is none yet.
    fn get_or_insert(&self, key: Key, make: impl FnOnce() -> Metric) -> Metric {
        if let Some(metric) = self.read().get(&key) {
            return metric.clone();
        }
        let mut metrics = self.metrics.write().unwrap_or_else(|p| p.into_inner());
        metrics.entry(key).or_insert_with(make).clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Key, Metric>> {
        self.metrics.read().unwrap_or_else(|p| p.into_inner())
    }

    fn describe(&self, name: &str, help: &str) {
        self.help
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_string())
            .or_insert_with(|| help.to_string());
    }

    /// The total `name`, registered if new.
    pub fn total(&self, name: &str, help: &str) -> Count {
        self.describe(name, help);
        match self.get_or_insert(Key::plain(name), || Metric::Total(Count::default())) {
            Metric::Total(count) | Metric::Level(count) => count,
            // Registered under another kind: a handle of its own, shown nowhere.
            _ => Count::default(),
        }
    }

    /// `count`, shown as the total `name` (a count kept elsewhere, e.g. the dead letters').
    pub fn adopt_total(&self, name: &str, help: &str, count: &Count) {
        self.describe(name, help);
        self.metrics
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(Key::plain(name), Metric::Total(count.clone()));
    }

    /// The integer level `name`, registered if new.
    pub fn level(&self, name: &str, help: &str) -> Count {
        self.describe(name, help);
        match self.get_or_insert(Key::plain(name), || Metric::Level(Count::default())) {
            Metric::Total(count) | Metric::Level(count) => count,
            _ => Count::default(),
        }
    }

    /// The level `name`, registered if new.
    pub fn gauge(&self, name: &str, help: &str) -> Gauge {
        self.describe(name, help);
        match self.get_or_insert(Key::plain(name), || Metric::Gauge(Gauge::default())) {
            Metric::Gauge(gauge) => gauge,
            _ => Gauge::default(),
        }
    }

    /// The histogram `name` with upper bounds `buckets`, registered if new.
    pub fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Arc<Histogram> {
        self.describe(name, help);
        match self.get_or_insert(Key::plain(name), || {
            Metric::Histogram(Arc::new(Histogram::new(buckets)))
        }) {
            Metric::Histogram(histogram) => histogram,
            _ => Arc::new(Histogram::new(buckets)),
        }
    }

    /// Every metric in Prometheus's text format (version 0.0.4), sorted by name.
    pub fn render(&self) -> String {
        let metrics = self.read();
        let help = self.help.read().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        let mut last: Option<&str> = None;
        for (key, metric) in metrics.iter() {
            if last != Some(key.name.as_str()) {
                if let Some(text) = help.get(&key.name) {
                    let _ = writeln!(out, "# HELP {} {}", key.name, escape_help(text));
                }
                let _ = writeln!(out, "# TYPE {} {}", key.name, metric.kind());
                last = Some(&key.name);
            }
            match metric {
                Metric::Total(count) | Metric::Level(count) => sample(
                    &mut out,
                    &key.name,
                    &key.labels,
                    None,
                    &count.get().to_string(),
                ),
                Metric::Gauge(gauge) => {
                    sample(&mut out, &key.name, &key.labels, None, &number(gauge.get()))
                }
                Metric::Histogram(h) => {
                    let bucket = format!("{}_bucket", key.name);
                    let mut below = 0;
                    for (i, count) in h.buckets.iter().enumerate() {
                        below += count.load(Ordering::Relaxed);
                        let le = h.bounds.get(i).map_or("+Inf".to_string(), |b| number(*b));
                        sample(
                            &mut out,
                            &bucket,
                            &key.labels,
                            Some(&le),
                            &below.to_string(),
                        );
                    }
                    let sum = f64::from_bits(h.sum.load(Ordering::Relaxed));
                    let name = format!("{}_sum", key.name);
                    sample(&mut out, &name, &key.labels, None, &number(sum));
                    let name = format!("{}_count", key.name);
                    sample(&mut out, &name, &key.labels, None, &below.to_string());
                }
            }
        }
        out
    }
}

/// One line: `name{labels} value`.
fn sample(
    out: &mut String,
    name: &str,
    labels: &[(String, String)],
    le: Option<&str>,
    value: &str,
) {
    out.push_str(name);
    let le = le.map(|le| ("le", le));
    let mut labels = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(le)
        .peekable();
    if labels.peek().is_some() {
        out.push('{');
        for (i, (k, v)) in labels.enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape_label(v));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// A float as Prometheus reads one.
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        value.to_string()
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

fn escape_help(text: &str) -> String {
    text.replace('\\', r"\\").replace('\n', r"\n")
}

/// The `metrics` crate's recorder over a [`Registry`]: its handles are the registry's own
/// atomics, so `metrics::counter!` and a [`Count`] move the same value.
struct Recorder(Arc<Registry>);

impl metrics::Recorder for Recorder {
    fn describe_counter(
        &self,
        key: metrics::KeyName,
        _: Option<metrics::Unit>,
        help: metrics::SharedString,
    ) {
        self.0.describe(key.as_str(), &help);
    }

    fn describe_gauge(
        &self,
        key: metrics::KeyName,
        _: Option<metrics::Unit>,
        help: metrics::SharedString,
    ) {
        self.0.describe(key.as_str(), &help);
    }

    fn describe_histogram(
        &self,
        key: metrics::KeyName,
        _: Option<metrics::Unit>,
        help: metrics::SharedString,
    ) {
        self.0.describe(key.as_str(), &help);
    }

    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        match self
            .0
            .get_or_insert(Key::of(key), || Metric::Total(Count::default()))
        {
            Metric::Total(count) | Metric::Level(count) => metrics::Counter::from_arc(count.0),
            _ => metrics::Counter::noop(),
        }
    }

    fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        match self
            .0
            .get_or_insert(Key::of(key), || Metric::Gauge(Gauge::default()))
        {
            Metric::Gauge(gauge) => metrics::Gauge::from_arc(gauge.0),
            _ => metrics::Gauge::noop(),
        }
    }

    fn register_histogram(
        &self,
        key: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        match self.0.get_or_insert(Key::of(key), || {
            Metric::Histogram(Arc::new(Histogram::new(DEFAULT_BUCKETS)))
        }) {
            Metric::Histogram(histogram) => metrics::Histogram::from_arc(histogram),
            _ => metrics::Histogram::noop(),
        }
    }
}

/// Upper bounds of the write-request latency histogram, seconds.
const WRITE_SECONDS_BUCKETS: &[f64] = DEFAULT_BUCKETS;

/// The engine's metrics of one run: handles into its [`Registry`], registered once. One
/// set per process, shared by its workers and its tokio tasks.
#[derive(Debug)]
pub struct Counters {
    registry: Arc<Registry>,
    /// Rows read from the source.
    pub rows_read: Count,
    /// Row changes (insert, update, delete) read from a change log (CDC).
    pub changes_read: Count,
    /// Transactions read from a change log (CDC).
    pub transactions_read: Count,
    /// Points the mapping produced (rows out of the map operator).
    pub points_mapped: Count,
    /// Points acknowledged by the target.
    pub points_written: Count,
    /// Points deleted in the target (CDC).
    pub points_deleted: Count,
    /// Points deleted again: the target still held them after a delete (CDC).
    pub points_deleted_again: Count,
    /// Write requests acknowledged by the target.
    pub requests: Count,
    /// Write and delete attempts (the sink's) retried after a transient failure.
    pub retries: Count,
    /// The source's retried reads and queries (the process's: see [`SOURCE_RETRIES`]).
    pub source_retries: Count,
    /// Checkpoints written.
    pub checkpoints: Count,
    /// Restarts from the checkpoint after a transient failure (the restart strategy).
    pub restarts: Count,
    /// Splits the planner made (process 0 only).
    pub splits_planned: Count,
    /// Splits finished and durable (process 0 only).
    pub splits_done: Count,
    /// Rows the planner expects in the splits still to read (process 0 only), for the ETA.
    pub rows_expected: Count,
    /// CDC lag: bytes of change log between the committed position and the server's end.
    pub lag_bytes: Count,
    /// CDC lag: seconds between now and the oldest change not yet durable (0 when every
    /// change read is durable and the reader is at the server's end). For
    /// `backfill+follow`: between now and the watermark.
    pub lag_seconds: Gauge,
    /// Seconds from process start to the first acknowledged write (0: none yet).
    pub first_write_seconds: Gauge,
    /// How long write requests took, retries included.
    pub write_seconds: Arc<Histogram>,
}

impl Default for Counters {
    fn default() -> Self {
        Self::in_registry(Arc::default())
    }
}

impl Counters {
    /// A fresh set, in a registry of its own.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn in_registry(registry: Arc<Registry>) -> Self {
        let r = &registry;
        let counters = Self {
            rows_read: r.total("tsmig_source_rows_total", "Rows read from the source."),
            changes_read: r.total(
                "tsmig_source_changes_total",
                "Row changes read from the change log (CDC).",
            ),
            transactions_read: r.total(
                "tsmig_source_transactions_total",
                "Transactions read from the change log (CDC).",
            ),
            points_mapped: r.total("tsmig_map_points_total", "Points the mappings made."),
            points_written: r.total(
                "tsmig_sink_points_written_total",
                "Points the target acknowledged.",
            ),
            points_deleted: r.total(
                "tsmig_sink_points_deleted_total",
                "Points deleted in the target (CDC).",
            ),
            points_deleted_again: r.total(
                "tsmig_sink_points_deleted_again_total",
                "Points deleted again: the target still held them after a delete.",
            ),
            requests: r.total(
                "tsmig_sink_requests_total",
                "Write requests the target acknowledged.",
            ),
            retries: r.total(
                "tsmig_sink_retries_total",
                "The sink's writes and deletes retried after a transient failure.",
            ),
            source_retries: SOURCE_RETRIES.clone(),
            checkpoints: r.total("tsmig_checkpoints_total", "Checkpoints written."),
            restarts: r.total(
                "tsmig_restarts_total",
                "Restarts from the checkpoint after a failure.",
            ),
            splits_planned: r.level("tsmig_splits_planned", "Splits planned (process 0)."),
            splits_done: r.level(
                "tsmig_splits_done",
                "Splits finished and durable (process 0).",
            ),
            rows_expected: r.level(
                "tsmig_source_rows_expected",
                "Rows the plan expects in the splits still to read (process 0).",
            ),
            lag_bytes: r.level(
                "tsmig_cdc_lag_bytes",
                "Change log between the durable position and the server's end, bytes.",
            ),
            lag_seconds: r.gauge(
                "tsmig_cdc_lag_seconds",
                "Age of the oldest change read and not yet durable (follow: of the watermark).",
            ),
            first_write_seconds: r.gauge(
                "tsmig_first_write_seconds",
                "Seconds from the process's start to the first acknowledged write.",
            ),
            write_seconds: r.histogram(
                "tsmig_write_request_seconds",
                "How long write requests took, retries included.",
                WRITE_SECONDS_BUCKETS,
            ),
            registry: registry.clone(),
        };
        registry.adopt_total(
            "tsmig_source_retries_total",
            "The source's reads and queries retried after a transient failure.",
            &counters.source_retries,
        );
        counters
    }

    /// The registry the counters live in.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Shows `count` (the dead letters keep it: `DeadLetters::counter`) as
    /// `tsmig_dead_letters_total`.
    pub fn show_dead_letters(&self, count: &Count) {
        self.registry
            .adopt_total("tsmig_dead_letters_total", "Records dead-lettered.", count);
    }

    /// Notes an acknowledged write request of `points`; the first one fixes
    /// `first_write_seconds`.
    pub fn written(&self, points: u64) {
        self.points_written.add(points);
        self.requests.add(1);
        if self.first_write_seconds.get() == 0.0 {
            let seconds = process_start().elapsed().as_secs_f64().max(1e-6);
            // The first of several at once wins.
            let _ = self.first_write_seconds.0.compare_exchange(
                0f64.to_bits(),
                seconds.to_bits(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// Notes how long one write request (with its retries) took.
    pub fn write_took(&self, took: Duration) {
        self.write_seconds.record(took.as_secs_f64());
    }
}

/// Serves the registry for Prometheus at `http://<addr>/metrics` (any path answers), and
/// makes it the process's `metrics` recorder. Call inside the tokio runtime.
pub fn serve(addr: std::net::SocketAddr, registry: Arc<Registry>) -> Result<(), String> {
    let listener = std::net::TcpListener::bind(addr).map_err(|e| e.to_string())?;
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
    metrics::set_global_recorder(Recorder(registry.clone()))
        .map_err(|_| "the process serves metrics already".to_string())?;
    tokio::spawn(endpoint(listener, registry));
    Ok(())
}

/// Answers every connection to `listener` with the registry's metrics.
async fn endpoint(listener: tokio::net::TcpListener, registry: Arc<Registry>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(answer(stream, registry.clone()));
            }
            // Out of descriptors, say: the scraper tries again.
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Reads one request's head (a scraper's GET; at most 16 KiB, within 10 s) and answers it
/// with the metrics, closing the connection.
async fn answer(mut stream: tokio::net::TcpStream, registry: Arc<Registry>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::with_capacity(1024);
    let read = async {
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 << 10 {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(())
    };
    if !matches!(
        tokio::time::timeout(Duration::from_secs(10), read).await,
        Ok(Ok(()))
    ) {
        return;
    }
    let response = if head.starts_with(b"GET ") {
        let body = registry.render();
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    } else {
        "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
    };
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// The samples of a rendering, as a scraper reads them (as tests/cdc.rs does).
    fn samples(text: &str) -> HashMap<String, f64> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn the_endpoint_shows_the_values_the_summary_reads() {
        let c = Counters::default();
        c.rows_read.add(100);
        c.rows_read.add(20);
        c.written(7);
        c.lag_bytes.set(4096);
        c.lag_seconds.set(1.5);
        c.splits_planned.add(3);
        let text = c.registry().render();
        let s = samples(&text);
        assert_eq!(s["tsmig_source_rows_total"], 120.0);
        assert_eq!(s["tsmig_sink_points_written_total"], 7.0);
        assert_eq!(s["tsmig_sink_requests_total"], 1.0);
        assert_eq!(s["tsmig_cdc_lag_bytes"], 4096.0);
        assert_eq!(s["tsmig_cdc_lag_seconds"], 1.5);
        assert_eq!(s["tsmig_splits_planned"], 3.0);
        assert_eq!(s["tsmig_splits_done"], 0.0);
        assert!(s["tsmig_first_write_seconds"] > 0.0);
        assert!(
            text.contains("# TYPE tsmig_source_rows_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE tsmig_cdc_lag_seconds gauge\n"),
            "{text}"
        );
        assert!(text.contains("# HELP tsmig_source_rows_total Rows read from the source.\n"));
        // Two runs' counters are apart: one run's rows are not another's.
        assert_eq!(Counters::default().rows_read.get(), 0);
    }

    #[test]
    fn every_metric_the_exporter_published_is_served_from_the_start() {
        // What the exporter showed once a second (and the histogram after a write); a
        // dashboard or alert built on any of these names keeps working.
        let before = [
            ("tsmig_source_rows_total", "counter"),
            ("tsmig_source_changes_total", "counter"),
            ("tsmig_source_transactions_total", "counter"),
            ("tsmig_map_points_total", "counter"),
            ("tsmig_sink_points_written_total", "counter"),
            ("tsmig_sink_points_deleted_total", "counter"),
            ("tsmig_sink_points_deleted_again_total", "counter"),
            ("tsmig_sink_requests_total", "counter"),
            ("tsmig_sink_retries_total", "counter"),
            ("tsmig_source_retries_total", "counter"),
            ("tsmig_dead_letters_total", "counter"),
            ("tsmig_checkpoints_total", "counter"),
            ("tsmig_restarts_total", "counter"),
            ("tsmig_splits_done", "gauge"),
            ("tsmig_splits_planned", "gauge"),
            ("tsmig_cdc_lag_bytes", "gauge"),
            ("tsmig_cdc_lag_seconds", "gauge"),
            ("tsmig_write_request_seconds", "histogram"),
        ];
        let c = Counters::default();
        c.show_dead_letters(&Count::default());
        let text = c.registry().render();
        let s = samples(&text);
        for (name, kind) in before {
            assert!(
                text.contains(&format!("# TYPE {name} {kind}\n")),
                "{name} is not a {kind}:\n{text}"
            );
            let value = if kind == "histogram" {
                format!("{name}_count")
            } else {
                name.to_string()
            };
            assert!(s.contains_key(&value), "no sample {value}:\n{text}");
        }
    }

    #[test]
    fn counts_kept_elsewhere_are_shown_as_they_are() {
        let c = Counters::default();
        let dead_letters = Count::default();
        c.show_dead_letters(&dead_letters);
        dead_letters.add(1);
        SOURCE_RETRIES.add(1);
        let s = samples(&c.registry().render());
        assert_eq!(s["tsmig_dead_letters_total"], 1.0);
        assert_eq!(
            s["tsmig_source_retries_total"],
            c.source_retries.get() as f64
        );
        assert!(c.source_retries.get() >= 1);
    }

    #[test]
    fn a_histogram_counts_each_observation_in_its_bucket_and_every_wider_one() {
        let c = Counters::default();
        for ms in [1, 3, 40, 40, 20_000] {
            c.write_took(Duration::from_millis(ms));
        }
        let s = samples(&c.registry().render());
        let bucket = |le: &str| s[&format!("tsmig_write_request_seconds_bucket{{le=\"{le}\"}}")];
        assert_eq!(bucket("0.001"), 1.0, "a bound holds what equals it");
        assert_eq!(bucket("0.005"), 2.0);
        assert_eq!(bucket("0.025"), 2.0);
        assert_eq!(bucket("0.05"), 4.0);
        assert_eq!(bucket("10"), 4.0);
        assert_eq!(bucket("+Inf"), 5.0);
        assert_eq!(s["tsmig_write_request_seconds_count"], 5.0);
        assert!((s["tsmig_write_request_seconds_sum"] - 20.084).abs() < 1e-9);
    }

    #[test]
    fn the_metrics_macros_move_the_registrys_own_values() {
        let registry = Arc::new(Registry::default());
        let recorder = Recorder(registry.clone());
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!("tsmig_ingest_connections_closed_total", "reason" => "idle")
                .increment(2);
            metrics::counter!("tsmig_ingest_connections_closed_total", "reason" => "a \"b\"")
                .increment(1);
            metrics::gauge!("tsmig_ingest_connections").increment(3.0);
            metrics::gauge!("tsmig_ingest_connections").decrement(1.0);
        });
        let text = registry.render();
        let s = samples(&text);
        assert_eq!(
            s["tsmig_ingest_connections_closed_total{reason=\"idle\"}"],
            2.0
        );
        assert_eq!(
            s["tsmig_ingest_connections_closed_total{reason=\"a \\\"b\\\"\"}"],
            1.0
        );
        assert_eq!(s["tsmig_ingest_connections"], 2.0);
        assert_eq!(
            text.matches("# TYPE tsmig_ingest_connections_closed_total counter")
                .count(),
            1
        );
        // A handle registered in code and a macro's are one value.
        let total = registry.total("tsmig_ingest_over_budget_total", "Requests over budget.");
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!("tsmig_ingest_over_budget_total").increment(5)
        });
        assert_eq!(total.get(), 5);
    }

    #[tokio::test]
    async fn the_endpoint_answers_a_scrape_with_the_registry() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let registry = Arc::new(Registry::default());
        registry.total("tsmig_x_total", "X.").add(42);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(endpoint(listener, registry));
        let get = |request: &'static str| async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.unwrap();
            answer
        };
        let answer = get("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        let (_, body) = answer.split_once("\r\n\r\n").unwrap();
        assert_eq!(samples(body)["tsmig_x_total"], 42.0);
        let length = format!("Content-Length: {}\r\n", body.len());
        assert!(answer.contains(&length), "{answer}");
        let answer = get("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    }
}
