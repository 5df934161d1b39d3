#!/usr/bin/env bash
# The benchmark: tsmig against the physical ceilings and a Flink baseline, side by side in
# one run on the same data and servers. See BENCHMARKS.md for what it measures.
#
#   bench/run.sh            full run: 2,000,000 rows, 3 interleaved repetitions, writes BENCHMARKS.md
#   bench/run.sh --smoke    tiny data, one repetition, debug build, no BENCHMARKS.md (part of scripts/test.sh)
#
# Options: --rows N, --reps N, --no-flink, --out FILE.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/services.sh start >&2
eval "$(scripts/services.sh env)"
command -v /usr/bin/time >/dev/null 2>&1 || {
  echo "bench: installing GNU time" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends time >&2
}
exec python3 bench/harness.py "$@"
