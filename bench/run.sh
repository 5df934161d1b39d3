#!/usr/bin/env bash
# The benchmarks: tsmig against the physical ceilings and a Flink baseline, side by side in
# one run on the same data and servers, then the CDC benchmarks. See BENCHMARKS.md.
#
#   bench/run.sh            full run: the backfill benchmark (2,000,000 rows, 3 interleaved
#                           repetitions) and the CDC benchmarks (1,000,000-change catch-up,
#                           30 s of lag at 20,000 changes/s); writes BENCHMARKS.md
#   bench/run.sh --smoke    tiny data, one repetition, debug build, no BENCHMARKS.md (part of scripts/test.sh)
#   bench/run.sh --cdc [OPTIONS]   only the CDC benchmarks (bench/cdc.py --help)
#   bench/run.sh --ingest [OPTIONS]   only the ingest endpoint into the blackhole (bench/ingest.py --help)
#   bench/run.sh --iotdb [--rows N] [--reps N] [--baseline BIN]
#                           only the IoTDB sink into the IoTDB stand-in (200,000 rows, 3
#                           repetitions; BIN, a tsmig-job built before a change, runs beside
#                           this build); writes its section of BENCHMARKS.md
#
# Options of the backfill benchmark: --rows N, --reps N, --no-flink, --only NAMES,
# --binary BIN (measure BIN, build nothing), --baseline BIN (each tsmig-* configuration also
# run by BIN, interleaved, as baseline-*; for before/after figures; writes no BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/services.sh start >&2
eval "$(scripts/services.sh env)"
command -v /usr/bin/time >/dev/null 2>&1 || {
  echo "bench: installing GNU time" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends time >&2
}
if [[ ${1:-} == --cdc ]]; then
  shift
  exec python3 bench/cdc.py "$@"
fi
if [[ ${1:-} == --ingest ]]; then
  shift
  exec python3 bench/ingest.py "$@"
fi
python3 bench/harness.py "$@"
# The CDC benchmarks follow a plain full or smoke run (not one narrowed by --rows/--only).
cdc=(python3 bench/cdc.py)
for arg in "$@"; do
  case "$arg" in
    --smoke) cdc+=(--smoke) ;;
    --no-flink) ;;
    *) exit 0 ;;
  esac
done
if [[ " ${cdc[*]} " == *" --smoke "* ]]; then
  python3 bench/harness.py --iotdb --smoke
fi
exec "${cdc[@]}"
