//! Fuzzing on stable Rust: the inputs tsmig takes from outside — a write request to the
//! ingest endpoint (its body alone, and the whole HTTP request), a job file, a binlog row
//! event — mutated from real seeds for `TSMIG_FUZZ_SECONDS` each (default 10; the
//! fault-tolerance requirement runs each for 600). Bad input must get a clear error, never
//! a panic, a hang or a huge allocation; each target also checks invariants of what it
//! accepts (see `fuzzing/targets.rs`).
//!
//! Seeds: each target's corpus in `fuzz/corpus/<target>/` (replayed first, file by file:
//! every input that once failed is there), InfluxData's line-protocol corpus
//! (`tests/data/`), the job files in `jobs/`, and binlog events built here from real
//! column types. `fuzz/README.md` says how to run them longer and what they found.

mod fuzzing;

use fuzzing::targets::{self, BinlogInput, KINDS};
use fuzzing::{assert_clean, fuzz, Target};

#[global_allocator]
static ALLOCATOR: fuzzing::Watching = fuzzing::Watching;

fn repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// --- Line protocol -----------------------------------------------------------------

const LINE_PROTOCOL_TOKENS: &[&[u8]] = &[
    b" ",
    b",",
    b"=",
    b"\"",
    b"\\",
    b"\n",
    b"\r\n",
    b"#",
    b"\\ ",
    b"\\,",
    b"\\=",
    b"\\\"",
    b"\\\\",
    b"i",
    b"u",
    b"t",
    b"f",
    b"T",
    b"F",
    b"true",
    b"false",
    b"1i",
    b"-1i",
    b"1u",
    b"1.5",
    b"-0.0",
    b"1e308",
    b"1e309",
    b"NaN",
    b"inf",
    b".5",
    b"1.",
    b"9223372036854775807",
    b"-9223372036854775808",
    b"9223372036854775808",
    b"18446744073709551615",
    b"18446744073709551616",
    b"1767225600",
    b"\0",
    b"\t",
    b"\xff",
    b"\xc3\xa9",
    b"\xe2\x82\xac",
    b"cpu,host=a f=1 1\n",
    b"m,t=v f=\"s\"",
    b" 1767225600000000000",
];

/// The decode cases of InfluxData's corpus, each with its precision byte; a sample of
/// them when the budget is short.
fn line_protocol_seeds() -> Vec<Vec<u8>> {
    let path = repo().join("tests/data/line-protocol-corpus/corpus.json");
    let text = std::fs::read_to_string(path).unwrap();
    let corpus: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut seeds = Vec::new();
    for case in corpus["decode"].as_object().unwrap().values() {
        let input = &case["input"];
        let Some(body) = input["text"].as_str() else {
            continue;
        };
        let mode = match input["precision"].as_str() {
            Some("1µs") => 1,
            Some("1ms") => 2,
            Some("1s") => 3,
            Some("1m") => 4,
            Some("1h") => 5,
            _ => 0,
        };
        let mut seed = vec![mode];
        seed.extend_from_slice(body.as_bytes());
        seeds.push(seed);
    }
    if fuzzing::budget().as_secs() < 60 {
        let mut rng = fastrand::Rng::with_seed(7);
        rng.shuffle(&mut seeds);
        seeds.truncate(600);
    }
    // Bodies as clients send them: many lines, CRLF, gzip-sized batches.
    let batch: String = (0..50)
        .map(|i| {
            format!(
                "cpu,host=web{},region=eu usage_user={i}.5,usage_idle=90i,ok=t {}\n",
                i % 5,
                1_767_225_600 + i
            )
        })
        .collect();
    seeds.push([&[3u8][..], batch.as_bytes()].concat());
    seeds.push(b"\x00m,a=1 f=1i 1\r\nm,a=1 s=\"x\\\"y\" 2\r\n# c\r\n\r\n".to_vec());
    seeds
}

#[test]
fn line_protocol() {
    let report = fuzz(Target {
        name: "line_protocol",
        seeds: line_protocol_seeds(),
        dictionary: LINE_PROTOCOL_TOKENS,
        max_len: 16 * 1024,
        run: targets::line_protocol,
    });
    assert_clean("line_protocol", &report);
}

