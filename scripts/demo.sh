#!/usr/bin/env bash
# The demo: two million sensor rows from a real MariaDB into a real InfluxDB 1.x, on two
# timely workers, then a count check. Installs and starts the private servers if needed
# (scripts/services.sh), loads the sample table, builds tsmig-job in release mode and runs
# jobs/mysql-to-influxdb.yaml. ROWS=... changes the table size (default 2,000,000).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rows="${ROWS:-2000000}"

scripts/services.sh start
eval "$(scripts/services.sh env)"
scripts/load-sample.sh "$rows"
cargo build --release --bin tsmig-job
bin="${CARGO_TARGET_DIR:-target}/release/tsmig-job"

# A demo starts from nothing: an empty target database and no recorded progress.
curl -sf -XPOST "$TSMIG_INFLUX_URL/query" --data-urlencode 'q=DROP DATABASE factory' >/dev/null
"$bin" plan --config jobs/mysql-to-influxdb.yaml | head -n 4
"$bin" -c backfill --config jobs/mysql-to-influxdb.yaml --workers 2 --fresh

source_rows=$(scripts/services.sh sql "SELECT COUNT(*) FROM factory.sensor_readings")
target_points=$(curl -sf -G "$TSMIG_INFLUX_URL/query" --data-urlencode db=factory \
  --data-urlencode 'q=SELECT count(temperature) FROM sensors' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["results"][0]["series"][0]["values"][0][1])')
echo "count check: MariaDB factory.sensor_readings=$source_rows InfluxDB factory.sensors=$target_points"
if [[ "$source_rows" != "$target_points" ]]; then
  echo "count check FAILED" >&2
  exit 1
fi
echo "count check OK"
