//! The fuzz targets' checks: one input in, its outcomes out (see `mod.rs`), a panic on a
//! broken invariant, for the stable fuzzer (`tests/fuzz.rs`). Each takes raw bytes, as a
//! libFuzzer target does, so a cargo-fuzz target could call them as they are.
//!
//! - [`line_protocol`]: a write request's body through the ingest endpoint's parser;
//! - [`ingest_request`]: a whole HTTP request to a running ingest endpoint;
//! - [`job_file`]: a job file through the loader and the connectors' section checks;
//! - [`binlog_rows`]: a table map and a rows event through the binlog reader's decoding.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;
use tsmig::connectors::influxdb::encoding::{encode_point, Encoding};
use tsmig::connectors::ingest::parse::{
    parse_body, parse_body_by_the_crate, parse_body_counted, point_bytes, Precision,
};
use tsmig::connectors::mysql::binlog::fuzzing::{self, Column};
use tsmig::job::{Job, JobError, TimeUnit};
use tsmig::model::{series_hash, Point, Value};

/// Panics seen on the endpoint's threads (named [`ENDPOINT_THREADS`]); the stable
/// fuzzer's panic hook counts them here.
pub static PANICS_ELSEWHERE: AtomicU64 = AtomicU64::new(0);

/// The name of the endpoint's runtime threads, so that a panic there is told from one of
/// another test running alongside.
pub const ENDPOINT_THREADS: &str = "fuzz-endpoint";

/// A message with its particulars blanked: what it quotes (from its first quote to its
/// last: a quoted name may hold quotes itself), numbers, and the word after `variable`
/// (the loader names an unset environment variable unquoted).
pub fn shape(message: &str) -> String {
    let quote = |c: char| c == '"' || c == '`' || c == '\'';
    let message = match (message.find(quote), message.rfind(quote)) {
        (Some(first), Some(last)) => {
            format!("{}…{}", &message[..first], &message[last + 1..])
        }
        _ => message.to_string(),
    };
    let mut words: Vec<&str> = message.split(' ').collect();
    for i in 1..words.len() {
        if words[i - 1] == "variable" {
            words[i] = "V";
        }
    }
    let message = words.join(" ");
    let mut out = String::new();
    let mut chars = message.chars().peekable();
    while let Some(c) = chars.next() {
        if out.len() > 120 {
            break;
        }
        if c.is_ascii_digit() {
            while chars.peek().is_some_and(|d| d.is_ascii_digit()) {
                chars.next();
            }
            out.push('N');
        } else {
            out.push(c);
        }
    }
    out
}

// --- Line protocol -----------------------------------------------------------------

const PRECISIONS: [Precision; 6] = [
    Precision::Nanos,
    Precision::Micros,
    Precision::Millis,
    Precision::Seconds,
    Precision::Minutes,
    Precision::Hours,
];

