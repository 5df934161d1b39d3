//! The `source:` section of the ingest endpoint.
//!
//! ```yaml
//! source:
//!   type: ingest
//!   listen: 0.0.0.0:8086
//!   buckets: [telegraf]          # v2 buckets accepted (any when empty)
//!   databases: [telegraf]        # v1 databases accepted (any when empty)
//!   token: ${INGEST_TOKEN}       # `Authorization: Token ...`
//!   max_pending_points: 100000   # past this: 429 with Retry-After
//!   header_timeout: 10s          # stalled clients: 408, connection closed
//!   body_timeout: 30s
//!   max_connections: 5000        # default: half the open-files limit, at most 10000
//!   max_body_bytes_in_flight: 268435456   # request bodies in memory: past it 429
//!   tls: {cert: certs/ingest.pem, key: certs/ingest.key}
//! ```

use super::parse::Precision;
use crate::job::{Job, JobError};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// `source: {type: ingest, ...}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSourceConfig {
    /// Address and port to listen on; port 0 picks a free one (tests).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Write APIs served: `v1` (`POST /write?db=&rp=&precision=`) and `v2`
    /// (`POST /api/v2/write?org=&bucket=&precision=`). `/ping` and `/health` always are.
    #[serde(default = "default_apis")]
    pub api: Vec<Api>,
    /// The organization v2 requests must name, if any; another is answered 404 as InfluxDB
    /// does. A request that names none is accepted.
    #[serde(default)]
    pub org: Option<String>,
    /// The buckets v2 requests may name; another is answered 404 (`bucket "x" not found`).
    /// Empty: any bucket. The bucket only admits the request: points carry no bucket.
    #[serde(default)]
    pub buckets: Vec<String>,
    /// The databases v1 requests may name (`db=`); another is answered 404. Empty: any.
    /// `rp=` is accepted and ignored.
    #[serde(default)]
    pub databases: Vec<String>,
    /// API token: when set, a request may authenticate with `Authorization: Token <token>`.
    /// Use `${ENV}`, never the token itself.
    #[serde(default)]
    pub token: Option<String>,
    /// v1 user name: when set (with `password`), a request may authenticate with `u=`/`p=`
    /// query parameters or HTTP Basic authentication.
    #[serde(default)]
    pub username: Option<String>,
    /// v1 password; use `${ENV}`.
    #[serde(default)]
    pub password: Option<String>,
    /// Largest request body accepted, in bytes, before and after gzip decompression;
    /// larger is answered 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// Points accepted and not yet durable (`ack: durable`) or not yet taken by the engine
    /// (`ack: async`); a request that would pass it is answered 429 with `Retry-After`.
    #[serde(default = "default_max_pending_points")]
    pub max_pending_points: u64,
    /// The `Retry-After` a 429 (or an acknowledgement that timed out) tells clients.
    #[serde(
        default = "default_retry_after",
        deserialize_with = "crate::job::duration"
    )]
    pub retry_after: Duration,
    /// When a write is answered: `durable` (default) once its points are in the sink;
    /// `async` as soon as they are queued (faster, but a crash loses what was answered).
    #[serde(default)]
    pub ack: AckMode,
    /// How long a `durable` write waits for its acknowledgement before it is answered 503
    /// (the points may still be written; a retry writes them again, harmlessly).
    #[serde(
        default = "default_ack_timeout",
        deserialize_with = "crate::job::duration"
    )]
    pub ack_timeout: Duration,
    /// Timestamp precision of requests that name none: `ns` (default), `us`, `ms`, `s`,
    /// `m`, `h`.
    #[serde(default = "default_precision")]
    pub precision: Precision,
    /// Serve HTTPS with this certificate and key instead of HTTP.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// How long a client has to send a request's headers (and, with `tls:`, to finish its
    /// handshake): from the connection's start for its first request, from the first byte
    /// of the next one on a kept-alive connection. Past it the client is answered 408 and
    /// the connection closed. 10 s, as InfluxDB 2's `http-read-header-timeout`: a client
    /// sends its headers in one go, so only a stalled client (or a slowloris) needs more.
    #[serde(
        default = "default_header_timeout",
        deserialize_with = "crate::job::duration"
    )]
    pub header_timeout: Duration,
    /// How long a client has to send a request's whole body, from the end of its headers.
    /// Past it the client is answered 408 and the connection closed; nothing of the
    /// request is kept, so a retry duplicates nothing.
    ///
    /// A deadline for the whole body rather than a minimum rate: a rate alone lets one
    /// client hold a connection and its buffered body for `max_body_bytes` / rate (25 MB
    /// at 1 KB/s is 7 hours), while a deadline bounds how long any body can hold a
    /// connection and its share of `max_body_bytes_in_flight`, whatever the client does.
    /// 30 s is what a slow link needs for a large body (a Telegraf batch of 1,000 metrics
    /// is about 100 KB; the 25 MB limit asks for 830 KB/s); raise it for slower links.
    #[serde(
        default = "default_body_timeout",
        deserialize_with = "crate::job::duration"
    )]
    pub body_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request before it is closed
    /// (quietly: nothing was asked). 3 minutes, as InfluxDB 2's `http-idle-timeout`; when
    /// `max_connections` is reached, idle connections are closed first anyway.
    #[serde(
        default = "default_idle_timeout",
        deserialize_with = "crate::job::duration"
    )]
    pub idle_timeout: Duration,
    /// Connections served at once. At the bound, a new connection waits while room is
    /// made: idle kept-alive connections are closed first (the longest idle first), then
    /// connections that have not finished sending their headers (the oldest first), then
    /// the slowest body uploads (503 with `Retry-After`); a request whose body is in is
    /// never closed to make room. Connections past the bound wait in the listen queue, not
    /// in memory or file descriptors. Default: half the process's open-files limit
    /// (`ulimit -n`), at most 10,000, leaving the rest to the sink, files and the engine.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// Bytes of request bodies held in memory at once, for all connections together: as
    /// received, as decompressed (gzip), and as the points and rejected lines parsed from
    /// them until they are queued for the engine. A request that would pass it is answered
    /// 429 with `Retry-After` before more of it is read, and nothing of it is kept. With a
    /// `Content-Length` the whole body is counted before a byte of it is read. A request
    /// alone may pass it (or it could never be taken); `max_body_bytes` still bounds it.
    /// 256 MiB: ten 25 MB bodies, or thousands of Telegraf batches.
    #[serde(default = "default_max_body_bytes_in_flight")]
    pub max_body_bytes_in_flight: u64,
}

