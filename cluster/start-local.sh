#!/usr/bin/env bash
# Starts a local cluster of P tsmig-job processes on this machine and waits for all of
# them. Every process runs the same job with the same flags and its own --process.
#
#   cluster/start-local.sh [--processes P] [--hostfile FILE] [--bin PATH] -- <tsmig-job args>
#
# e.g.  cluster/start-local.sh --processes 2 -- -c backfill --config jobs/mysql-to-influxdb.yaml --workers 1
#
# Without --hostfile, cluster/hosts.example is used (ports 2101, 2102, ...). Each
# process's log goes to ${TSMIG_CLUSTER_LOGS:-./state/cluster}/process-I.log. The exit
# status is 0 only if every process exited 0 (a timely cluster cannot go on without all
# of its processes, so when one fails the others stop too).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
processes=2
hostfile="$here/hosts.example"
bin="${TSMIG_JOB:-}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --processes) processes="$2"; shift 2 ;;
    --hostfile) hostfile="$2"; shift 2 ;;
    --bin) bin="$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "start-local.sh: unknown option $1 (tsmig-job's own flags go after --)" >&2; exit 2 ;;
  esac
done
if [[ -z "$bin" ]]; then
  bin="$(command -v tsmig-job || true)"
  [[ -n "$bin" ]] || bin="${CARGO_TARGET_DIR:-$here/../target}/release/tsmig-job"
fi
[[ -x "$bin" ]] || { echo "start-local.sh: no tsmig-job at $bin (build it, or pass --bin)" >&2; exit 2; }
logs="${TSMIG_CLUSTER_LOGS:-./state/cluster}"
mkdir -p "$logs"

pids=()
for ((i = 0; i < processes; i++)); do
  "$bin" "$@" --processes "$processes" --process "$i" --hostfile "$hostfile" >"$logs/process-$i.log" 2>&1 &
  pids+=($!)
done
# Stop only the processes started here, and only if we are interrupted.
trap 'kill "${pids[@]}" 2>/dev/null || true' INT TERM

# A cluster cannot go on without all of its processes: when one fails, stop the rest
# (a peer that never connected would otherwise wait for it forever).
status=0
running=("${pids[@]}")
while (( ${#running[@]} > 0 )); do
  finished=""
  if wait -n -p finished "${running[@]}"; then
    :
  else
    status=1
    sleep 3
    kill "${running[@]}" 2>/dev/null || true
  fi
  [[ -n "$finished" ]] || break
  next=()
  for pid in "${running[@]}"; do
    [[ "$pid" == "$finished" ]] || next+=("$pid")
  done
  running=("${next[@]}")
done
for ((i = 0; i < processes; i++)); do
  echo "--- process $i ($logs/process-$i.log)"
  grep -E '^(summary|error):' "$logs/process-$i.log" || tail -n 5 "$logs/process-$i.log"
done
exit "$status"