/// A body through [`parse_body_counted`], as the endpoint runs it. The first byte picks the
/// precision and the server's time (a time now, 0, or `i64::MAX`, what the endpoint uses
/// when the clock is past 2262); the rest is the body. Checks that every line ends up a
/// point or a rejection with a reason, that points are what InfluxDB would store (fields,
/// sorted unique tags, finite floats, the series hash), that the memory counted covers the
/// points, and that a point written back as line protocol by the InfluxDB sink's encoder
/// parses to the same point; and that the lines read as plain ones, without the crate,
/// come out as the crate reads them.
pub fn line_protocol(data: &[u8]) -> Vec<String> {
    let (mode, body) = data.split_first().map_or((0, data), |(m, b)| (*m, b));
    let precision = PRECISIONS[mode as usize % 6];
    let now = match mode / 6 % 3 {
        0 => 1_767_225_600_123_456_789,
        1 => 0,
        _ => i64::MAX,
    };
    // A sink's limit, as `parse_body_checked` gets it: points of more than 4 fields or of
    // measurement `refused` are refused.
    let check = |p: &Point| -> Result<(), String> {
        if p.fields.len() > 4 || p.measurement.as_str() == "refused" {
            Err("the sink refuses it".into())
        } else {
            Ok(())
        }
    };
    let mut counted = 0usize;
    let parsed = parse_body_counted(body, precision, now, &check, &mut |n| counted += n);
    // Plain lines are read without the crate (`plain`): the result must be the crate's.
    let by_the_crate = parse_body_by_the_crate(body, precision, now, &check);
    assert_eq!(
        parsed.points, by_the_crate.points,
        "plain lines read otherwise than by the crate"
    );
    assert_eq!(
        parsed.rejected, by_the_crate.rejected,
        "lines rejected otherwise than by the crate"
    );

    let lines = 1 + body.iter().filter(|b| **b == b'\n').count();
    assert!(
        parsed.points.len() + parsed.rejected.len() <= lines,
        "{} points and {} rejections from {lines} lines",
        parsed.points.len(),
        parsed.rejected.len()
    );
    let mut outcomes = Vec::new();
    let mut last_line = 0;
    for r in &parsed.rejected {
        assert!(r.line >= 1 && r.line <= lines, "line {} of {lines}", r.line);
        assert!(
            r.line > last_line,
            "rejections out of order: {:?}",
            parsed.rejected
        );
        last_line = r.line;
        assert!(!r.reason.is_empty(), "a rejection without a reason: {r:?}");
        outcomes.push(format!("rejected: {}", shape(&r.reason)));
    }
    let made: usize = parsed.points.iter().map(point_bytes).sum();
    assert!(
        counted >= made,
        "counted {counted} bytes for {made} bytes of points"
    );
    if parsed.points.is_empty() && parsed.rejected.is_empty() {
        assert_eq!(counted, 0, "nothing made, {counted} bytes counted");
    }
    for p in &parsed.points {
        check_point(p);
        if p.time == now - now.rem_euclid(precision.nanos()) {
            outcomes.push("point at the server's time".into());
        }
        // The kinds of field it has (which, not how many: an outcome is a class of input).
        let mut kinds: Vec<&str> = p
            .fields
            .iter()
            .map(|(_, v)| match v {
                Value::Int(_) => "int",
                Value::UInt(_) => "uint",
                Value::Float(_) => "float",
                Value::String(_) => "string",
                Value::Bool(_) => "bool",
                _ => "other",
            })
            .collect();
        kinds.sort_unstable();
        kinds.dedup();
        outcomes.push(format!("point: {} tags, {kinds:?}", p.tags.len().min(2)));
        // Written back by the InfluxDB sink's encoder, it parses to the same point —
        // unless a name holds a backslash: the encoder writes for InfluxDB's Go parser,
        // which keeps `\\` as two backslashes, while this one reads one (a deliberate
        // difference, tests/line_protocol_corpus.rs), so such names do not round-trip here.
        let backslash = p.measurement.contains('\\')
            || p.tags
                .iter()
                .any(|(k, v)| k.contains('\\') || v.contains('\\'))
            || p.fields.iter().any(|(k, _)| k.contains('\\'));
        if backslash {
            outcomes.push("a name with a backslash".into());
            continue;
        }
        let mut text = Vec::new();
        let encoding = Encoding {
            precision: TimeUnit::Nanos,
            unsigned: true,
        };
        match encode_point(&mut text, p, encoding) {
            Err(e) => outcomes.push(format!("the encoder refuses it: {}", shape(&e))),
            Ok(()) => {
                let again = parse_body(&text, Precision::Nanos, 0);
                assert!(
                    again.rejected.is_empty() && again.points.len() == 1,
                    "{p:?} written as {:?} parses as {again:?}",
                    String::from_utf8_lossy(&text)
                );
                assert_eq!(
                    &again.points[0],
                    p,
                    "written as {:?}",
                    String::from_utf8_lossy(&text)
                );
            }
        }
    }
    outcomes.sort();
    outcomes.dedup();
    outcomes
}

