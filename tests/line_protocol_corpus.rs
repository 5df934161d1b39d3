//! Conformance: every encode case of InfluxData's line-protocol corpus
//! (`../shared/data/line-protocol-corpus`) through the InfluxDB sink's encoder. The
//! expected text is what InfluxData's reference encoder writes; an expected error must be
//! an error here too.

use tsmig::job::TimeUnit;
use tsmig::model::{Name, Point, Value};
use tsmig::sinks::influxdb::encoding::{encode_point, Encoding};

fn corpus() -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/line-protocol-corpus/corpus.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("the corpus must be at {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn value(v: &serde_json::Value) -> Option<Value> {
    let (kind, x) = v.as_object()?.iter().next()?;
    Some(match kind.as_str() {
        "int" => Value::Int(x.as_i64()?),
        "uint" => Value::UInt(x.as_u64()?),
        "float" => Value::Float(x.as_f64()?),
        "bool" => Value::Bool(x.as_bool()?),
        "string" => Value::String(x.as_str()?.to_string()),
        _ => return None,
    })
}

#[test]
fn encoder_agrees_with_the_reference_on_every_encode_case() {
    let corpus = corpus();
    let cases = corpus["encode"].as_object().unwrap();
    assert!(
        cases.len() >= 100,
        "the corpus has {} encode cases",
        cases.len()
    );
    let enc = Encoding {
        precision: TimeUnit::Nanos,
        unsigned: true,
    };
    let mut failures = Vec::new();
    for (key, case) in cases {
        let p = &case["input"]["point"];
        assert_eq!(case["input"]["precision"], "1ns", "{key}");
        let name = |v: &serde_json::Value| -> Name { Name::from(v.as_str().unwrap()) };
        let point = Point {
            measurement: name(&p["name"]),
            tags: p["tags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| (name(&t["key"]), t["value"].as_str().unwrap().to_string()))
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
