#!/usr/bin/env bash
# Load the demo sensor table into the private MariaDB (database `factory`).
#
#   scripts/load-sample.sh [ROWS] [--table NAME]     (default 2000000 rows,
#                                                     table sensor_readings)
#
# The table is dropped and recreated (scripts/sample-table.sql). Rows are
# generated server-side from the SEQUENCE engine, so no row crosses the client
# connection; the data is a pure function of n, which lets tests predict any
# row's values.
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

# The table and its rows: scripts/sample-table.sql (bench/scaling.py reads it too).
sql="$SCRIPT_DIR/sample-table.sql"
[[ -r $sql ]] || die "missing $sql"
{
  printf 'DROP TABLE IF EXISTS `%s`;\n' "$table"
  sed -n '1,/^-- rows$/p' "$sql" | sed "s/@TABLE@/$table/g"
} | mysql_cli "$TSMIG_DB"

for (( lo = 1; lo <= rows; lo += SLICE )); do
  hi=$(( lo + SLICE - 1 < rows ? lo + SLICE - 1 : rows ))
  sed -n '/^-- rows$/,$p' "$sql" | sed "s/@TABLE@/$table/g; s/@LO@/$lo/g; s/@HI@/$hi/g" \
    | mysql_cli "$TSMIG_DB"
  log "$table: rows $lo..$hi loaded"
done

count=$(mysql_cli "$TSMIG_DB" -e "SELECT COUNT(*) FROM \`$table\`")
end_ns=$(date +%s%N)
elapsed=$(( (end_ns - start_ns) / 1000000 ))
printf 'rows=%s table=%s.%s elapsed=%d.%03ds\n' \
  "$count" "$TSMIG_DB" "$table" $((elapsed / 1000)) $((elapsed % 1000))