fn check_point(p: &Point) {
    assert!(!p.measurement.is_empty(), "{p:?}");
    assert!(!p.fields.is_empty(), "a point without fields: {p:?}");
    for w in p.tags.windows(2) {
        assert!(w[0].0 < w[1].0, "tags not sorted or repeated: {p:?}");
    }
    for (k, v) in &p.tags {
        assert!(!k.is_empty() && !v.is_empty(), "an empty tag: {p:?}");
        assert!(!k.contains('\0') && !v.contains('\0'), "{p:?}");
    }
    for (i, (k, v)) in p.fields.iter().enumerate() {
        assert!(!k.is_empty() && !k.contains('\0'), "{p:?}");
        assert!(
            p.fields[..i].iter().all(|(other, _)| other != k),
            "field {k} twice: {p:?}"
        );
        if let Value::Float(f) = v {
            assert!(f.is_finite(), "{p:?}");
        }
    }
    assert!(!p.measurement.contains('\0'), "{p:?}");
    assert_eq!(p.device_hash, series_hash(&p.measurement, &p.tags), "{p:?}");
}

// --- The ingest endpoint -----------------------------------------------------------

/// A running endpoint (started once) and its address.
struct Endpoint {
    addr: std::net::SocketAddr,
}

const TOKEN: &str = "fuzz-token-0123";
const USER: &str = "writer";
const PASSWORD: &str = "fuzz-password-4567";

fn endpoint() -> &'static Endpoint {
    static ENDPOINT: OnceLock<Endpoint> = OnceLock::new();
    ENDPOINT.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name(ENDPOINT_THREADS)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let config = format!(
                    "listen: 127.0.0.1:0\napi: [v1, v2]\norg: acme\nbuckets: [sensors]\ndatabases: [factory]\n\
                     token: {TOKEN}\nusername: {USER}\npassword: {PASSWORD}\nmax_body_bytes: 65536\n\
                     max_body_bytes_in_flight: 4194304\nmax_pending_points: 100000\nack: async\n\
                     precision: s\nbody_timeout: 5s\nheader_timeout: 5s\n"
                );
                let config: tsmig::connectors::ingest::IngestSourceConfig =
                    serde_yaml::from_str(&config).unwrap();
                let dead_letters =
                    tsmig::dead_letter::DeadLetters::new("fuzz", Path::new("/dev/null"));
                let (server, queue) = tsmig::connectors::ingest::IngestServer::start(
                    &config,
                    dead_letters,
                    tsmig::metrics::Counters::new(),
                    std::future::pending(),
                )
                .await
                .unwrap();
                // The engine: takes every request (`ack: async` answered it already).
                let arrived = std::sync::Arc::new(tokio::sync::Notify::new());
                let wake = arrived.clone();
                queue.on_arrival(std::sync::Arc::new(move || wake.notify_one()));
                tx.send(server.local_addr()).unwrap();
                loop {
                    arrived.notified().await;
                    while queue.try_recv().is_some() {}
                }
            });
        });
        Endpoint {
            addr: rx.recv().unwrap(),
        }
    })
}

