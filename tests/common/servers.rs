//! Private servers for the fault tests that stop, freeze or restart a server: an InfluxDB
//! 1.x and a MariaDB of their own, on free ports, with their data under a scratch
//! directory, so that no test stops the shared servers every other test uses
//! (`scripts/services.sh`). Each is laid out as `scripts/services.sh` lays out its own
//! (`TSMIG_SERVICES_DIR` pointed at the directory makes `scripts/load-sample.sh` load into
//! it), started from the same binaries with the same settings. A test stops, freezes and
//! restarts only the processes it started, by their PID; dropping the server (a test that
//! passes or panics) kills what still runs and removes the directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to start or to stop.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// A server process this test started, and how to start it again.
struct Process {
    name: &'static str,
    command: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Process {
    fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} runs already", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut command = Command::new(&self.command[0]);
        command
            .args(&self.command[1..])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        // influxd lets INFLUXDB_* variables override its file, as scripts/services.sh knows.
        for (key, _) in std::env::vars() {
            if key.starts_with("INFLUXDB_") {
                command.env_remove(key);
            }
        }
        self.child = Some(
            command
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.command[0])),
        );
    }

    fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .unwrap_or_else(|| panic!("{} is not running", self.name))
            .id()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} {}", self.name);
    }

    /// Panics, with the server's log, unless `ready` holds within a minute.
    fn wait_ready(&mut self, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + READY_WITHIN;
        while !ready() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "{} exited while starting ({status}):\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not answer within {READY_WITHIN:?}:\n{}",
                self.name,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then waits for the process to exit.
    fn stop(&mut self) {
        self.signal("TERM");
        let deadline = Instant::now() + READY_WITHIN;
        let child = self.child.as_mut().unwrap();
        while child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "{} did not stop within {READY_WITHIN:?} of SIGTERM",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = None;
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A frozen process must be thawed to die at once; SIGKILL ends it either way.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A scratch directory removed when dropped (after the servers in it are gone).
struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An InfluxDB 1.x of this test's own.
pub struct PrivateInflux {
    http_port: u16,
    // Dropped in this order: the server, then its data.
    process: Process,
    _dir: Dir,
}

impl PrivateInflux {
    /// Starts `influxd` on two free ports with its data under a new directory named after
    /// `name`; returns once it answers `/ping`.
    pub fn start(name: &str) -> PrivateInflux {
        let dir = std::env::temp_dir().join("tsmig-servers").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        let home = dir.join("influxdb");
        for sub in ["meta", "data", "wal"] {
            std::fs::create_dir_all(home.join(sub)).unwrap();
        }
        let ports = stable_ports(2);
        let conf = dir.join("influxdb.conf");
        std::fs::write(
            &conf,
            format!(
                r#"reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"

[meta]
  dir = "{home}/meta"

[data]
  dir = "{home}/data"
  wal-dir = "{home}/wal"

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http}"
  auth-enabled = false
  log-enabled = false
"#,
                rpc = ports[1],
                http = ports[0],
                home = home.display(),
            ),
        )
        .unwrap();
        let mut influx = PrivateInflux {
            http_port: ports[0],
            process: Process {
                name: "the private InfluxDB",
                command: vec![
                    "influxd".into(),
                    "-config".into(),
                    conf.display().to_string(),
                ],
                log: dir.join("influxdb.log"),
                child: None,
            },
            _dir: Dir(dir),
        };
        influx.start_again();
        influx
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Whether it answers `/ping` now.
    pub fn answers(&self) -> bool {
        influx_answers(self.http_port)
    }

    /// Starts it (again: the same ports, the same data) and waits until it answers.
    pub fn start_again(&mut self) {
        self.process.spawn();
        let port = self.http_port;
        self.process.wait_ready(move || influx_answers(port));
    }

    /// SIGTERM by PID; returns once it has exited.
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// SIGSTOP: it keeps its connections and answers nothing.
    pub fn freeze(&self) {
        self.process.signal("STOP");
    }

    /// SIGCONT.
    pub fn thaw(&self) {
        self.process.signal("CONT");
    }
}

/// A MariaDB of this test's own: binlog ROW/FULL as `scripts/services.sh` starts the
/// shared one, database `factory`, user `tsmig` (password `tsmig`).
pub struct PrivateMariadb {
    port: u16,
    dir: PathBuf,
    process: Process,
    _dir: Dir,
}

impl PrivateMariadb {
    /// Initialises a datadir under a new directory named after `name` and starts
    /// `mariadbd` on a free port; returns once the `tsmig` user can log in.
    pub fn start(name: &str) -> PrivateMariadb {
        let dir = std::env::temp_dir().join("tsmig-servers").join(name);
        // A Unix socket path has room for 107 bytes.
        assert!(
            dir.join("mariadb.sock").as_os_str().len() < 100,
            "{}: too long a path for a socket; set TMPDIR shorter",
            dir.display()
        );
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let guard = Dir(dir.clone());
        let datadir = dir.join("mariadb-data");
        let log = dir.join("mariadb.log");
        let install = Command::new("mariadb-install-db")
            .args([
                "--no-defaults",
                "--user=root",
                &format!("--datadir={}", datadir.display()),
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--innodb-log-file-size=16M",
            ])
            .output()
            .expect("mariadb-install-db (scripts/services.sh start installs it)");
        assert!(
            install.status.success(),
            "mariadb-install-db failed:\n{}{}",
            String::from_utf8_lossy(&install.stdout),
            String::from_utf8_lossy(&install.stderr)
        );
        let port = stable_ports(1)[0];
        let path = |p: &str| dir.join(p).display().to_string();
        let command = vec![
            find_mariadbd(),
            "--no-defaults".into(),
            "--user=root".into(),
            format!("--datadir={}", datadir.display()),
            format!("--socket={}", path("mariadb.sock")),
            format!("--pid-file={}", path("mariadb.pid")),
            format!("--log-error={}", log.display()),
            "--bind-address=127.0.0.1".into(),
            format!("--port={port}"),
            "--server-id=1".into(),
            format!("--log-bin={}", path("mariadb-bin")),
            "--binlog-format=ROW".into(),
            "--binlog-row-image=FULL".into(),
            "--skip-name-resolve".into(),
            "--innodb-buffer-pool-size=64M".into(),
            "--innodb-log-file-size=16M".into(),
            "--innodb-flush-log-at-trx-commit=2".into(),
            "--character-set-server=utf8mb4".into(),
            "--collation-server=utf8mb4_unicode_ci".into(),
        ];
        let mut mariadb = PrivateMariadb {
            port,
            dir: dir.clone(),
            process: Process {
                name: "the private MariaDB",
                command,
                log,
                child: None,
            },
            _dir: guard,
        };
        mariadb.start_again();
        let mut accounts = "CREATE DATABASE IF NOT EXISTS factory;".to_string();
        for host in ["127.0.0.1", "localhost", "%"] {
            accounts.push_str(&format!(
                "CREATE USER 'tsmig'@'{host}' IDENTIFIED BY 'tsmig'; \
                 GRANT ALL PRIVILEGES ON *.* TO 'tsmig'@'{host}';"
            ));
        }
        mariadb.root_sql(&accounts);
        mariadb
    }

    /// `mysql://tsmig:tsmig@127.0.0.1:PORT/factory`.
    pub fn url(&self) -> String {
        format!("mysql://tsmig:tsmig@127.0.0.1:{}/factory", self.port)
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The directory to give `scripts/load-sample.sh` as `TSMIG_SERVICES_DIR`.
    pub fn services_dir(&self) -> &Path {
        &self.dir
    }

    /// Runs SQL as root over the socket (the `mariadb` client).
    pub fn root_sql(&self, statements: &str) {
        let out = Command::new("mariadb")
            .args([
                "--no-defaults",
                &format!("--socket={}", self.dir.join("mariadb.sock").display()),
                "--user=root",
                "-e",
                statements,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{statements}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts it (again: the same port, datadir and binlog) and waits until it answers.
    pub fn start_again(&mut self) {
        self.process.spawn();
        let socket = self.dir.join("mariadb.sock");
        self.process.wait_ready(move || {
            Command::new("mariadb-admin")
                .args([
                    "--no-defaults",
                    &format!("--socket={}", socket.display()),
                    "--user=root",
                    "--connect-timeout=2",
                    "ping",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
    }

    /// SIGTERM by PID (a clean shutdown); returns once it has exited.
    pub fn stop(&mut self) {
        self.process.stop();
    }
}

/// Free ports below the kernel's ephemeral range: while a server is down, no outgoing
/// connection (nor `free_ports`, which binds port 0) can take its port before it starts
/// again on the same one.
fn stable_ports(n: usize) -> Vec<u16> {
    let ephemeral_start: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000, ephemeral_start.max(10_100));
    let mut held = Vec::new();
    for _ in 0..10_000 {
        if held.len() == n {
            break;
        }
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", fastrand::u16(low..high))) {
            held.push(listener);
        }
    }
    assert_eq!(held.len(), n, "no free port in {low}..{high}");
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// Whether an InfluxDB answers `GET /ping` with 204 on `port`.
fn influx_answers(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 204")
}

fn find_mariadbd() -> String {
    for candidate in ["/usr/sbin/mariadbd", "/usr/bin/mariadbd"] {
        if Path::new(candidate).exists() {
            return candidate.to_string();
        }
    }
    "mariadbd".to_string()
}