// --- The ingest endpoint's requests ------------------------------------------------

const REQUEST_TOKENS: &[&[u8]] = &[
    b"POST ",
    b"GET ",
    b"PUT ",
    b"/write",
    b"/api/v2/write",
    b"/ping",
    b"/health",
    b"?",
    b"&",
    b"=",
    b"%",
    b"%20",
    b"%ff",
    b"%",
    b"db=factory",
    b"db=",
    b"rp=autogen",
    b"bucket=sensors",
    b"org=acme",
    b"precision=",
    b"precision=ns",
    b"precision=u",
    b"precision=h",
    b"precision=xx",
    b"u=writer",
    b"p=fuzz-password-4567",
    b"\nContent-Encoding: gzip",
    b"\nContent-Encoding: identity",
    b"\nContent-Encoding: br",
    b"\nX-Raw: 1",
    b"\nAuthorization: Token fuzz-token-0123",
    b"\nAuthorization: Basic d3JpdGVyOmZ1enotcGFzc3dvcmQtNDU2Nw==",
    b"\nAuthorization: Basic !!",
    b"\nAuthorization: Token ",
    b"\n\n",
    b"\n",
    b": ",
    b" ",
    b"cpu,host=a f=1 1\n",
    b"m f=1i",
    b"\x1f\x8b\x08\x00",
];

