//! moto's server (`moto[server]` from PyPI: a real implementation of Timestream's write
//! API, which scripts/test.sh installs), one per test on a port of its own, and the
//! environment that sends a `tsmig-job` to it with fake credentials and a loopback trap.
//!
//! The trap: HTTP_PROXY/HTTPS_PROXY point at a dead port on 127.0.0.1 and
//! NO_PROXY=127.0.0.1, and the sink's HTTP client honours them, so a request to any host
//! other than the configured endpoint goes to the dead proxy and fails: no request leaves
//! loopback.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A moto server on a free loopback port, stopped when dropped.
pub struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    pub fn start() -> Moto {
        let exe = std::env::var("TSMIG_MOTO_SERVER").unwrap_or_else(|_| {
            let dir = std::env::var("TSMIG_SERVICES_DIR")
                .unwrap_or_else(|_| "/tmp/tsmig-services".into());
            format!("{dir}/moto-venv/bin/moto_server")
        });
        let mut child = Command::new(&exe)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start moto's server `{exe}` ({e}): scripts/test.sh installs it (pip install 'moto[server]'), or set TSMIG_MOTO_SERVER")
            });
        // Werkzeug announces " * Running on http://127.0.0.1:PORT" on stderr.
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let port = loop {
            let line = lines
                .next()
                .expect("moto_server exited before it listened")
                .unwrap();
            if let Some(rest) = line.split("Running on http://127.0.0.1:").nth(1) {
                break rest
                    .trim()
                    .trim_end_matches(|c: char| !c.is_ascii_digit())
                    .parse()
                    .unwrap();
            }
        };
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Moto { child, port }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Everything moto stores, as `GET /moto-api/data.json` shows it.
    pub fn data(&self) -> serde_json::Value {
        let url = format!("{}/moto-api/data.json", self.url());
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async { reqwest::get(url).await.unwrap().json().await.unwrap() })
    }

    /// The records of `table` in moto's store.
    pub fn records(&self, table: &str) -> Vec<serde_json::Value> {
        let data = self.data();
        let tables = data["timestreamwrite"]["TimestreamTable"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        tables
            .into_iter()
            .find(|t| t["name"] == table)
            .map(|t| t["records"].as_array().cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    /// Stops the server now (a Timestream that goes away mid-test).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends `command` (a `tsmig-job`) to the Timestream at `endpoint` (`""`: endpoint
/// discovery), database `database`, with fake credentials, no AWS configuration from the
/// machine, CommonAttributes off (moto drops them) and the loopback trap.
pub fn local_aws<'c>(
    command: &'c mut Command,
    dir: &Path,
    endpoint: &str,
    database: &str,
) -> &'c mut Command {
    command
        .env("TIMESTREAM_ENDPOINT", endpoint)
        .env("TIMESTREAM_DATABASE", database)
        .env("TIMESTREAM_COMMON_ATTRIBUTES", "false")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_SESSION_TOKEN", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join("no-aws-credentials"),
        )
        // The trap: anything not bound for loopback goes to a dead proxy and fails.
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("NO_PROXY", "127.0.0.1,localhost")
}
