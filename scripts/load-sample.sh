#!/usr/bin/env bash
# Load the demo sensor table into the private MariaDB (database `factory`).
#
#   scripts/load-sample.sh [ROWS] [--table NAME]     (default 2000000 rows,
#                                                     table sensor_readings)
#
# The table is dropped and recreated. Rows are generated server-side from the
# SEQUENCE engine, so no row crosses the client connection; the data is a
# pure function of n, which lets tests predict any row's values.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$SCRIPT_DIR/lib.sh"

# Bounded slices keep each transaction (undo log, binlog event group) small;
# one 2M-row INSERT would hold a huge transaction and binlog cache.
SLICE=500000

rows=2000000
table=sensor_readings
while (( $# )); do
  case "$1" in
    --table) (( $# >= 2 )) || die "--table needs a NAME"; table=$2; shift 2 ;;
    --table=*) table=${1#--table=}; shift ;;
    -h|--help) sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) rows=$1; shift ;;
  esac
done
# Both values are pasted into SQL, so accept only safe shapes.
[[ $rows =~ ^[1-9][0-9]*$ ]] || die "ROWS must be a positive integer, got '$rows'"
[[ $table =~ ^[A-Za-z_][A-Za-z0-9_]{0,63}$ ]] || die "invalid table name '$table'"

require_mariadb

start_ns=$(date +%s%N)

mysql_cli "$TSMIG_DB" <<SQL
DROP TABLE IF EXISTS \`$table\`;
CREATE TABLE \`$table\` (
  id BIGINT NOT NULL PRIMARY KEY,
  device_id VARCHAR(64) NOT NULL,
  site VARCHAR(32) NOT NULL,
  ts DATETIME(3) NOT NULL,
  temperature DOUBLE NULL,
  humidity FLOAT NULL,
  pressure DECIMAL(8,2) NULL,
  status TINYINT NULL,
  KEY device_ts (device_id, ts)
) ENGINE=InnoDB;
SQL

# Device = n MOD 1000 and second = n DIV 1000, so every device reports once
# per second and (device_id, ts) is unique.
for (( lo = 1; lo <= rows; lo += SLICE )); do
  hi=$(( lo + SLICE - 1 < rows ? lo + SLICE - 1 : rows ))
  mysql_cli "$TSMIG_DB" <<SQL
INSERT INTO \`$table\`
  (id, device_id, site, ts, temperature, humidity, pressure, status)
SELECT
  seq,
  CONCAT('dev-', LPAD(seq MOD 1000, 4, '0')),
  CONCAT('site-', (seq MOD 1000) MOD 7),
  TIMESTAMPADD(SECOND, seq DIV 1000, '2026-01-01 00:00:00'),
  ROUND(20 + 5 * SIN(seq / 1000.0) + (seq MOD 13) / 10.0, 3),
  IF(seq MOD 97 = 0, NULL, 40 + (seq MOD 50)),
  1000 + (seq MOD 300) / 10,
  seq MOD 4
FROM seq_${lo}_to_${hi};
SQL
  log "$table: rows $lo..$hi loaded"
done

count=$(mysql_cli "$TSMIG_DB" -e "SELECT COUNT(*) FROM \`$table\`")
end_ns=$(date +%s%N)
elapsed=$(( (end_ns - start_ns) / 1000000 ))
printf 'rows=%s table=%s.%s elapsed=%d.%03ds\n' \
  "$count" "$TSMIG_DB" "$table" $((elapsed / 1000)) $((elapsed % 1000))