fn request_seeds() -> Vec<Vec<u8>> {
    let body =
        "cpu,host=web1 usage=12.5,ok=t 1767225600\nbad line\nmem,host=web1 free=3u 1767225601\n";
    let mut seeds: Vec<Vec<u8>> = [
        format!("POST /write?db=factory&u=writer&p=fuzz-password-4567&precision=s\n\n{body}"),
        format!("POST /write?db=factory&rp=autogen\nAuthorization: Token fuzz-token-0123\nContent-Encoding: gzip\n\n{body}"),
        format!("POST /api/v2/write?org=acme&bucket=sensors&precision=ms\nAuthorization: Token fuzz-token-0123\n\n{body}"),
        format!("POST /write?db=other&u=writer&p=wrong\n\n{body}"),
        "GET /ping\n\n".to_string(),
        "GET /health\n\n".to_string(),
        "GET /write?db=factory\n\n".to_string(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect();
    // A gzip header and then not gzip.
    let mut raw = b"POST /api/v2/write?bucket=sensors\nAuthorization: Basic d3JpdGVyOmZ1enotcGFzc3dvcmQtNDU2Nw==\nContent-Encoding: gzip\nX-Raw: 1\n\n\x1f\x8b\x08\x00".to_vec();
    raw.extend_from_slice(body.as_bytes());
    seeds.push(raw);
    seeds
}

#[test]
fn ingest_request() {
    let report = fuzz(Target {
        name: "ingest_request",
        seeds: request_seeds(),
        dictionary: REQUEST_TOKENS,
        max_len: 8 * 1024,
        run: targets::ingest_request,
    });
    assert_clean("ingest_request", &report);
}

// --- Job files ---------------------------------------------------------------------

const JOB_TOKENS: &[&[u8]] = &[
    b"\n",
    b"  ",
    b"- ",
    b": ",
    b"#",
    b"\"",
    b"'",
    b"[",
    b"]",
    b"{",
    b"}",
    b",",
    b"~",
    b"null",
    b"&a ",
    b"*a",
    b"<<: *a\n",
    b"!!binary ",
    b"!!str ",
    b"|\n",
    b">-\n",
    b"---\n",
    b"...\n",
    b"${MYSQL_PASSWORD}",
    b"${INFLUX_TOKEN}",
    b"${NOPE}",
    b"${NOPE:-x}",
    b"${EMPTY}",
    b"${EMPTY:-d}",
    b"$${",
    b"${",
    b"}",
    b"$",
    b"%40",
    b"-1",
    b"0",
    b"1",
    b"18446744073709551616",
    b"4294967296",
    b"1e400",
    b"0x10",
    b".inf",
    b".nan",
    b"1s",
    b"0ms",
    b"0s",
    b"1ns",
    b"99999999999999d",
    b"1h30m",
    b"auto",
    b"backfill",
    b"cdc",
    b"backfill+cdc",
    b"backfill+follow",
    b"ingest",
    b"mysql",
    b"influxdb",
    b"iotdb",
    b"timestream",
    b"tdengine",
    b"blackhole",
    b"memory",
    b"unlimited",
    b"exponential",
    b"fixed",
    b"none",
    b"ns",
    b"ms",
    b"s",
    b"u",
    b"h",
    b"file:",
    b"file:./state/x",
    b"mysql://u:p@h:3306/db",
    b"http://u:p@h:8086/?token=abc",
    b"https://h/",
    b"+00:00",
    b"-25:00",
    b"\xc3\xa9",
    b"\t",
    b"\r\n",
    b"\0",
    // Keys of the job file and of every connector's sections.
    b"name:",
    b"mode:",
    b"source:",
    b"sink:",
    b"type:",
    b"mappings:",
    b"checkpoint:",
    b"dead_letter:",
    b"flow:",
    b"verify:",
    b"follow:",
    b"restart:",
    b"ack:",
    b"ack_timeout:",
    b"aligned:",
    b"api:",
    b"append_only:",
    b"attempts:",
    b"batching:",
    b"body_timeout:",
    b"bucket:",
    b"buckets:",
    b"cert:",
    b"chunk_rows:",
    b"chunk_size:",
    b"common_attributes:",
    b"compressor:",
    b"concurrency:",
    b"create:",
    b"create_database:",
    b"database:",
    b"databases:",
    b"deletes:",
    b"device_field:",
    b"encodings:",
    b"endpoint:",
    b"epoch:",
    b"examples:",
    b"fields:",
    b"file:",
    b"gzip:",
    b"header_timeout:",
    b"heartbeat:",
    b"host:",
    b"idle_timeout:",
    b"initial:",
    b"initial_backoff:",
    b"interval:",
    b"key:",
    b"lateness:",
    b"listen:",
    b"locations:",
    b"magnetic_retention:",
    b"max:",
    b"max_backoff:",
    b"max_body_bytes:",
    b"max_body_bytes_in_flight:",
    b"max_connections:",
    b"max_in_flight_rows:",
    b"max_pending_points:",
    b"max_points_per_query:",
    b"max_retries:",
    b"measure_name:",
    b"measurement:",
    b"measurement_dimension:",
    b"measurements:",
    b"memory_retention:",
    b"on_delete:",
    b"on_update:",
    b"org:",
    b"page_rows:",
    b"password:",
    b"path:",
    b"port:",
    b"precision:",
    b"query_timeout:",
    b"rate_limit:",
    b"region:",
    b"reset_after:",
    b"retention_policy:",
    b"retry_after:",
    b"retry_codes:",
    b"secrets:",
    b"server_id:",
    b"sessions:",
    b"split_by:",
    b"store:",
    b"strategy:",
    b"table:",
    b"tables:",
    b"tags:",
    b"target:",
    b"time_unit:",
    b"time_zone:",
    b"timeout:",
    b"timestamp_field:",
    b"timestamp_unit:",
    b"tls:",
    b"token:",
    b"ttl:",
    b"types:",
    b"url:",
    b"user:",
    b"username:",
    b"version:",
    b"window:",
];

fn job_seeds() -> Vec<Vec<u8>> {
    let mut files: Vec<_> = std::fs::read_dir(repo().join("jobs"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut seeds: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert!(seeds.len() >= 5, "the job files in jobs/");
    // Sections the example jobs do not show.
    seeds.push(
        b"name: t\nmode: backfill+follow\nsource:\n  type: memory\nsink:\n  type: memory\nmappings: auto\n\
          flow:\n  epoch: 5ms\n  max_in_flight_rows: 10\nrestart:\n  strategy: fixed\n  initial: 1s\n  max: 2s\n  attempts: unlimited\n\
          follow:\n  interval: 1s\n  lateness: 1m\nverify:\n  bucket: 1h\n  examples: 3\ndead_letter: ./dl.jsonl\n"
            .to_vec(),
    );
    seeds.push(
        b"name: &n anchors\nsource: &s\n  type: ingest\n  listen: 127.0.0.1:8086\n  token: ${INFLUX_TOKEN}\n  ack: durable\nsink:\n  type: blackhole\n\
          checkpoint:\n  store: file:./state/${NOPE:-x}\n"
            .to_vec(),
    );
    seeds
}

#[test]
fn job_file() {
    let report = fuzz(Target {
        name: "job_file",
        seeds: job_seeds(),
        dictionary: JOB_TOKENS,
        max_len: 8 * 1024,
        run: targets::job_file,
    });
    assert_clean("job_file", &report);
}

// --- Binlog row events -------------------------------------------------------------

/// A length-encoded integer, as the binlog writes counts.
fn lenenc(out: &mut Vec<u8>, n: u64) {
    match n {
        0..=250 => out.push(n as u8),
        251..=0xffff => {
            out.push(0xfc);
            out.extend_from_slice(&(n as u16).to_le_bytes());
        }
        _ => {
            out.push(0xfd);
            out.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
        }
    }
}

/// MySQL's binary DECIMAL(precision, scale) of a number given by its digits.
fn decimal_bytes(
    negative: bool,
    int_digits: &str,
    frac_digits: &str,
    precision: usize,
    scale: usize,
) -> Vec<u8> {
    const DIG2BYTES: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];
    let intg = precision - scale;
    let int_digits = format!("{int_digits:0>intg$}");
    let frac_digits = format!("{frac_digits:0<scale$}");
    let mut out = Vec::new();
    let mut put = |digits: &str, bytes: usize| {
        let v: u32 = if digits.is_empty() {
            0
        } else {
            digits.parse().unwrap()
        };
        out.extend_from_slice(&v.to_be_bytes()[4 - bytes..]);
    };
    let lead = intg % 9;
    if lead > 0 {
        put(&int_digits[..lead], DIG2BYTES[lead]);
    }
    for w in 0..intg / 9 {
        put(&int_digits[lead + 9 * w..lead + 9 * w + 9], 4);
    }
    for w in 0..scale / 9 {
        put(&frac_digits[9 * w..9 * w + 9], 4);
    }
    let tail = scale % 9;
    if tail > 0 {
        put(&frac_digits[scale - tail..], DIG2BYTES[tail]);
    }
    if negative {
        for b in &mut out {
            *b = !*b;
        }
    }
    if let Some(first) = out.first_mut() {
        *first ^= 0x80;
    }
    out
}

fn digits(rng: &mut fastrand::Rng, n: usize) -> String {
    (0..n).map(|_| char::from(b'0' + rng.u8(..10))).collect()
}

fn text(rng: &mut fastrand::Rng, max_bytes: usize) -> Vec<u8> {
    const PIECES: [&str; 6] = ["a", "Z", "0", " ", "ü", "€"];
    let mut out = Vec::new();
    let n = rng.usize(..=max_bytes.min(40));
    while out.len() < n {
        let piece = PIECES[rng.usize(..PIECES.len())].as_bytes();
        if out.len() + piece.len() > max_bytes {
            break;
        }
        out.extend_from_slice(piece);
    }
    out
}

/// A length of `width` bytes, little-endian, then `bytes`.
fn prefixed(out: &mut Vec<u8>, width: usize, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes()[..width]);
    out.extend_from_slice(bytes);
}

/// A valid value of `kind` as a row image holds it.
fn value_bytes(rng: &mut fastrand::Rng, kind: &fuzzing::targets::Kind, out: &mut Vec<u8>) {
    let meta = kind.meta;
    let mut random = |n: usize, out: &mut Vec<u8>| out.extend((0..n).map(|_| rng.u8(..)));
    match kind.binlog_type {
        1 if kind.column_type == "tinyint(1)" => out.push(rng.u8(..2)),
        1 | 13 => random(1, out),
        2 => random(2, out),
        9 => random(3, out),
        3 => random(4, out),
        8 => random(8, out),
        4 => out.extend_from_slice(
            &[1.5f32, -0.0, 12.3, f32::MAX, 1e-40][rng.usize(..5)].to_le_bytes(),
        ),
        5 => out.extend_from_slice(
            &[2.25f64, -1e300, 0.1, f64::MIN_POSITIVE][rng.usize(..4)].to_le_bytes(),
        ),
        246 => {
            let (p, s) = (meta[0] as usize, meta[1] as usize);
            let int_len = rng.usize(..=p - s);
            let (i, f) = (digits(rng, int_len), digits(rng, s));
            out.extend_from_slice(&decimal_bytes(rng.bool(), &i, &f, p, s));
        }
        254 if meta[0] == 0xf7 => out.push(rng.u8(..4)),
        254 if meta[0] == 0xf8 => out.push(rng.u8(..8)),
        254 => {
            let max = if meta[0] & 0x30 != 0x30 {
                meta[1] as usize | (((meta[0] as usize & 0x30) ^ 0x30) << 4)
            } else {
                meta[1] as usize
            };
            let t = text(rng, max);
            prefixed(out, if max < 256 { 1 } else { 2 }, &t);
        }
        15 => {
            let max = u16::from_le_bytes([meta[0], meta[1]]) as usize;
            let t = if kind.charset == Some("latin1") {
                (0..rng.usize(..=max.min(20))).map(|_| rng.u8(..)).collect()
            } else {
                text(rng, max)
            };
            prefixed(out, if max < 256 { 1 } else { 2 }, &t);
        }
        252 => {
            let t = text(rng, 300);
            prefixed(out, meta[0] as usize, &t);
        }
        18 => {
            let (year, month, day) = (rng.u64(1000..=9999), rng.u64(1..=12), rng.u64(1..=28));
            let (hour, minute, second) = (rng.u64(..24), rng.u64(..60), rng.u64(..60));
            let ymd = ((year * 13 + month) << 5) | day;
            let hms = (hour << 12) | (minute << 6) | second;
            let int = ((ymd << 17) | hms) + (1 << 39);
            out.extend_from_slice(&int.to_be_bytes()[3..]);
            fraction(rng, meta[0], out);
        }
        17 => {
            out.extend_from_slice(&rng.u32(..).to_be_bytes());
            fraction(rng, meta[0], out);
        }
        14 => {
            let v = (rng.u32(1000..=9999) << 9) | (rng.u32(1..=12) << 5) | rng.u32(1..=28);
            out.extend_from_slice(&v.to_le_bytes()[..3]);
        }
        16 => {
            let bytes = meta[1] as usize + usize::from(meta[0] > 0);
            random(bytes, out);
        }
        19 => {
            let v: u32 = 0x80_0000 + ((rng.u32(..24) << 12) | (rng.u32(..60) << 6) | rng.u32(..60));
            out.extend_from_slice(&v.to_be_bytes()[1..]);
            out.extend_from_slice(&rng.u16(..10000).to_be_bytes());
        }
        245 => {
            let jsonb: Vec<u8> = match rng.u8(..3) {
                0 => vec![0x04, 0x01],
                1 => vec![0x05, rng.u8(..), rng.u8(..)],
                _ => vec![0x0c, 3, b'a', b'b', b'c'],
            };
            prefixed(out, meta[0] as usize, &jsonb);
        }
        other => panic!("no values for binlog type {other}"),
    }
}

/// The fraction of DATETIME2/TIMESTAMP2 with `dec` digits.
fn fraction(rng: &mut fastrand::Rng, dec: u8, out: &mut Vec<u8>) {
    match dec {
        1 | 2 => out.push(rng.u8(..100)),
        3 | 4 => out.extend_from_slice(&rng.u16(..10_000).to_be_bytes()),
        5 | 6 => out.extend_from_slice(&rng.u32(..1_000_000).to_be_bytes()[1..]),
        _ => {}
    }
}

/// A table of random real column types, the job's projection of it, and a rows event of
/// valid values for it, as MySQL (v2 events) or MariaDB (v1) write them.
fn binlog_seed(rng: &mut fastrand::Rng) -> Vec<u8> {
    let n = 1 + rng.usize(..10);
    // Mostly types the lean decoder reads (the first 35), some it leaves to rows().
    let lean = KINDS.iter().position(|k| k.data_type == "year").unwrap();
    let kinds: Vec<u8> = (0..n)
        .map(|_| if rng.u8(..5) == 0 { rng.usize(..KINDS.len()) } else { rng.usize(..lean) } as u8)
        .collect();
    let mut projection: Vec<u8> = (0..n as u8).filter(|_| rng.u8(..4) != 0).collect();
    if projection.is_empty() {
        projection.push(0);
    }
    rng.shuffle(&mut projection);
    let type_index = rng.u8(..6);
    let flags = (type_index << 1) | u8::from(rng.u8(..8) == 0);
    let event_type = targets::ROWS_EVENT_TYPES[type_index as usize];
    let kind = |i: usize| KINDS[kinds[i] as usize];

    let mut table_map = Vec::new();
    table_map.extend_from_slice(&[42, 0, 0, 0, 0, 0, 1, 0]);
    for name in ["factory", "sensor"] {
        table_map.push(name.len() as u8);
        table_map.extend_from_slice(name.as_bytes());
        table_map.push(0);
    }
    lenenc(&mut table_map, n as u64);
    table_map.extend((0..n).map(|i| kind(i).binlog_type));
    let meta: Vec<u8> = (0..n).flat_map(|i| kind(i).meta.iter().copied()).collect();
    lenenc(&mut table_map, meta.len() as u64);
    table_map.extend_from_slice(&meta);
    table_map.extend(std::iter::repeat_n(0xff, n.div_ceil(8)));
    if rng.bool() {
        // binlog_row_metadata=FULL's signedness: one bit per numeric column.
        let numeric = (0..n)
            .filter(|&i| [1, 2, 3, 4, 5, 8, 9, 13, 246].contains(&kind(i).binlog_type))
            .count();
        let mut bits = vec![0u8; numeric.div_ceil(8)];
        let mut j = 0;
        for i in 0..n {
            if [1, 2, 3, 4, 5, 8, 9, 13, 246].contains(&kind(i).binlog_type) {
                if kind(i).column_type.contains("unsigned") {
                    bits[j / 8] |= 0x80 >> (j % 8);
                }
                j += 1;
            }
        }
        table_map.push(1);
        lenenc(&mut table_map, bits.len() as u64);
        table_map.extend_from_slice(&bits);
    }

    let mut rows = Vec::new();
    rows.extend_from_slice(&[42, 0, 0, 0, 0, 0, 1, 0]);
    if event_type >= 30 {
        rows.extend_from_slice(&2u16.to_le_bytes());
    }
    lenenc(&mut rows, n as u64);
    let images = match event_type {
        24 | 31 => 2,
        _ => 1,
    };
    // Mostly full images; sometimes a column left out (binlog_row_image=MINIMAL).
    let mut present = vec![true; n];
    if rng.u8(..10) == 0 {
        present[rng.usize(..n)] = false;
    }
    let bitmap: Vec<u8> = (0..n.div_ceil(8))
        .map(|b| {
            (0..8)
                .filter(|i| b * 8 + i < n && present[b * 8 + i])
                .fold(0u8, |acc, i| acc | (1 << i))
        })
        .collect();
    for _ in 0..images {
        rows.extend_from_slice(&bitmap);
    }
    for _ in 0..1 + rng.usize(..3) {
        for _ in 0..images {
            let columns: Vec<usize> = (0..n).filter(|&i| present[i]).collect();
            let nulls: Vec<bool> = columns.iter().map(|_| rng.u8(..5) == 0).collect();
            let mut bitmap = vec![0u8; columns.len().div_ceil(8)];
            for (j, null) in nulls.iter().enumerate() {
                if *null {
                    bitmap[j / 8] |= 1 << (j % 8);
                }
            }
            rows.extend_from_slice(&bitmap);
            for (j, &i) in columns.iter().enumerate() {
                if !nulls[j] {
                    value_bytes(rng, &kind(i), &mut rows);
                }
            }
        }
    }
    BinlogInput {
        flags,
        kinds,
        projection,
        table_map,
        rows,
    }
    .to_bytes()
}

const BINLOG_TOKENS: &[&[u8]] = &[
    b"\x00",
    b"\xff",
    b"\x80",
    b"\x7f",
    b"\xfb",
    b"\xfc\xff\xff",
    b"\xfd\xff\xff\xff",
    b"\xfe\xff\xff\xff\xff\xff\xff\xff\xff",
    b"\x00\x00\x00\x00\x00",
    b"\xff\xff\xff\xff",
    b"\x80\x00\x00\x00\x00",
    b"\x7f\xff\xff\xff\xff",
    b"\x12",
    b"\x11",
    b"\xf6",
    b"\xfe",
    b"\x0f",
    b"\xfc",
    b"\x0e",
    b"\x41\x1e",
];

#[test]
fn binlog_rows() {
    let mut rng = fastrand::Rng::with_seed(11);
    let seeds = (0..300).map(|_| binlog_seed(&mut rng)).collect();
    let report = fuzz(Target {
        name: "binlog_rows",
        seeds,
        dictionary: BINLOG_TOKENS,
        max_len: 4 * 1024,
        run: targets::binlog_rows,
    });
    assert_clean("binlog_rows", &report);
}

/// The generated events are what the reader reads: every seed decodes, the lean decoder
/// reads most of them and agrees with `rows()` (checked by the target itself).
#[test]
fn binlog_seeds_are_valid_events() {
    let mut rng = fastrand::Rng::with_seed(12);
    let mut lean = 0;
    for _ in 0..500 {
        let seed = binlog_seed(&mut rng);
        let outcomes = targets::binlog_rows(&seed);
        assert!(
            outcomes.iter().any(|o| o.starts_with("decoded")),
            "{outcomes:?} for {}",
            fuzzing::escaped(&seed)
        );
        lean += usize::from(outcomes.iter().any(|o| o.starts_with("decoded (lean)")));
    }
    assert!(lean > 200, "the lean decoder read {lean} of 500");
}

/// `TSMIG_FUZZ_REPLAY=fuzz/corpus/<target>/<file>`: runs that one input through its
/// target with panics printed as usual (`RUST_BACKTRACE=1` for where), to debug a failure
/// the fuzzer saved. Does nothing without it.
#[test]
fn replay() {
    let Some(path) = std::env::var_os("TSMIG_FUZZ_REPLAY") else {
        return;
    };
    let path = std::path::PathBuf::from(path);
    let input = std::fs::read(&path).unwrap();
    let target = path
        .parent()
        .and_then(|d| d.file_name())
        .and_then(|d| d.to_str());
    let run = match target {
        Some("line_protocol") => targets::line_protocol,
        Some("ingest_request") => targets::ingest_request,
        Some("job_file") => targets::job_file,
        Some("binlog_rows") => targets::binlog_rows,
        other => panic!("{other:?} is no target: fuzz/corpus/<target>/<file>"),
    };
    println!("{:#?}", run(&input));
}

/// Job-file lines as YAML counts them (a lone `\r` ends one): the fuzzer's
/// `job_file/crash-6705f1e787412a41` was a count of `\n` only, not the loader.
#[test]
fn job_file_lines_are_yaml_lines() {
    assert_eq!(
        fuzzing::targets::yaml_lines("a\rb\r\nc\nd"),
        ["a", "b", "c", "d"]
    );
    assert_eq!(fuzzing::targets::yaml_lines("a\n"), ["a", ""]);
    let outcomes = targets::job_file(b"name:\rl");
    assert!(
        outcomes[0].starts_with("load: name could not find"),
        "{outcomes:?}"
    );
}