/// `tls:` of the ingest endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// A write API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// InfluxDB 1.x: `POST /write`.
    V1,
    /// InfluxDB 2.x: `POST /api/v2/write`.
    V2,
}

/// When a write request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckMode {
    /// Once its points are durable in the sink.
    #[default]
    Durable,
    /// As soon as its points are queued for the engine.
    Async,
}

fn default_listen() -> String {
    "0.0.0.0:8086".into()
}
fn default_apis() -> Vec<Api> {
    vec![Api::V1, Api::V2]
}
fn default_max_body_bytes() -> u64 {
    // InfluxDB 1.x's default `max-body-size`.
    25_000_000
}
fn default_max_pending_points() -> u64 {
    100_000
}
fn default_retry_after() -> Duration {
    Duration::from_secs(1)
}
fn default_ack_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_precision() -> Precision {
    Precision::Nanos
}
fn default_header_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_body_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(180)
}
fn default_max_body_bytes_in_flight() -> u64 {
    256 << 20
}

/// The default `max_connections` for an open-files limit (`None`: unlimited): half of it,
/// at least 1 and at most 10,000 (beyond that, memory per connection matters more).
pub fn connections_for_open_files(limit: Option<u64>) -> usize {
    let half = limit.map_or(u64::MAX, |n| n / 2);
    half.clamp(1, 10_000) as usize
}

