#!/usr/bin/env bash
# The scaling run: how throughput and CPU per row grow with worker threads, backfill
# (MariaDB → blackhole) and ingest endpoint (→ blackhole). See BENCHMARKS.md, "Scaling".
#
#   bench/scaling.sh kit [DIR] [--binary BIN] [--archive]
#        (network, apt) puts into DIR (default bench/kit/, ignored) a release tsmig-job
#        (BIN, else `cargo build --release`), mariadbd and the mariadb client with their
#        libraries unpacked from Debian's packages, the job files and the run's script;
#        --archive also packs DIR.tar.xz for a machine without the repository
#   bench/scaling.sh run [--workers 1,2,4,8,16] [--rows N] [--points N] [--reps N] [--kit DIR|DIR.tar.xz]
#        (no network, no apt, no root) from the kit alone: a private MariaDB on a free port
#        in a temp dir, the sensor table, tsmig-job at each worker count; prints the table
#        and writes bench/out/scaling-<time>.{md,json}
#   bench/scaling.sh run --smoke
#        20,000 rows, workers 1,2, one repetition, nothing written (scripts/test.sh)
#
# Needs bash and python3 (≥ 3.9) on the machine that runs it; `bench/scaling.py run -h`
# lists every option. From an unpacked kit: DIR/scaling.sh run ...
set -euo pipefail
exec python3 "$(dirname "${BASH_SOURCE[0]}")/scaling.py" "$@"