/// A request to the endpoint, written as the input says: a first line `METHOD TARGET`,
/// header lines, a blank line, the body. The harness sets `Host`, `Content-Length` and
/// `Connection: close`; a body is gzipped when a `Content-Encoding: gzip` header is given
/// (unless `X-Raw: 1` asks to send it as it is). Checks that the endpoint answers every
/// request with a status a client can act on — never a 500 (a panic while parsing), never
/// silence — and that nothing on its side panicked.
pub fn ingest_request(data: &[u8]) -> Vec<String> {
    let endpoint = endpoint();
    let before = PANICS_ELSEWHERE.load(Ordering::SeqCst);
    let (head, body) = match find(data, b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let mut lines = head.split(|b| *b == b'\n');
    let first = lines.next().unwrap_or_default();
    let mut request = Vec::new();
    request.extend_from_slice(first);
    request.extend_from_slice(b" HTTP/1.1\r\nHost: tsmig\r\nConnection: close\r\n");
    let (mut gzip, mut raw) = (false, false);
    for line in lines {
        let name = line
            .split(|b| *b == b':')
            .next()
            .unwrap_or_default()
            .trim_ascii()
            .to_ascii_lowercase();
        let value = line
            .splitn(2, |b| *b == b':')
            .nth(1)
            .unwrap_or_default()
            .trim_ascii()
            .to_ascii_lowercase();
        match name.as_slice() {
            b"host" | b"connection" | b"content-length" | b"transfer-encoding" => continue,
            b"x-raw" => {
                raw = true;
                continue;
            }
            b"content-encoding" if value == b"gzip" => gzip = true,
            _ => {}
        }
        request.extend_from_slice(line);
        request.extend_from_slice(b"\r\n");
    }
    let body = if gzip && !raw {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(body).unwrap();
        enc.finish().unwrap()
    } else {
        body.to_vec()
    };
    request.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    request.extend_from_slice(&body);

    let mut tcp = std::net::TcpStream::connect(endpoint.addr).expect("the endpoint is up");
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    tcp.set_nodelay(true).unwrap();
    // The endpoint may answer and close before the body is sent (413, 401): not an error.
    let _ = tcp.write_all(&request);
    let mut answer = Vec::new();
    let read = tcp.read_to_end(&mut answer);
    if let Err(e) = &read {
        if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut {
            panic!("no answer within 15 s");
        }
    }
    assert_eq!(
        PANICS_ELSEWHERE.load(Ordering::SeqCst),
        before,
        "the endpoint panicked"
    );
    let status = std::str::from_utf8(answer.get(9..12).unwrap_or_default())
        .ok()
        .and_then(|s| s.parse::<u16>().ok());
    let Some(status) = status.filter(|_| answer.starts_with(b"HTTP/1.1 ")) else {
        // hyper closes a connection whose request it cannot parse without an answer only
        // when nothing of a request arrived; anything else is answered.
        assert!(
            find(&request, b"\r\n\r\n").is_none() || answer.is_empty(),
            "not an HTTP answer: {:?}",
            String::from_utf8_lossy(&answer)
        );
        return vec!["no answer to a request that is not one".into()];
    };
    assert!(
        [200, 204, 400, 401, 404, 405, 408, 413, 415, 429, 431, 505].contains(&status),
        "status {status}: {}",
        String::from_utf8_lossy(&answer)
    );
    // The JSON body's message (from its first `{` to its last `}`, should it be chunked).
    let body = find(&answer, b"\r\n\r\n").map_or(&[][..], |i| &answer[i + 4..]);
    let json = match (
        body.iter().position(|&b| b == b'{'),
        body.iter().rposition(|&b| b == b'}'),
    ) {
        (Some(start), Some(end)) if start < end => {
            serde_json::from_slice::<serde_json::Value>(&body[start..=end]).ok()
        }
        _ => None,
    };
    let message = json
        .as_ref()
        .and_then(|j| j["message"].as_str())
        .unwrap_or_default();
    // A partial write lists every rejected line, `; ` between them: the first names the
    // class (all of them would make each combination an outcome of its own).
    let first = message.split("; ").next().unwrap_or_default();
    // The one message that names what the client sent without quotes.
    let first = if first.starts_with("Content-Encoding ") {
        "Content-Encoding … is not supported"
    } else {
        first
    };
    vec![format!("{status} {}", shape(first))]
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

// --- Job files ---------------------------------------------------------------------

/// Values of the environment the job files reference; the first two are secret.
const SECRET_VALUES: [&str; 2] = ["Fuzz-Secret-Pw1", "Fuzz-Secret-Tok2"];

fn lookup(name: &str) -> Option<String> {
    match name {
        "MYSQL_PASSWORD" | "PASSWORD" => Some(SECRET_VALUES[0].into()),
        "INFLUX_TOKEN" | "TOKEN" => Some(SECRET_VALUES[1].into()),
        "EMPTY" => Some(String::new()),
        "HOST" => Some("127.0.0.1".into()),
        _ => None,
    }
}

/// A job file through [`Job::parse`] (what `Job::load` runs on the file's text) and, when
/// it loads, the connectors' checks of its sections ([`tsmig::connectors::check`]) and its
/// paths. Checks that every refusal is an error with a message, placed inside the file,
/// and that a secret from the environment never shows in one where the file marks it
/// secret (a `password`, `token`, `secret`, `key`, `url` or `dsn` key).
pub fn job_file(data: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("fuzz.yaml");
    let job = match Job::parse(path, &text, lookup) {
        Ok(job) => job,
        Err(e) => {
            check_job_error(&e, &text);
            return vec![format!("load: {}", error_shape(&e))];
        }
    };
    // A connector's kind as the file names it: one of tsmig's, or any other (`?`).
    let kind = |kind: &str| {
        const KINDS: &[&str] = &[
            "mysql",
            "influxdb",
            "iotdb",
            "timestream",
            "tdengine",
            "ingest",
            "blackhole",
            "memory",
        ];
        KINDS.iter().find(|k| **k == kind).copied().unwrap_or("?")
    };
    let (source, sink) = (kind(&job.file.source.kind), kind(&job.file.sink.kind));
    let mut outcomes = vec![format!("loaded: {source} → {sink}")];
    match tsmig::connectors::check(&job) {
        Ok(_) => outcomes.push(format!("checked: {source} → {sink} {:?}", job.file.mode)),
        Err(e) => {
            check_job_error(&e, &text);
            outcomes.push(format!("check: {}", error_shape(&e)));
        }
    }
    if let Err(e) = job.dead_letter_path() {
        check_job_error(&e, &text);
    }
    outcomes
}

/// The class of a job-file error: its key's class and its message's, without the key path
/// the message may start with (it holds the file's own key names).
fn error_shape(e: &JobError) -> String {
    let message = e
        .key
        .as_deref()
        .and_then(|key| e.message.strip_prefix(key))
        .map_or(e.message.as_str(), |rest| {
            rest.trim_start_matches(':').trim_start()
        });
    format!("{} {}", key_shape(e), shape(message))
}

/// The class of an error's key: its top-level section if the job file has one of that
/// name (else `?`) and its depth (`sink..` for `sink.retry.max_backoff`). The whole path
/// would make every misspelt key an outcome of its own.
fn key_shape(e: &JobError) -> String {
    const SECTIONS: &[&str] = &[
        "name",
        "mode",
        "source",
        "sink",
        "mappings",
        "checkpoint",
        "dead_letter",
        "flow",
        "verify",
        "follow",
        "restart",
    ];
    let Some(key) = e.key.as_deref() else {
        return String::new();
    };
    let mut segments = key.split(['.', '[']);
    let top = segments.next().unwrap_or_default();
    let top = if SECTIONS.contains(&top) { top } else { "?" };
    format!("{top}{}", ".".repeat(segments.count().min(3)))
}

fn check_job_error(e: &JobError, text: &str) {
    assert!(
        !e.message.trim().is_empty(),
        "an error without a message: {e:?}"
    );
    let lines = yaml_lines(text).len();
    if let Some((line, column)) = e.place {
        assert!(
            line >= 1 && line <= lines + 1 && column >= 1,
            "{e}: line {line} of a {lines}-line file"
        );
    }
    // A secret substituted on a line the file marks secret never shows.
    let shown = e.to_string();
    for (i, value) in SECRET_VALUES.iter().enumerate() {
        let names: &[&str] = if i == 0 {
            &["MYSQL_PASSWORD", "PASSWORD"]
        } else {
            &["INFLUX_TOKEN", "TOKEN"]
        };
        let marked = yaml_lines(text).into_iter().any(|line| {
            names.iter().any(|n| line.contains(&format!("${{{n}}}")))
                && tsmig::spec::env::is_secret_key(line)
        });
        let elsewhere = yaml_lines(text).into_iter().any(|line| {
            (names.iter().any(|n| line.contains(&format!("${{{n}")))
                && !tsmig::spec::env::is_secret_key(line))
                || line.contains(value)
        });
        if marked && !elsewhere {
            assert!(
                !e.message.contains(value),
                "the secret {value} shows in the error: {shown}"
            );
        }
    }
}

/// The lines of a job file as YAML reads them: a line ends at `\n`, `\r\n` or a lone
/// `\r` (and for libyaml, which serde_yaml is, also at NEL, LS and PS). Counting only
/// `\n` put `name:\rl`'s error on line 3 of a 1-line file (the fuzzer's
/// `job_file/crash-6705f1e787412a41`): the loader was right, the count was not.
pub fn yaml_lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}') {
            lines.push(&text[start..i]);
            start = i + c.len_utf8();
            if c == '\r' && chars.peek().is_some_and(|&(_, d)| d == '\n') {
                chars.next();
                start += 1;
            }
        }
    }
    lines.push(&text[start..]);
    lines
}