/// The process's open-files limit (the soft `RLIMIT_NOFILE`), `None` when unlimited or
/// unknown.
fn open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct it is given, which lives here.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    (ok && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

impl IngestSourceConfig {
    /// `max_connections`, or its default from the open-files limit.
    pub fn connection_limit(&self) -> usize {
        self.max_connections
            .unwrap_or_else(|| connections_for_open_files(open_files_limit()))
    }

    /// Checks that need no server.
    pub fn check(&self, job: &Job) -> Result<(), JobError> {
        self.check_values()
            .map_err(|(key, message)| job.error_at(&format!("source.{key}"), message))
    }

    /// The checks of [`check`](Self::check), as (key, message).
    pub fn check_values(&self) -> Result<(), (&'static str, String)> {
        self.listen.parse::<SocketAddr>().map_err(|e| {
            (
                "listen",
                format!(
                    "`{}` is not an address and port ({e}), e.g. 0.0.0.0:8086",
                    self.listen
                ),
            )
        })?;
        if self.api.is_empty() {
            return Err(("api", "list at least one of v1, v2".into()));
        }
        if self.username.is_some() != self.password.is_some() {
            return Err((
                "username",
                "username and password go together: set both or neither".into(),
            ));
        }
        for (key, value) in [
            ("token", &self.token),
            ("username", &self.username),
            ("password", &self.password),
        ] {
            if value.as_deref() == Some("") {
                return Err((key, "is empty (an unset ${ENV}?)".into()));
            }
        }
        if self.max_body_bytes == 0 {
            return Err(("max_body_bytes", "must be at least 1".into()));
        }
        if self.max_pending_points == 0 {
            return Err(("max_pending_points", "must be at least 1".into()));
        }
        for (key, timeout) in [
            ("ack_timeout", self.ack_timeout),
            ("header_timeout", self.header_timeout),
            ("body_timeout", self.body_timeout),
            ("idle_timeout", self.idle_timeout),
        ] {
            if timeout.is_zero() {
                return Err((key, "must be longer than 0s".into()));
            }
        }
        if self.max_connections == Some(0) {
            return Err(("max_connections", "must be at least 1".into()));
        }
        if self.max_body_bytes_in_flight == 0 {
            return Err(("max_body_bytes_in_flight", "must be at least 1".into()));
        }
        if let Some(tls) = &self.tls {
            tls.server_config().map_err(|e| ("tls", e))?;
        }
        Ok(())
    }
}

impl TlsConfig {
    /// Reads the certificate and key into a rustls server configuration (ring provider).
    pub fn server_config(&self) -> Result<tokio_rustls::rustls::ServerConfig, String> {
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        let cert_pem = read(&self.cert)?;
        let certs = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: not a PEM certificate ({e})", self.cert.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no certificate in it", self.cert.display()));
        }
        let key = PrivateKeyDer::from_pem_slice(&read(&self.key)?)
            .map_err(|e| format!("{}: not a PEM private key ({e})", self.key.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| {
                format!(
                    "{} and {} do not make a certificate and key: {e}",
                    self.cert.display(),
                    self.key.display()
                )
            })
    }
}

