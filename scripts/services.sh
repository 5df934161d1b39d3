#!/usr/bin/env bash
# Private MariaDB + InfluxDB 1.6 instances for tsmig development, tests and CI.
#
#   scripts/services.sh start    install (if needed) and start both servers
#   scripts/services.sh stop     stop exactly the servers this script started
#   scripts/services.sh status   show whether each server runs (PID, port)
#   scripts/services.sh env      print `export` lines; use: eval "$(scripts/services.sh env)"
#   scripts/services.sh sql SQL  run SQL as root over the private socket (SQL
#                                may also come on stdin); tab-separated, no header
#
# Data lives under ${TSMIG_SERVICES_DIR:-/tmp/tsmig-services}. The system-wide
# services are never started, stopped or reconfigured.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$SCRIPT_DIR/lib.sh"

PACKAGES=(mariadb-server mariadb-client influxdb curl)
READY_TIMEOUT=60
STOP_TIMEOUT=30

# ---------------------------------------------------------------- install ---

is_installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

has_candidate() {
  local cand
  cand=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')
  [[ -n $cand && $cand != "(none)" ]]
}

POLICY_RC=/usr/sbin/policy-rc.d
CREATED_POLICY_RC=0

remove_policy_rc() {
  # Only remove what we created: containers often ship their own policy-rc.d.
  if (( CREATED_POLICY_RC )); then
    rm -f "$POLICY_RC"
    CREATED_POLICY_RC=0
  fi
}

