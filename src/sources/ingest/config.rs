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

impl IngestSourceConfig {
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
        if self.ack_timeout.is_zero() {
            return Err(("ack_timeout", "must be longer than 0s".into()));
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
        assert!(c.check_values().is_ok());

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

    fn job_with(source: &str) -> Result<Job, String> {
        let text =
            format!("name: ingest\nsource:\n  type: ingest\n{source}sink:\n  type: blackhole\n");
        Job::parse(std::path::Path::new("job.yaml"), &text, |name| {
            (name == "INGEST_TOKEN").then(|| "s3cret".to_string())
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn job_file_errors_name_the_line_and_key() {
        let job = job_with("  token: ${INGEST_TOKEN}\n  buckets: [telegraf]\n").unwrap();
        let crate::sources::SourceConfig::Ingest(c) = &job.file.source else {
            panic!("not the ingest source");
        };
        assert_eq!(c.token.as_deref(), Some("s3cret"));
        assert!(job.file.source.table_names().is_empty());
        let refused = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(crate::sources::open_bounded(&job));
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