#[async_trait::async_trait]
impl crate::source::SourceSpec for IngestSourceConfig {
    fn kind(&self) -> &'static str {
        "ingest"
    }
    fn check(&self, job: &Job) -> Result<(), JobError> {
        IngestSourceConfig::check(self, job)
    }
    /// Points arrive whole: no tables, no mappings by table.
    fn table_names(&self) -> Vec<String> {
        Vec::new()
    }
    fn arrives_as_points(&self) -> bool {
        true
    }
    async fn open(
        &self,
        job: &Job,
    ) -> Result<Box<dyn crate::source::BoundedSource>, crate::source::SourceError> {
        Err(crate::source::SourceError::Config(job.error_at(
            "source.type",
            "the ingest source is an endpoint that runs until stopped, not a bounded input: run it with `-c ingest`",
        )))
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<IngestSourceConfig, String> {
        serde_yaml::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_checks() {
        let c = parse("{}").unwrap();
        assert_eq!(c.listen, "0.0.0.0:8086");
        assert_eq!(c.api, vec![Api::V1, Api::V2]);
        assert_eq!(c.ack, AckMode::Durable);
        assert_eq!(c.precision, Precision::Nanos);
        assert_eq!(c.max_pending_points, 100_000);
        assert_eq!(c.header_timeout, Duration::from_secs(10));
        assert_eq!(c.body_timeout, Duration::from_secs(30));
        assert_eq!(c.idle_timeout, Duration::from_secs(180));
        assert_eq!(c.max_connections, None);
        assert!(c.connection_limit() >= 1);
        assert_eq!(c.max_body_bytes_in_flight, 256 * 1024 * 1024);
        assert!(c.check_values().is_ok());

        let c = parse("{header_timeout: 2s, body_timeout: 1m, max_connections: 7}").unwrap();
        assert_eq!(
            (c.header_timeout, c.body_timeout, c.connection_limit()),
            (Duration::from_secs(2), Duration::from_secs(60), 7)
        );
        for (yaml, key) in [
            ("{body_timeout: 0s}", "body_timeout"),
            ("{max_connections: 0}", "max_connections"),
            ("{max_body_bytes_in_flight: 0}", "max_body_bytes_in_flight"),
        ] {
            assert_eq!(parse(yaml).unwrap().check_values().unwrap_err().0, key);
        }

        let c = parse("{ack: async, precision: ms, api: [v2], retry_after: 3s}").unwrap();
        assert_eq!(
            (c.ack, c.precision, c.api),
            (AckMode::Async, Precision::Millis, vec![Api::V2])
        );
        assert_eq!(c.retry_after, Duration::from_secs(3));

        assert!(parse("{bukcet: x}")
            .unwrap_err()
            .contains("unknown field `bukcet`"));
        assert!(parse("{precision: sec}")
            .unwrap_err()
            .contains("not a precision"));
        let c = parse("{listen: 'localhost'}").unwrap();
        assert_eq!(c.check_values().unwrap_err().0, "listen");
        let c = parse("{username: u}").unwrap();
        assert_eq!(c.check_values().unwrap_err().0, "username");
        let c = parse("{tls: {cert: /nonexistent.pem, key: /nonexistent.key}}").unwrap();
        let (key, message) = c.check_values().unwrap_err();
        assert_eq!(key, "tls");
        assert!(
            message.contains("cannot read /nonexistent.pem"),
            "{message}"
        );
    }

    #[test]
    fn the_default_connection_bound_follows_the_open_files_limit() {
        assert_eq!(connections_for_open_files(Some(1024)), 512);
        assert_eq!(connections_for_open_files(Some(160)), 80);
        assert_eq!(connections_for_open_files(Some(1)), 1);
        assert_eq!(connections_for_open_files(Some(1 << 20)), 10_000);
        assert_eq!(connections_for_open_files(None), 10_000);
    }

    fn job_with(source: &str) -> Result<Job, String> {
        let text =
            format!("name: ingest\nsource:\n  type: ingest\n{source}sink:\n  type: blackhole\n");
        Job::parse(std::path::Path::new("job.yaml"), &text, |name| {
            (name == "INGEST_TOKEN").then(|| "s3cret".to_string())
        })
        .and_then(|job| crate::connectors::check(&job).map(|_| job))
        .map_err(|e| e.to_string())
    }

    #[test]
    fn job_file_errors_name_the_line_and_key() {
        let job = job_with("  token: ${INGEST_TOKEN}\n  buckets: [telegraf]\n").unwrap();
        let source = crate::connectors::source(&job).unwrap();
        let c = source
            .as_any()
            .downcast_ref::<IngestSourceConfig>()
            .unwrap();
        assert_eq!(c.token.as_deref(), Some("s3cret"));
        assert!(source.table_names().is_empty());
        let refused = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(source.open(&job));
        let Err(e) = refused else {
            panic!("the ingest source is not bounded")
        };
        assert!(e.to_string().contains("run it with `-c ingest`"), "{e}");

        let e = job_with("  bukcet: telegraf\n").unwrap_err();
        assert!(
            e.starts_with("job.yaml:4:3: key `source.bukcet`: unknown field `bukcet`"),
            "{e}"
        );
        let e = job_with("  listen: 'localhost'\n").unwrap_err();
        assert!(
            e.starts_with("job.yaml:4:3: key `source.listen`: `localhost` is not an address"),
            "{e}"
        );
    }
}