// --- Binlog row images -------------------------------------------------------------

/// A column type as `information_schema` names it, and its table map entry.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    pub data_type: &'static str,
    pub column_type: &'static str,
    pub charset: Option<&'static str>,
    /// The table map's type byte.
    pub binlog_type: u8,
    /// The table map's metadata for the column.
    pub meta: &'static [u8],
}

const fn kind(
    data_type: &'static str,
    column_type: &'static str,
    charset: Option<&'static str>,
    binlog_type: u8,
    meta: &'static [u8],
) -> Kind {
    Kind {
        data_type,
        column_type,
        charset,
        binlog_type,
        meta,
    }
}

const UTF8: Option<&str> = Some("utf8mb4");

/// The column types a sensor table has, as MySQL and MariaDB describe them in the table map:
/// every type the lean decoder reads, and some it leaves to mysql_async (ENUM, SET, YEAR,
/// BIT, TIME, JSON).
pub const KINDS: &[Kind] = &[
    kind("tinyint", "tinyint(4)", None, 1, &[]),
    kind("tinyint", "tinyint(3) unsigned", None, 1, &[]),
    kind("tinyint", "tinyint(1)", None, 1, &[]),
    kind("smallint", "smallint(6)", None, 2, &[]),
    kind("smallint", "smallint(5) unsigned", None, 2, &[]),
    kind("mediumint", "mediumint(9)", None, 9, &[]),
    kind("mediumint", "mediumint(8) unsigned", None, 9, &[]),
    kind("int", "int(11)", None, 3, &[]),
    kind("int", "int(10) unsigned", None, 3, &[]),
    kind("bigint", "bigint(20)", None, 8, &[]),
    kind("bigint", "bigint(20) unsigned", None, 8, &[]),
    kind("float", "float", None, 4, &[4]),
    kind("double", "double", None, 5, &[8]),
    kind("decimal", "decimal(10,3)", None, 246, &[10, 3]),
    kind("decimal", "decimal(30,10)", None, 246, &[30, 10]),
    kind("decimal", "decimal(5,0)", None, 246, &[5, 0]),
    kind("decimal", "decimal(65,30)", None, 246, &[65, 30]),
    kind("char", "char(8)", UTF8, 254, &[0xfe, 32]),
    kind("char", "char(100)", UTF8, 254, &[0xee, 0x90]),
    kind("varchar", "varchar(32)", UTF8, 15, &[128, 0]),
    kind("varchar", "varchar(400)", UTF8, 15, &[0x40, 0x06]),
    kind("varchar", "varchar(20)", Some("latin1"), 15, &[20, 0]),
    kind("tinytext", "tinytext", UTF8, 252, &[1]),
    kind("text", "text", UTF8, 252, &[2]),
    kind("mediumtext", "mediumtext", UTF8, 252, &[3]),
    kind("longtext", "longtext", UTF8, 252, &[4]),
    kind("blob", "blob", None, 252, &[2]),
    kind("datetime", "datetime", None, 18, &[0]),
    kind("datetime", "datetime(1)", None, 18, &[1]),
    kind("datetime", "datetime(3)", None, 18, &[3]),
    kind("datetime", "datetime(6)", None, 18, &[6]),
    kind("timestamp", "timestamp", None, 17, &[0]),
    kind("timestamp", "timestamp(2)", None, 17, &[2]),
    kind("timestamp", "timestamp(6)", None, 17, &[6]),
    kind("date", "date", None, 14, &[]),
    // Left to mysql_async's `rows()`.
    kind("year", "year(4)", None, 13, &[]),
    kind("enum", "enum('on','off','it''s')", UTF8, 254, &[0xf7, 1]),
    kind("set", "set('a','b','c')", UTF8, 254, &[0xf8, 1]),
    kind("bit", "bit(1)", None, 16, &[1, 0]),
    kind("bit", "bit(12)", None, 16, &[4, 1]),
    kind("time", "time(3)", None, 19, &[3]),
    kind("json", "json", None, 245, &[4]),
];

