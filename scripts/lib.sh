# shellcheck shell=bash disable=SC2034  # settings are used by the sourcing scripts
# Shared settings and helpers for scripts/services.sh and scripts/load-sample.sh.
# Sourced, never executed: it only defines variables and functions.

# Everything private lives under one directory so that tests, the demo and CI
# never touch (or depend on) the system-wide MariaDB/InfluxDB installations.
TSMIG_SERVICES_DIR="${TSMIG_SERVICES_DIR:-/tmp/tsmig-services}"
# Servers resolve relative paths against their own cwd, not ours: pin it down.
case "$TSMIG_SERVICES_DIR" in
  /*) ;;
  *) TSMIG_SERVICES_DIR="$PWD/$TSMIG_SERVICES_DIR" ;;
esac
SVC_DIR="$TSMIG_SERVICES_DIR"

# Non-default ports so the private servers can coexist with system ones.
MARIADB_PORT=13306
INFLUX_HTTP_PORT=18086
INFLUX_RPC_PORT=18088

MARIADB_DATADIR="$SVC_DIR/mariadb-data"
MARIADB_SOCKET="$SVC_DIR/mariadb.sock"
MARIADB_PIDFILE="$SVC_DIR/mariadb.pid"
MARIADB_LOG="$SVC_DIR/mariadb.log"

INFLUX_HOME="$SVC_DIR/influxdb"
INFLUX_CONF="$SVC_DIR/influxdb.conf"
INFLUX_PIDFILE="$SVC_DIR/influxdb.pid"
INFLUX_LOG="$SVC_DIR/influxdb.log"

TSMIG_DB=factory
TSMIG_USER=tsmig
TSMIG_PASSWORD=tsmig

log() { printf '[tsmig] %s\n' "$*" >&2; }
die() { printf '[tsmig] ERROR: %s\n' "$*" >&2; exit 1; }

# Root over the private socket only. --no-defaults keeps /etc/mysql/*.cnf
# (which points at the system socket) out of the picture. --batch gives
# tab-separated output that tests can parse without a table-drawing layer.
mysql_cli() {
  mariadb --no-defaults --socket="$MARIADB_SOCKET" --user=root \
    --batch --skip-column-names "$@"
}

# kill -0 also succeeds for zombies, and in containers whose PID 1 does not
# reap orphans a killed server can stay a zombie indefinitely; a zombie must
# count as gone or start/stop would wait for it forever.
pid_alive() {
  local state
  kill -0 "$1" 2>/dev/null || return 1
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $state && $state != Z && $state != X ]]
}

# Prints the PID from a pid file if that process is alive AND is the program
# we expect. Checking the name guards against PID reuse after a crash: we
# must never signal an unrelated process just because it inherited the number.
live_pid() {
  local pidfile=$1 expected_comm=$2 pid
  [[ -s $pidfile ]] || return 1
  pid=$(tr -dc '0-9' <"$pidfile")
  [[ -n $pid ]] || return 1
  pid_alive "$pid" || return 1
  [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$expected_comm" ]] || return 1
  printf '%s\n' "$pid"
}

mariadb_answers() {
  mariadb-admin --no-defaults --socket="$MARIADB_SOCKET" --user=root \
    --connect-timeout=2 ping >/dev/null 2>&1
}

influx_answers() {
  # /ping answers 204 No Content once the HTTP service is up.
  [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 \
        "http://127.0.0.1:$INFLUX_HTTP_PORT/ping" 2>/dev/null)" == 204 ]]
}

require_mariadb() {
  if ! live_pid "$MARIADB_PIDFILE" mariadbd >/dev/null || ! mariadb_answers; then
    die "private MariaDB is not running (socket $MARIADB_SOCKET); run scripts/services.sh start"
  fi
}
