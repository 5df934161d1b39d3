//! The ingest endpoint under attack and overload, as a user would meet it: the real
//! `tsmig-job -c ingest` (into the blackhole sink) in a child process, clients over TCP
//! written by hand so they can stall, trickle and hang on. Each story has a good client
//! that must keep being served, and a deadline for everything it waits for.
//!
//! - slowloris: headers and bodies sent a byte at a time are cut at `header_timeout` and
//!   `body_timeout` with a 408, each logged once, while writes and `/ping` succeed;
//! - more idle and stalled connections than `max_connections` (under an open-files limit
//!   they would exhaust) leave good clients served and descriptors bounded;
//! - bodies past `max_body_bytes_in_flight` are answered 429 before they are sent, and the
//!   job's peak memory stays bounded;
//! - gzip bombs stop at `max_body_bytes` (413) or at the memory budget (429), not in RSS.
//!
//! `TSMIG_JOB_BIN` runs them against another build (see `common::tsmig`).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One story at a time: they time clients and measure the job's memory, which a story
/// running beside them would disturb.
async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// A running `tsmig-job -c ingest`, killed when dropped.
struct Job {
    child: Child,
    port: u16,
    /// Its log (stderr), line by line, as it comes.
    log: Arc<Mutex<Vec<String>>>,
}

