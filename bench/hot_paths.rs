//! Micro-benchmarks of the per-row hot paths, so a change to one shows its cost:
//! MySQL row → point (mapping), point → line protocol (encoding), and the exchange's
//! routing hash. Run with `cargo bench --bench hot_paths`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;
use std::path::Path;
use tsmig::connectors::influxdb::encoding::{encode_point, Encoding};
use tsmig::connectors::ingest::parse::{parse_body, Precision};
use tsmig::job::{Job, TimeUnit};
use tsmig::mapping::Mappings;
use tsmig::model::{device_hash, Name, Point, Row, Value};
use tsmig::source::{Column, ColumnKind, TableSchema};

const JOB: &str = r#"name: bench
source:
  type: mysql
  url: mysql://u@127.0.0.1/factory
  tables:
    - name: sensor_readings
sink:
  type: blackhole
mappings:
  - table: sensor_readings
    measurement: sensors
    device_field: device_id
    timestamp_field: ts
    tags: [site]
    fields: [temperature, humidity, pressure, status]
"#;

fn schema() -> Vec<TableSchema> {
    let col = |name: &str, kind: ColumnKind| Column {
        name: name.into(),
        kind,
        source_type: String::new(),
    };
    vec![TableSchema {
        name: "sensor_readings".into(),
        columns: vec![
            col("id", ColumnKind::Int),
            col("device_id", ColumnKind::Text),
            col("site", ColumnKind::Text),
            col("ts", ColumnKind::Time),
            col("temperature", ColumnKind::Float),
            col("humidity", ColumnKind::Float),
            col("pressure", ColumnKind::Float),
            col("status", ColumnKind::Int),
        ],
    }]
}

/// A row in the projection order the mapping asks for: device_id, ts, site, fields.
fn row(n: i64) -> Row {
    Row {
        table: 0,
        values: vec![
            Some(Value::String(format!("dev-{:04}", n % 1000).into())),
            Some(Value::Time(1_767_225_600_000_000_000 + n * 1_000_000)),
            Some(Value::String(format!("site-{}", n % 7).into())),
            Some(Value::Float(20.0 + (n % 100) as f64 / 7.0)),
            Some(Value::Decimal(Name::from("45"))),
            Some(Value::Decimal(Name::from("1012.30"))),
            Some(Value::Int(n % 4)),
        ],
    }
}

fn point(n: i64) -> Point {
    let mappings = mappings();
    let mut out = None;
    mappings.apply(row(n), &mut |p| out = Some(p), &mut |r| panic!("{r:?}"));
    out.unwrap()
}

fn mappings() -> Mappings {
    let job = Job::parse(Path::new("bench.yaml"), JOB, |_| None).unwrap();
    Mappings::compile(&job, &schema()).unwrap()
}

fn hot_paths(c: &mut Criterion) {
    let mappings = mappings();
    let mut group = c.benchmark_group("per_row");
    group.throughput(Throughput::Elements(1));

    group.bench_function("map_row_to_point", |b| {
        b.iter_batched(
            || row(42),
            |r| {
                let mut sink = None;
                mappings.apply(r, &mut |p| sink = Some(p), &mut |_| unreachable!());
                black_box(sink)
            },
            BatchSize::SmallInput,
        )
    });

    let p = point(42);
    let encoding = Encoding {
        precision: TimeUnit::Millis,
        unsigned: false,
    };
    let mut buffer = Vec::with_capacity(1 << 20);
    group.bench_function("encode_line_protocol", |b| {
        b.iter(|| {
            if buffer.len() > (1 << 20) - 256 {
                buffer.clear();
            }
            encode_point(&mut buffer, black_box(&p), encoding).unwrap();
        })
    });

    group.bench_function("route_by_device", |b| {
        b.iter(|| device_hash(black_box(b"dev-0042")))
    });
    group.finish();

    // The ingest endpoint's parsing, per line of a 5,000-line request body like the one
    // bench/ingest.py sends: InfluxData's parser alone, and the whole of `parse_body`
    // (the parser, the checks around it, the points and their series hash).
    let body = ingest_body(5_000);
    let mut group = c.benchmark_group("per_ingested_line");
    group.throughput(Throughput::Elements(5_000));
    group.bench_function("influxdb_line_protocol_parse_lines", |b| {
        b.iter(|| {
            let text = std::str::from_utf8(black_box(&body)).unwrap();
            influxdb_line_protocol::parse_lines(text)
                .filter(|l| l.is_ok())
                .count()
        })
    });
    group.bench_function("parse_body", |b| {
        b.iter(|| {
            parse_body(black_box(&body), Precision::Nanos, 0)
                .points
                .len()
        })
    });
    group.finish();
}

/// `lines` sensor-like lines as bench/ingest.py makes them (2 tags, 4 to 6 fields).
fn ingest_body(lines: usize) -> Vec<u8> {
    let mut body = String::new();
    for i in 0..lines {
        let d = i % 1000;
        body.push_str(&format!(
            "sensors,device=dev-{d:04},site=site-{} temperature={},humidity={}.5,pressure={},status={}i",
            d % 7,
            20.0 + (i % 97) as f64 / 8.0,
            40 + i % 50,
            1000.0 + (i % 300) as f64 / 10.0,
            i % 4
        ));
        if i % 3 >= 1 {
            body.push_str(&format!(",battery={}i", i % 101));
        }
        if i % 3 == 2 {
            body.push_str(if i % 2 == 1 {
                ",online=true"
            } else {
                ",online=false"
            });
        }
        body.push_str(&format!(
            " {}\n",
            1_767_225_600_000_000_000i64 + (i / 1000) as i64 * 1_000_000_000
        ));
    }
    body.into_bytes()
}

criterion_group!(benches, hot_paths);
criterion_main!(benches);
