//! Conformance with InfluxData's line-protocol corpus (`tests/data/line-protocol-corpus`,
//! MIT, vendored so the tests need nothing outside the repository):
//!
//! - every encode case through the InfluxDB sink's encoder: the expected text is what
//!   InfluxData's reference encoder writes; an expected error must be an error here too;
//! - every decode case through the ingest endpoint's parser ([`parse_body`], exactly what
//!   the server runs): the expected points (tags compared sorted, times in ns), or an
//!   error — any rejected line. At least 99% must agree, and every case that differs must
//!   be one of the deliberate differences listed below with its reason.

use base64::Engine;
use std::collections::BTreeMap;
use tsmig::connectors::influxdb::encoding::{encode_point, Encoding};
use tsmig::connectors::ingest::parse::{parse_body, Precision};
use tsmig::job::TimeUnit;
use tsmig::model::{Name, Point, Value};

fn corpus() -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/line-protocol-corpus/corpus.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("the corpus must be at {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The corpus's `kind` cases (`encode` or `decode`): at least `at_least` of them.
fn cases(kind: &str, at_least: usize) -> serde_json::Map<String, serde_json::Value> {
    let Some(serde_json::Value::Object(cases)) = corpus().get_mut(kind).map(|c| c.take()) else {
        panic!("the corpus has no {kind} cases");
    };
    assert!(
        cases.len() >= at_least,
        "the corpus has {} {kind} cases",
        cases.len()
    );
    cases
}

fn value(v: &serde_json::Value) -> Option<Value> {
    let (kind, x) = v.as_object()?.iter().next()?;
    Some(match kind.as_str() {
        "int" => Value::Int(x.as_i64()?),
        "uint" => Value::UInt(x.as_u64()?),
        "float" => Value::Float(x.as_f64()?),
        "bool" => Value::Bool(x.as_bool()?),
        "string" => Value::String(x.as_str()?.into()),
        _ => return None,
    })
}

#[test]
fn encoder_agrees_with_the_reference_on_every_encode_case() {
    let cases = cases("encode", 100);
    let enc = Encoding {
        precision: TimeUnit::Nanos,
        unsigned: true,
    };
    let mut failures = Vec::new();
    for (key, case) in &cases {
        let p = &case["input"]["point"];
        assert_eq!(case["input"]["precision"], "1ns", "{key}");
        let name = |v: &serde_json::Value| -> Name { Name::from(v.as_str().unwrap()) };
        let point = Point {
            measurement: name(&p["name"]),
            tags: p["tags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| (name(&t["key"]), t["value"].as_str().unwrap().into()))
                .collect(),
            fields: p["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| {
                    (
                        name(&f["key"]),
                        value(&f["value"]).expect("a field value kind"),
                    )
                })
                .collect(),
            time: p["time"].as_i64().unwrap(),
            device_hash: 0,
        };
        let mut out = Vec::new();
        let got = encode_point(&mut out, &point, enc);
        let expected = &case["output"];
        match (got, expected.get("result").and_then(|r| r.as_str())) {
            (Ok(()), Some(text)) => {
                let line = String::from_utf8(out).unwrap();
                if line != format!("{text}\n") {
                    failures.push(format!("{key}: wrote {line:?}, expected {text:?}"));
                }
            }
            (Err(_), None) => {}
            (Ok(()), None) => failures.push(format!(
                "{key}: wrote {:?}, expected the error {}",
                String::from_utf8_lossy(&out),
                expected["error"]
            )),
            (Err(e), Some(text)) => {
                failures.push(format!("{key}: refused ({e}), expected {text:?}"))
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Decode cases where the ingest endpoint deliberately differs from the Go reference
/// decoder, by reason. The README's "Ingest endpoint" section lists the same reasons.
const DELIBERATE_DIFFERENCES: &[(&str, &[&str])] = &[
    (
        // `\\` in a measurement, tag key, tag value or field key is one backslash, as
        // InfluxDB's line-protocol reference says ("`\\` is interpreted as `\`") and
        // InfluxData's Rust parser (the crate the endpoint uses) does; the Go decoder keeps
        // both backslashes, or reads a name ending in `\\` as escaping what follows.
        "a double backslash in a name is one backslash",
        &[
            "1a59bc6d85d51b80ba86085a625a6423", // cpu,regions=\\ east value=1.0
            "2fff245fc564b6eaadbb607d49b71f7b", // u,s=\\,\,\t e=1
            "3464e9a254491832c25381f8ede74a33", // cpu,regions=east\\  value=1.0
            "40f7f7ab020c18e8a63082bef4f76913", // cpu,host=two\\\ words value=42
            "432c470eca90d15a6e299690a4d3573b", // cpu,regions=eas\\ t value=1.0
            "5475844841f3e74d1a9dd7fb8edbe21c", // cpu,host=two\\\ words value=42
            "5e08e5f5a9619377e83313100db125e4", // u,s=\\,\,\=ast e=1
            "6ff42530fe6ad82d7ed609bf99a9d484", // u \e\\\ =4
            "8b8a7c4cc0ae2473efb5208a59022f17", // cpu,regions=east\\  value=1.0
            "8e68e2d04493b98acd3e0815559a60e7", // cpu,reg\\=ion=east value=1.0
            "933321120784d3ad72a6d33e35d6f04c", // cpu,regions=\\,\,\=east value=1.0
            "963a96bfb9995ecef855259b88d68a96", // cpu,reg\\=ion=east value=1.0
            "9d0006422e4183cd9ccbebda013af3da", // cpu,regions=\\ east value=1.0
            "d169ad0e971f127ad2e5b4c8c0b1de3c", // u,t=\\\  e=4
            "d1955fe5a9a1f0e11ece309eff8f2c74", // cpu,regions=eas\\ t value=1.0
            "d1c784f8a98a165cf299875ee4b951a2", // u,\\n=t e=1
            "e59e8a621a64d338570a536f0d4b9aa5", // u,t0=\\",t=k e=1
            "efbb7158d7c6ad7633a178693a1b1208", // cpu,regions=\\,\,\=east value=1.0
            "f08107767917985bb91f29d9e1348d74", // u,s=t\\  e=1.
            "f2b44af65e5dafd12be0d5a09c894fb5", // cpu,host=two\\ words value=42
            "ff9b943052a5cb5c92aba7459bce8a09", // cpu,host=two\\ words value=42
        ],
    ),
    (
        // The crate wants a digit on both sides of a decimal point. No InfluxDB client or
        // Telegraf writes these forms; such a line is rejected and dead-lettered, not lost.
        "a float without a digit before or after its point (`1.`, `.1`) is refused",
        &[
            "16f42a27b1032ab9ffa616e9de6edf2f", // u e=-0.
            "1b3fae55167fc73c30beb1051bb6e626", // pu,st=r,i=ea vu=1.,s="fo",tr="r"
            "2f7b129871b38dc2e9f0665a62c6236d", // cpu value=1. 1000000000
            "42ec9c2f57217b01f3949f50412da9b6", // u e=.0 946730096
            "5b1e7707310d809ec230cfa4635bf2ef", // cpu,host=serverA,region=us-west value=.1
            "9623c43476874ceda1072eb012edf050", // cpu value=1. 1000000000
            "aaca4c073c8253b814eab8828f2265cc", // u e=.0E4
            "b82f5f2038219326edc09c4d7a2c7c9a", // cpu,host=serverA,region=us-west value=.1
            "d805d5d4c2f80359e8efb7c39e302a91", // "cpu",host=serverA,region=us-east value=1. 1000000000
            "e8d647d71492cf873110d2b1220a6a4b", // u e=.0 1257894000000000000
            "fce464141d4c4e5c6cab2ce0e751727a", // u,t=A,n=t e=-0000000262...368.
        ],
    ),
    (
        // The crate accepts and ignores one comma after the last field; the fields before
        // it are complete, so the point is the one the writer meant.
        "a trailing comma after the last field is ignored",
        &[
            "45680314c2e02b7bf387ab585dba38a0", // u 2="",
            "90b00c3394d3fb188003f1e51e1c99ef", // E 5=2e-326,
        ],
    ),
    (
        // A comment line is skipped whole, whatever characters it holds.
        "control characters in a comment line are not checked",
        &["dfa6432a639651d02910c4527badb15c"],
    ),
];

/// The reason a decode case differs on purpose, if it is listed.
fn deliberate(key: &str) -> Option<&'static str> {
    DELIBERATE_DIFFERENCES
        .iter()
        .find(|(_, keys)| keys.contains(&key))
        .map(|(reason, _)| *reason)
}

fn precision(name: &str) -> Precision {
    match name {
        "1ns" => Precision::Nanos,
        "1µs" => Precision::Micros,
        "1ms" => Precision::Millis,
        "1s" => Precision::Seconds,
        "1m" => Precision::Minutes,
        "1h" => Precision::Hours,
        other => panic!("the corpus names an unknown precision {other}"),
    }
}

/// A point as the corpus writes one: (time, name, sorted tags, fields in order).
type Expected = (i64, String, Vec<(String, String)>, Vec<(String, Value)>);

fn expected_point(p: &serde_json::Value) -> Expected {
    let text = |v: &serde_json::Value| v.as_str().unwrap().to_string();
    let mut tags: Vec<(String, String)> = p["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (text(&t["key"]), text(&t["value"])))
        .collect();
    tags.sort();
    let fields = p["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                text(&f["key"]),
                value(&f["value"]).expect("a field value kind"),
            )
        })
        .collect();
    (p["time"].as_i64().unwrap(), text(&p["name"]), tags, fields)
}

fn got_point(p: &Point) -> Expected {
    (
        p.time,
        p.measurement.to_string(),
        p.tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        p.fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    )
}

/// How one decode case went: `None` when it agrees with the reference.
fn decode_case(case: &serde_json::Value) -> Option<String> {
    let input = &case["input"];
    let body: Vec<u8> = match &input["text"] {
        serde_json::Value::String(text) => text.as_bytes().to_vec(),
        other => base64::engine::general_purpose::STANDARD
            .decode(other["binary"].as_str().expect("text or binary"))
            .unwrap(),
    };
    let parsed = parse_body(
        &body,
        precision(input["precision"].as_str().unwrap()),
        input["defaultTime"].as_i64().unwrap(),
    );
    let output = &case["output"];
    let Some(expected) = output.get("result") else {
        return parsed.rejected.is_empty().then(|| {
            format!(
                "accepted {:?}, expected the error {}",
                parsed.points.iter().map(got_point).collect::<Vec<_>>(),
                output["error"]
            )
        });
    };
    if !parsed.rejected.is_empty() {
        return Some(format!("rejected {:?}", parsed.rejected));
    }
    let expected: Vec<Expected> = expected
        .as_array()
        .unwrap()
        .iter()
        .map(expected_point)
        .collect();
    let got: Vec<Expected> = parsed.points.iter().map(got_point).collect();
    (got != expected).then(|| format!("decoded {got:?}, expected {expected:?}"))
}

#[test]
fn ingest_parser_agrees_with_the_reference_on_the_decode_cases() {
    let cases = cases("decode", 6000);
    let mut unlisted = Vec::new();
    let mut by_reason: BTreeMap<&str, usize> = BTreeMap::new();
    let mut differing = 0;
    for (key, case) in &cases {
        let Some(difference) = decode_case(case) else {
            continue;
        };
        differing += 1;
        match deliberate(key) {
            Some(reason) => *by_reason.entry(reason).or_default() += 1,
            None => unlisted.push(format!("{key} {:?}: {difference}", case["input"]["text"])),
        }
    }
    let listed: usize = DELIBERATE_DIFFERENCES.iter().map(|(_, k)| k.len()).sum();
    let agreement = 1.0 - differing as f64 / cases.len() as f64;
    println!(
        "{} decode cases, {differing} differ ({:.2}% agree): {by_reason:?}",
        cases.len(),
        agreement * 100.0
    );
    assert!(
        unlisted.is_empty(),
        "{} decode cases differ from the reference and are not listed as deliberate:\n{}",
        unlisted.len(),
        unlisted.join("\n")
    );
    assert_eq!(
        differing, listed,
        "a listed deliberate difference agrees now: take it off the list"
    );
    assert!(agreement >= 0.99, "only {:.2}% agree", agreement * 100.0);
}