impl Job {
    /// Starts an ingest job on a free port with `source` (YAML lines of the `source:`
    /// section) and, if given, an open-files limit; returns once `/ping` answers.
    fn start(name: &str, source: &[&str], open_files: Option<u32>) -> Job {
        let dir = common::scratch(&common::unique(name));
        let port = common::free_ports(1)[0];
        let mut job = format!(
            "name: {name}\nmode: ingest\nsource:\n  type: ingest\n  listen: 127.0.0.1:{port}\n"
        );
        for line in source {
            job.push_str(&format!("  {line}\n"));
        }
        job.push_str("sink:\n  type: blackhole\n");
        let path = dir.join("job.yaml");
        std::fs::write(&path, job).unwrap();

        let bin = std::env::var("TSMIG_JOB_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_tsmig-job").to_string());
        // `exec` keeps the pid: the job's /proc entry is the child's.
        let mut command = Command::new("bash");
        command.arg("-c").arg(match open_files {
            Some(n) => format!("ulimit -n {n} && exec \"$0\" \"$@\""),
            None => "exec \"$0\" \"$@\"".to_string(),
        });
        command
            .arg(bin)
            .args(["-c", "ingest", "--config"])
            .arg(&path)
            .args(["--workers", "1", "--progress", "off"])
            .current_dir(&dir)
            .env("RUST_LOG", "warn,tsmig::connectors::ingest=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = log.clone();
        let stderr = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let mut job = Job { child, port, log };
        let mut reader = Some(reader);
        let started = Instant::now();
        loop {
            if let Some(status) = job.child.try_wait().unwrap() {
                // Its stderr is closed: the reader has every line once it ends.
                reader.take().unwrap().join().unwrap();
                panic!(
                    "tsmig-job exited ({status}) before answering /ping:\n{}",
                    job.log_text()
                );
            }
            if let Ok(mut tcp) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = tcp.write_all(PING.as_bytes());
                let mut answer = String::new();
                let _ = std::io::Read::read_to_string(&mut tcp, &mut answer);
                if answer.starts_with("HTTP/1.1 204") {
                    return job;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the job did not answer /ping within a minute: {:?}",
                job.log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn proc_status(&self, key: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the job is running");
        let line = status
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no {key} in /proc/PID/status"));
        let kb: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap();
        kb * 1024
    }

    /// The job's resident memory now, and its peak, in bytes.
    fn rss(&self) -> (u64, u64) {
        (self.proc_status("VmRSS:"), self.proc_status("VmHWM:"))
    }

    /// File descriptors the job has open.
    fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Log lines containing `text`.
    fn logged(&self, text: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(text))
            .count()
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const PING: &str = "GET /ping HTTP/1.1\r\nHost: tsmig\r\nConnection: close\r\n\r\n";

/// Sends `request` on a new connection and reads the answer to its end (the request says
/// `Connection: close`), within `within`.
async fn exchange(port: u16, request: Vec<u8>, within: Duration) -> Result<String, String> {
    let attempt = async {
        let mut tcp = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        tcp.write_all(&request)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let mut answer = Vec::new();
        tcp.read_to_end(&mut answer)
            .await
            .map_err(|e| format!("read: {e}"))?;
        Ok(String::from_utf8_lossy(&answer).into_owned())
    };
    tokio::time::timeout(within, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {within:?}")))
}

fn write_request(body: &str) -> Vec<u8> {
    format!(
        "POST /write?db=faults&precision=s HTTP/1.1\r\nHost: tsmig\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A good client: one write and one `/ping`, each on a new connection, each answered 204
/// within `within`. Returns what went wrong, if anything.
async fn good_client(port: u16, i: usize, within: Duration) -> Result<(), String> {
    let write = exchange(
        port,
        write_request(&format!("good,client=c{i} v={i}i 1700000000\n")),
        within,
    )
    .await?;
    if !write.starts_with("HTTP/1.1 204") {
        return Err(format!("write {i}: {write}"));
    }
    let ping = exchange(port, PING.as_bytes().to_vec(), within).await?;
    if !ping.starts_with("HTTP/1.1 204") {
        return Err(format!("ping {i}: {ping}"));
    }
    Ok(())
}

/// Good clients one after another until `done` says stop; each must be served within
/// `within`. Returns how many were served, or the first failure.
fn keep_writing(
    port: u16,
    within: Duration,
    done: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Result<usize, String>> {
    tokio::spawn(async move {
        let mut served = 0;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            tick.tick().await;
            good_client(port, served, within).await?;
            served += 1;
        }
        Ok(served)
    })
}

/// What became of a stalling client.
#[derive(Debug)]
struct Stalled {
    /// When the server closed the connection, since it was opened (None: still open when
    /// the client gave up).
    closed_after: Option<Duration>,
    /// What the server sent.
    answer: String,
}

/// A stalling client: sends `prefix` (nothing, or part of a request), then one byte every
/// `every` until the server closes the connection or `give_up` has passed.
async fn stall(port: u16, prefix: Vec<u8>, every: Option<Duration>, give_up: Duration) -> Stalled {
    let opened = Instant::now();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut reader, mut writer) = tcp.into_split();
    let dripping = tokio::spawn(async move {
        if writer.write_all(&prefix).await.is_err() {
            return;
        }
        let Some(every) = every else {
            // Hold the connection open, sending nothing more.
            std::future::pending::<()>().await;
            return;
        };
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            if writer.write_all(b"a").await.is_err() {
                return;
            }
        }
    });
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(give_up, async {
        let mut buf = [0u8; 4096];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    dripping.abort();
    Stalled {
        closed_after: closed.then(|| opened.elapsed()),
        answer: String::from_utf8_lossy(&answer).into_owned(),
    }
}

fn slow_headers() -> Vec<u8> {
    b"POST /write?db=faults HTTP/1.1\r\nHost: tsmig\r\nX-Slow: ".to_vec()
}

fn slow_body() -> Vec<u8> {
    b"POST /write?db=faults HTTP/1.1\r\nHost: tsmig\r\nContent-Length: 100000\r\n\r\nm v=1i"
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_slow_bodies_are_cut_at_their_timeouts_while_good_clients_are_served() {
    let _one = one_at_a_time().await;
    let job = Job::start(
        "faults-slowloris",
        &["header_timeout: 1s", "body_timeout: 2s"],
        None,
    );
    let port = job.port;
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let good = keep_writing(port, Duration::from_secs(3), done.clone());

    let drip = Some(Duration::from_millis(100));
    let give_up = Duration::from_secs(15);
    let headers: Vec<_> = (0..20)
        .map(|_| tokio::spawn(stall(port, slow_headers(), drip, give_up)))
        .collect();
    let bodies: Vec<_> = (0..20)
        .map(|_| tokio::spawn(stall(port, slow_body(), drip, give_up)))
        .collect();
    let mut cut = Vec::new();
    for (what, timeout, clients) in [("headers", 1.0, headers), ("body", 2.0, bodies)] {
        for client in clients {
            let stalled = client.await.unwrap();
            let closed_after = stalled
                .closed_after
                .unwrap_or_else(|| panic!("a slow {what} was never cut: {stalled:?}"))
                .as_secs_f64();
            // Cut at the timeout, not before; a few seconds of slack for a busy machine.
            assert!(
                (timeout..timeout + 3.0).contains(&closed_after),
                "a slow {what} was cut after {closed_after:.2}s (timeout {timeout}s)"
            );
            assert!(
                stalled
                    .answer
                    .starts_with("HTTP/1.1 408 Request Timeout\r\n"),
                "a slow {what} was answered {:?}",
                stalled.answer
            );
            cut.push(stalled.answer);
        }
    }
    assert!(cut[0].ends_with(
        r#"{"code":"request timeout","message":"the request's headers did not arrive within header_timeout (1s)"}"#
    ), "{}", cut[0]);
    // The v1 endpoint adds `error`, which 1.x clients read.
    let body_cut = "the body did not arrive within body_timeout (2s); nothing of it was kept";
    assert!(
        cut[39].ends_with(&format!(
            r#"{{"code":"request timeout","message":"{body_cut}","error":"{body_cut}"}}"#
        )),
        "{}",
        cut[39]
    );

    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let served = good
        .await
        .unwrap()
        .expect("every good client was served in time");
    assert!(served >= 10, "only {served} good clients in the attack");

    // Each cut is logged once.
    let headers_line = "did not arrive within header_timeout (408)";
    let body_line = "did not arrive within body_timeout (408)";
    common::wait_until("a log line per cut connection", || {
        job.logged(headers_line) >= 20 && job.logged(body_line) >= 20
    });
    assert_eq!(
        (job.logged(headers_line), job.logged(body_line)),
        (20, 20),
        "{}",
        job.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_connections_idle_and_stalled_connections_make_room_for_good_clients() {
    let _one = one_at_a_time().await;
    // 64 descriptors: 70 connections held open would exhaust them (accept fails, and
    // every client waits); max_connections 20 keeps the job well inside.
    const MAX: usize = 20;
    let job = Job::start(
        "faults-connections",
        &[
            "max_connections: 20",
            "header_timeout: 30s",
            "body_timeout: 60s",
            "idle_timeout: 10m",
        ],
        Some(64),
    );
    let port = job.port;
    let baseline = job.open_files();
    let give_up = Duration::from_secs(40);

    // N + 50 connections that serve nobody: kept-alive after a /ping, silent, trickling a
    // body. The kept-alive ones come first and fill the bound.
    let mut attackers = Vec::new();
    for _ in 0..20 {
        let keep_alive = b"GET /ping HTTP/1.1\r\nHost: tsmig\r\n\r\n".to_vec();
        attackers.push(tokio::spawn(stall(port, keep_alive, None, give_up)));
    }
    for i in 0..50 {
        let (prefix, drip) = if i % 2 == 0 {
            (Vec::new(), None)
        } else {
            (slow_body(), Some(Duration::from_millis(200)))
        };
        attackers.push(tokio::spawn(stall(port, prefix, drip, give_up)));
    }

    // Meanwhile, good clients are served, and the job's descriptors stay bounded.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let good = keep_writing(port, Duration::from_secs(10), done.clone());
    let mut most_files = 0;
    let watch_until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < watch_until && !good.is_finished() {
        most_files = most_files.max(job.open_files());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let served = good
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("a good client was not served: {e}\n{}", job.log_text()));
    assert!(served >= 10, "only {served} good clients were served");
    assert!(
        most_files <= baseline + MAX + 2,
        "{most_files} descriptors open (baseline {baseline}, max_connections {MAX})"
    );

    // The connections closed to make room: at least the 50 past the bound, idle ones
    // quietly, a trickled body with a 503 that says why. (The rest may still hold a slot,
    // or wait in the listen queue.)
    let deadline = Instant::now() + Duration::from_secs(30);
    while attackers.iter().filter(|a| a.is_finished()).count() < 50 {
        assert!(
            Instant::now() < deadline,
            "fewer than 50 stalled connections were closed in 30s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut closed = 0;
    let mut answered_503 = 0;
    for attacker in attackers.into_iter().filter(|a| a.is_finished()) {
        let stalled = attacker.await.unwrap();
        if stalled.closed_after.is_some() {
            closed += 1;
        }
        if stalled.answer.starts_with("HTTP/1.1 503") {
            assert!(
                stalled.answer.contains("retry-after: 1\r\n")
                    && stalled
                        .answer
                        .contains("the endpoint is at max_connections (20); retry"),
                "{}",
                stalled.answer
            );
            answered_503 += 1;
        }
    }
    assert!(
        closed >= 50,
        "only {closed} of 70 stalled connections were closed"
    );
    assert!(answered_503 > 0, "no trickled body was told why");
    assert!(
        good_client(port, 9999, Duration::from_secs(10))
            .await
            .is_ok(),
        "served after the attack"
    );
}

/// A body of `size` bytes of valid lines, each a point with a 1,000-character string: its
/// points take about as much memory as its text.
fn big_body(size: usize) -> String {
    let value = "x".repeat(1000);
    let mut body = String::with_capacity(size + 1100);
    let mut n = 0;
    while body.len() < size {
        body.push_str(&format!("big,n=n{} s=\"{value}\" {n}\n", n % 100));
        n += 1;
    }
    body.truncate(size - 1);
    let cut = body.rfind('\n').unwrap();
    body.truncate(cut + 1);
    body
}

/// One client sending `body` with its `Content-Length`: the headers, then (unless answered
/// within half a second) the body in 1 MiB pieces. Returns the answer and whether it came
/// before the body was sent.
async fn upload(port: u16, body: Arc<String>) -> (String, bool) {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let head = format!(
        "POST /write?db=faults&precision=s HTTP/1.1\r\nHost: tsmig\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let early = tokio::time::timeout(Duration::from_millis(500), tcp.read_to_end(&mut answer))
        .await
        .is_ok();
    if !early {
        for piece in body.as_bytes().chunks(1 << 20) {
            if tcp.write_all(piece).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::timeout(Duration::from_secs(60), tcp.read_to_end(&mut answer))
            .await
            .expect("an answer within a minute")
            .ok();
    }
    (String::from_utf8_lossy(&answer).into_owned(), early)
}

/// Samples the job's resident memory until `until` completes; returns the highest seen.
async fn peak_rss_while<T>(job: &Job, until: impl std::future::Future<Output = T>) -> (T, u64) {
    tokio::pin!(until);
    let mut peak = 0;
    loop {
        tokio::select! {
            out = &mut until => return (out, peak.max(job.rss().1)),
            _ = tokio::time::sleep(Duration::from_millis(20)) => peak = peak.max(job.rss().0),
        }
    }
}

const MIB: u64 = 1 << 20;

/// `max_body_bytes_in_flight` of the memory stories.
const BUDGET: u64 = 64 * MIB;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_past_the_memory_budget_are_answered_429_before_they_are_sent() {
    let _one = one_at_a_time().await;
    let job = Job::start(
        "faults-memory",
        &[
            "max_body_bytes_in_flight: 67108864", /* BUDGET */
            "body_timeout: 60s",
        ],
        None,
    );
    let port = job.port;
    let (before, _) = job.rss();
    let body = Arc::new(big_body(20 << 20));

    // 30 clients at once, 20 MiB each: 600 MiB against a 64 MiB budget, which admits a
    // 20 MiB body (with room for its points, 100 MiB) only alone.
    let clients: Vec<_> = (0..30)
        .map(|_| tokio::spawn(upload(port, body.clone())))
        .collect();
    let (answers, peak) = peak_rss_while(&job, async {
        let mut answers = Vec::new();
        for client in clients {
            answers.push(client.await.unwrap());
        }
        answers
    })
    .await;

    let mut written = 0;
    let mut refused_early = 0;
    for (answer, early) in &answers {
        if answer.starts_with("HTTP/1.1 204") {
            written += 1;
        } else if answer.starts_with("HTTP/1.1 429") {
            assert!(answer.contains("retry-after: 1\r\n"), "{answer}");
            assert!(
                answer.contains("request bodies in memory are at max_body_bytes_in_flight"),
                "{answer}"
            );
            if *early {
                refused_early += 1;
            }
        } else {
            panic!("answered neither 204 nor 429: {answer}");
        }
    }
    assert!(written >= 1, "the budget let nothing through");
    assert!(
        refused_early >= 20,
        "only {refused_early} of 30 were refused before their body was sent"
    );
    // The budget (bodies and what they parse into) and the engine's share of the points
    // queued, within twice the budget; without it the peak is over 600 MiB.
    let grew = peak.saturating_sub(before);
    assert!(
        grew < 2 * BUDGET,
        "the job grew by {} MiB (from {} MiB)",
        grew / MIB,
        before / MIB
    );
    assert!(
        good_client(port, 1, Duration::from_secs(10)).await.is_ok(),
        "served after the rush"
    );
}

/// `members` gzip members of `piece` each, between a gzipped `head` and `tail`: a body
/// that inflates to `head + piece * members + tail` from a few KiB.
fn gzip_bomb(head: &[u8], piece: &[u8], members: usize, tail: &[u8]) -> Vec<u8> {
    let gzip = |bytes: &[u8]| {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    };
    let member = gzip(piece);
    let mut bomb = gzip(head);
    for _ in 0..members {
        bomb.extend_from_slice(&member);
    }
    bomb.extend_from_slice(&gzip(tail));
    bomb
}

fn gzip_request(bomb: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST /write?db=faults HTTP/1.1\r\nHost: tsmig\r\nContent-Encoding: gzip\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        bomb.len()
    )
    .into_bytes();
    request.extend_from_slice(bomb);
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_bombs_stop_at_the_size_limit_or_the_memory_budget_not_in_memory() {
    let _one = one_at_a_time().await;
    let job = Job::start(
        "faults-gzip",
        &["max_body_bytes_in_flight: 67108864" /* BUDGET */],
        None,
    );
    let port = job.port;
    let (before, _) = job.rss();
    let zeros = vec![0u8; MIB as usize];

    // 1 GiB of zeros from about 1 MiB: refused at max_body_bytes (25 MB), as inflated.
    let bomb = gzip_bomb(b"", &zeros, 1024, b"");
    assert!(bomb.len() < 2 * MIB as usize);
    let answer = exchange(port, gzip_request(&bomb), Duration::from_secs(60))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer
            .contains("the body is larger than max_body_bytes (25000000 bytes) once decompressed"),
        "{answer}"
    );

    // Eight at once, each inflating to 20 MiB (under max_body_bytes). Each inflated text
    // is admitted with room for its points, 100 MiB, which a 64 MiB budget grants only
    // to a request alone: the others are answered 429 and keep nothing.
    let letters = vec![b'a'; MIB as usize];
    let bomb = Arc::new(gzip_request(&gzip_bomb(
        b"bomb s=\"",
        &letters,
        20,
        b"\" 1\n",
    )));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let bomb = bomb.clone();
            tokio::spawn(
                async move { exchange(port, bomb.to_vec(), Duration::from_secs(60)).await },
            )
        })
        .collect();
    let (answers, peak) = peak_rss_while(&job, async {
        let mut answers = Vec::new();
        for client in clients {
            answers.push(client.await.unwrap().unwrap());
        }
        answers
    })
    .await;
    let refused = answers
        .iter()
        .filter(|a| a.starts_with("HTTP/1.1 429"))
        .count();
    for answer in &answers {
        assert!(
            answer.starts_with("HTTP/1.1 204") || answer.starts_with("HTTP/1.1 429"),
            "{answer}"
        );
    }
    assert!(refused >= 4, "only {refused} of 8 bombs hit the budget");
    let grew = peak.saturating_sub(before);
    assert!(
        grew < 2 * BUDGET,
        "the job grew by {} MiB (from {} MiB)",
        grew / MIB,
        before / MIB
    );
}