install_packages() {
  local missing=() p need_update=0
  for p in "${PACKAGES[@]}"; do
    is_installed "$p" || missing+=("$p")
  done
  (( ${#missing[@]} )) || return 0

  # A fresh CI image may have empty apt lists; refresh only when needed since
  # `apt-get update` is slow and needs the network.
  for p in "${missing[@]}"; do
    has_candidate "$p" || need_update=1
  done
  if (( need_update )); then
    log "apt cache lacks some of: ${missing[*]}; running apt-get update"
    apt-get update
  fi

  # Package maintainer scripts would otherwise start the system-wide mysqld /
  # influxd (on the default ports) via invoke-rc.d; exit 101 = "not allowed".
  if [[ ! -e $POLICY_RC ]]; then
    trap remove_policy_rc EXIT
    printf '#!/bin/sh\n# temporary, created by tsmig scripts/services.sh\nexit 101\n' >"$POLICY_RC"
    chmod 755 "$POLICY_RC"
    CREATED_POLICY_RC=1
  fi
  log "installing: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
  remove_policy_rc
  trap - EXIT
}

# ------------------------------------------------------------------ common --

# Prints the last lines of a server log and fails; used on every start error
# so CI output shows the server's own complaint, not just "timed out".
fail_with_log() {
  local msg=$1 logfile=$2
  printf '[tsmig] ERROR: %s\n' "$msg" >&2
  if [[ -f $logfile ]]; then
    printf '[tsmig] ---- last 40 lines of %s ----\n' "$logfile" >&2
    tail -n 40 "$logfile" >&2
    printf '[tsmig] ---- end of log ----\n' >&2
  fi
  exit 1
}

# Something other than our recorded server listening on the port would make
# the new server fail in a confusing way (or, worse, make us talk to a
# foreign server), so refuse early.
port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# wait_ready NAME PID CHECK_FN LOGFILE
wait_ready() {
  local name=$1 pid=$2 check=$3 logfile=$4 deadline=$((SECONDS + READY_TIMEOUT))
  until "$check"; do
    if ! pid_alive "$pid"; then
      fail_with_log "$name (pid $pid) exited during startup" "$logfile"
    fi
    if (( SECONDS >= deadline )); then
      fail_with_log "$name (pid $pid) not ready after ${READY_TIMEOUT}s" "$logfile"
    fi
    sleep 0.5
  done
}

# Launch a server detached from our session so it survives the calling
# shell/CI step. Without job control the background child is not a process
# group leader, so setsid(1) calls setsid() and execs in place instead of
# forking: $! is the server itself. We verify that rather than trust it.
# spawn PIDFILE COMM LOGFILE CMD...
spawn() {
  local pidfile=$1 comm=$2 logfile=$3 pid
  shift 3
  setsid "$@" </dev/null >>"$logfile" 2>&1 &
  pid=$!
  printf '%s\n' "$pid" >"$pidfile"
  # Give exec a moment to replace setsid with the server image.
  local _
  for _ in {1..10}; do
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$comm" ]] && break
    sleep 0.1
  done
  if [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" != "$comm" ]]; then
    fail_with_log "$comm did not start as pid $pid" "$logfile"
  fi
  SPAWNED_PID=$pid
}

# ----------------------------------------------------------------- mariadb --

find_mariadbd() {
  command -v mariadbd 2>/dev/null || { [[ -x /usr/sbin/mariadbd ]] && echo /usr/sbin/mariadbd; } ||
    die "mariadbd not found"
}

init_mariadb_datadir() {
  # global_priv exists only once mariadb-install-db finished its bootstrap.
  [[ -f $MARIADB_DATADIR/mysql/global_priv.frm ]] && return 0
  log "initialising MariaDB datadir $MARIADB_DATADIR"
  mkdir -p "$MARIADB_DATADIR"
  # --no-defaults must come first; it keeps /etc/mysql out of the bootstrap.
  mariadb-install-db --no-defaults --user=root --datadir="$MARIADB_DATADIR" \
    --auth-root-authentication-method=normal --skip-test-db \
    >>"$MARIADB_LOG" 2>&1 ||
    fail_with_log "mariadb-install-db failed" "$MARIADB_LOG"
}

# Idempotent, so it runs on every start: it repairs a datadir created by an
# older version of this script and costs a few milliseconds.
setup_mariadb_accounts() {
  # ALL PRIVILEGES already implies the replication/binlog privileges; they are
  # granted by name too (ALL cannot be combined with others in one GRANT) so
  # the CDC requirement is visible and survives anyone narrowing the ALL.
  local host sql="CREATE DATABASE IF NOT EXISTS \`$TSMIG_DB\`;"
  for host in 127.0.0.1 localhost %; do
    sql+="
CREATE USER IF NOT EXISTS '$TSMIG_USER'@'$host' IDENTIFIED BY '$TSMIG_PASSWORD';
ALTER USER '$TSMIG_USER'@'$host' IDENTIFIED BY '$TSMIG_PASSWORD';
GRANT ALL PRIVILEGES ON *.* TO '$TSMIG_USER'@'$host';
GRANT REPLICATION SLAVE, REPLICATION CLIENT, BINLOG MONITOR, RELOAD ON *.* TO '$TSMIG_USER'@'$host';"
  done
  # The 'normal' bootstrap also creates password-less root accounts reachable
  # over TCP (127.0.0.1, ::1, hostname). Root is meant for the socket only.
  sql+="
DELETE FROM mysql.global_priv WHERE User='root' AND Host <> 'localhost';
DELETE FROM mysql.proxies_priv WHERE User='root' AND Host <> 'localhost';
FLUSH PRIVILEGES;"
  mysql_cli -e "$sql" >/dev/null || fail_with_log "account setup failed" "$MARIADB_LOG"
}

start_mariadb() {
  local pid
  if pid=$(live_pid "$MARIADB_PIDFILE" mariadbd); then
    wait_ready MariaDB "$pid" mariadb_answers "$MARIADB_LOG"
    log "MariaDB already running (pid $pid, port $MARIADB_PORT)"
    setup_mariadb_accounts
    return 0
  fi
  if [[ -e $MARIADB_PIDFILE ]]; then
    log "removing stale $MARIADB_PIDFILE"
    rm -f "$MARIADB_PIDFILE"
  fi
  # A leftover socket file from a crash makes clients hang or mis-report.
  rm -f "$MARIADB_SOCKET"
  port_in_use "$MARIADB_PORT" &&
    die "port $MARIADB_PORT is in use by a process not recorded in $MARIADB_PIDFILE"
  # Unix socket paths are limited to 107 bytes.
  (( ${#MARIADB_SOCKET} < 100 )) || die "socket path too long: $MARIADB_SOCKET (shorten TSMIG_SERVICES_DIR)"

  init_mariadb_datadir
  local mariadbd
  mariadbd=$(find_mariadbd)
  log "starting MariaDB on 127.0.0.1:$MARIADB_PORT"
  # --pid-file points at the same file we write: mariadbd writes the same PID
  # and removes the file itself on clean shutdown.
  spawn "$MARIADB_PIDFILE" mariadbd "$MARIADB_LOG" \
    "$mariadbd" --no-defaults --user=root \
    --datadir="$MARIADB_DATADIR" \
    --socket="$MARIADB_SOCKET" \
    --pid-file="$MARIADB_PIDFILE" \
    --log-error="$MARIADB_LOG" \
    --bind-address=127.0.0.1 --port="$MARIADB_PORT" \
    --server-id=1 \
    --log-bin="$SVC_DIR/mariadb-bin" \
    --binlog-format=ROW --binlog-row-image=FULL \
    --skip-name-resolve \
    --innodb-buffer-pool-size=512M \
    --innodb-flush-log-at-trx-commit=2 \
    --max-connections=200 \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci
  pid=$SPAWNED_PID
  wait_ready MariaDB "$pid" mariadb_answers "$MARIADB_LOG"
  setup_mariadb_accounts
  log "MariaDB ready (pid $pid)"
}

# ---------------------------------------------------------------- influxdb --

write_influx_conf() {
  # Regenerated on every start so edits to this script take effect; the data
  # itself lives in the meta/data/wal dirs and is untouched.
  cat >"$INFLUX_CONF" <<EOF
# Generated by scripts/services.sh; edits are overwritten on start.
reporting-disabled = true
bind-address = "127.0.0.1:$INFLUX_RPC_PORT"

[meta]
  dir = "$INFLUX_HOME/meta"

[data]
  dir = "$INFLUX_HOME/data"
  wal-dir = "$INFLUX_HOME/wal"

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:$INFLUX_HTTP_PORT"
  auth-enabled = false
  log-enabled = false
EOF
}

start_influxdb() {
  local pid
  if pid=$(live_pid "$INFLUX_PIDFILE" influxd); then
    wait_ready InfluxDB "$pid" influx_answers "$INFLUX_LOG"
    log "InfluxDB already running (pid $pid, port $INFLUX_HTTP_PORT)"
    return 0
  fi
  if [[ -e $INFLUX_PIDFILE ]]; then
    log "removing stale $INFLUX_PIDFILE"
    rm -f "$INFLUX_PIDFILE"
  fi
  local port
  for port in "$INFLUX_HTTP_PORT" "$INFLUX_RPC_PORT"; do
    port_in_use "$port" &&
      die "port $port is in use by a process not recorded in $INFLUX_PIDFILE"
  done

  mkdir -p "$INFLUX_HOME/meta" "$INFLUX_HOME/data" "$INFLUX_HOME/wal"
  write_influx_conf
  # influxd lets INFLUXDB_* environment variables override the config file;
  # a stray one in the caller's env would silently move ports or dirs.
  local unset_args=() v
  for v in $(compgen -e); do
    [[ $v == INFLUXDB_* ]] && unset_args+=(-u "$v")
  done
  log "starting InfluxDB on 127.0.0.1:$INFLUX_HTTP_PORT"
  spawn "$INFLUX_PIDFILE" influxd "$INFLUX_LOG" \
    env "${unset_args[@]}" influxd -config "$INFLUX_CONF"
  pid=$SPAWNED_PID
  wait_ready InfluxDB "$pid" influx_answers "$INFLUX_LOG"
  log "InfluxDB ready (pid $pid)"
}

# -------------------------------------------------------------------- stop --

# stop_server NAME PIDFILE COMM
stop_server() {
  local name=$1 pidfile=$2 comm=$3 pid deadline
  if ! pid=$(live_pid "$pidfile" "$comm"); then
    [[ -e $pidfile ]] && log "$name: removing stale $pidfile"
    rm -f "$pidfile"
    log "$name: not running"
    return 0
  fi
  log "$name: stopping pid $pid"
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + STOP_TIMEOUT))
  while pid_alive "$pid" && (( SECONDS < deadline )); do
    sleep 0.5
  done
  if pid_alive "$pid"; then
    log "$name: still alive after ${STOP_TIMEOUT}s, sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
    # KILL cannot be ignored, but the kernel may need a moment to reap.
    while pid_alive "$pid"; do sleep 0.1; done
  fi
  # The exited server stays a zombie until PID 1 reaps it; give that a moment
  # so `ps` right after stop is not misleading (harmless if it takes longer).
  local _
  for _ in {1..30}; do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  rm -f "$pidfile"
  log "$name: stopped"
}

# ------------------------------------------------------------------ status --

status_line() {
  local name=$1 pidfile=$2 comm=$3 port=$4 check=$5 pid state
  if pid=$(live_pid "$pidfile" "$comm"); then
    if "$check"; then state="running"; else state="running (not answering)"; fi
    printf '%-9s %-24s pid=%-8s port=%s\n' "$name" "$state" "$pid" "$port"
  else
    printf '%-9s %-24s pid=%-8s port=%s\n' "$name" "stopped" "-" "$port"
  fi
}

# -------------------------------------------------------------------- main --

usage() {
  sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

cmd=${1:-}
case "$cmd" in
  start)
    install_packages
    mkdir -p "$SVC_DIR"
    start_mariadb
    start_influxdb
    ;;
  stop)
    stop_server InfluxDB "$INFLUX_PIDFILE" influxd
    stop_server MariaDB "$MARIADB_PIDFILE" mariadbd
    ;;
  status)
    status_line MariaDB "$MARIADB_PIDFILE" mariadbd "$MARIADB_PORT" mariadb_answers
    status_line InfluxDB "$INFLUX_PIDFILE" influxd "$INFLUX_HTTP_PORT" influx_answers
    ;;
  env)
    printf 'export TSMIG_MYSQL_URL=%q\n' "mysql://$TSMIG_USER:$TSMIG_PASSWORD@127.0.0.1:$MARIADB_PORT/$TSMIG_DB"
    printf 'export MYSQL_PASSWORD=%q\n' "$TSMIG_PASSWORD"
    printf 'export TSMIG_INFLUX_URL=%q\n' "http://127.0.0.1:$INFLUX_HTTP_PORT"
    printf 'export TSMIG_MARIADB_SOCKET=%q\n' "$MARIADB_SOCKET"
    ;;
  sql)
    require_mariadb
    if (( $# >= 2 )); then
      mysql_cli -e "$2"
    else
      mysql_cli   # SQL from stdin, e.g. scripts/services.sh sql < file.sql
    fi
    ;;
  *)
    usage
    ;;
esac