/// Rows event types: WRITE/UPDATE/DELETE, v1 (MariaDB) and v2 (MySQL).
pub const ROWS_EVENT_TYPES: [u8; 6] = [23, 24, 25, 30, 31, 32];

/// A binlog input: the table as `information_schema` describes it, the job's projection,
/// and the two events' bodies as the server sends them.
#[derive(Debug, Clone)]
pub struct BinlogInput {
    /// Bit 0: decode through `rows()` whatever the table. Bits 1..: the rows event's
    /// type ([`ROWS_EVENT_TYPES`]).
    pub flags: u8,
    /// Per schema column, an index into [`KINDS`].
    pub kinds: Vec<u8>,
    /// Schema indices the job reads, in row order.
    pub projection: Vec<u8>,
    pub table_map: Vec<u8>,
    pub rows: Vec<u8>,
}

impl BinlogInput {
    /// `flags, n, n kinds, p, p projection indices, table map length (u16 LE), table map,
    /// rows event`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![self.flags, self.kinds.len() as u8];
        out.extend_from_slice(&self.kinds);
        out.push(self.projection.len() as u8);
        out.extend_from_slice(&self.projection);
        out.extend_from_slice(&(self.table_map.len() as u16).to_le_bytes());
        out.extend_from_slice(&self.table_map);
        out.extend_from_slice(&self.rows);
        out
    }

    pub fn from_bytes(data: &[u8]) -> Option<Self> {
        let mut rest = data;
        let mut take = |n: usize| -> Option<&[u8]> {
            let (head, tail) = rest.split_at_checked(n)?;
            rest = tail;
            Some(head)
        };
        let flags = take(1)?[0];
        let n = take(1)?[0] as usize;
        let kinds = take(n)?.to_vec();
        let p = take(1)?[0] as usize;
        let projection = take(p)?.to_vec();
        let len = take(2)?;
        let len = u16::from_le_bytes([len[0], len[1]]) as usize;
        let table_map = take(len)?.to_vec();
        Some(BinlogInput {
            flags,
            kinds,
            projection,
            table_map,
            rows: rest.to_vec(),
        })
    }

    /// The schema, as `information_schema` would describe it.
    pub fn columns(&self) -> Vec<Column> {
        self.kinds
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let k = KINDS[*k as usize % KINDS.len()];
                Column {
                    name: format!("c{i}"),
                    data_type: k.data_type.into(),
                    column_type: k.column_type.into(),
                    charset: k.charset.map(Into::into),
                }
            })
            .collect()
    }

    pub fn rows_event_type(&self) -> u8 {
        ROWS_EVENT_TYPES[(self.flags >> 1) as usize % ROWS_EVENT_TYPES.len()]
    }
}

/// One event as the server sends it: the 19-byte header (v4, no checksum) and `body`.
pub fn event_bytes(event_type: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(19 + body.len());
    out.extend_from_slice(&1_767_225_600u32.to_le_bytes());
    out.push(event_type);
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&(19 + body.len() as u32).to_le_bytes());
    out.extend_from_slice(&4096u32.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// A table map and rows event through the binlog reader's handling of them
/// ([`fuzzing::decode`]: the table-map check, then the lean decoder or `rows()`). Checks
/// that every decoded row has one value per projected column, that no value is larger
/// than the event (a bogus length never allocates), and that where the lean decoder reads
/// an event, `rows()` — which the lean decoder must agree with — gives the same rows.
pub fn binlog_rows(data: &[u8]) -> Vec<String> {
    use mysql_async::binlog::events::{Event, EventData, FormatDescriptionEvent};
    use mysql_async::binlog::BinlogVersion;
    let Some(input) = BinlogInput::from_bytes(data) else {
        return vec!["short".into()];
    };
    if input.kinds.is_empty() {
        return vec!["no columns".into()];
    }
    let columns = input.columns();
    let projection: Vec<usize> = input
        .projection
        .iter()
        .map(|&p| p as usize % columns.len())
        .collect();
    let mut unique = projection.clone();
    unique.sort_unstable();
    unique.dedup();
    if unique.len() != projection.len() {
        // The source never projects a column twice.
        return vec!["projection repeats a column".into()];
    }
    let fde = FormatDescriptionEvent::new(BinlogVersion::Version4);
    let tme_event = event_bytes(19, &input.table_map);
    let rows_event = event_bytes(input.rows_event_type(), &input.rows);
    let (Ok(tme_event), Ok(rows_event)) = (
        Event::read(&fde, &tme_event[..]),
        Event::read(&fde, &rows_event[..]),
    ) else {
        return vec!["event header".into()];
    };
    let tme = match tme_event.read_data() {
        Ok(Some(EventData::TableMapEvent(tme))) => tme,
        Ok(_) => return vec!["not a table map".into()],
        Err(_) => return vec!["table map does not parse".into()],
    };
    let rows = match rows_event.read_data() {
        Ok(Some(EventData::RowsEvent(rows))) => rows,
        Ok(_) => return vec!["not a rows event".into()],
        Err(_) => return vec!["rows event does not parse".into()],
    };
    let generic = input.flags & 1 == 1;
    let decoded = match fuzzing::decode(&columns, &projection, 0, &tme, &rows, generic) {
        Ok(decoded) => decoded,
        Err(e) => return vec![format!("stops: {}", shape(&e))],
    };
    let mut outcomes = vec![format!(
        "decoded ({}), {} changes",
        if decoded.lean { "lean" } else { "rows()" },
        decoded.changes.len().min(2)
    )];
    for change in &decoded.changes {
        match change {
            Ok((before, after)) => {
                for row in [before, after].into_iter().flatten() {
                    assert_eq!(row.values.len(), projection.len(), "{row:?}");
                    for value in row.values.iter().flatten() {
                        let size = match value {
                            Value::String(s) => s.len(),
                            Value::Decimal(d) => d.len(),
                            _ => 0,
                        };
                        assert!(
                            size <= input.rows.len() * 4 + 80,
                            "a {size}-byte value from a {}-byte event",
                            input.rows.len()
                        );
                    }
                }
            }
            Err(reason) => outcomes.push(format!("refused: {}", shape(reason))),
        }
    }
    if decoded.lean {
        let generic = fuzzing::decode(&columns, &projection, 0, &tme, &rows, true);
        match generic {
            Ok(generic) => assert_eq!(
                decoded.changes, generic.changes,
                "the lean decoder and rows() disagree"
            ),
            Err(e) => outcomes.push(format!("only the lean decoder reads it: {}", shape(&e))),
        }
    }
    outcomes.sort();
    outcomes.dedup();
    outcomes
}
