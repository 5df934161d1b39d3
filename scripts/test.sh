#!/usr/bin/env bash
# Runs every test: starts the private MariaDB and InfluxDB (installing them from Debian's
# packages if missing), runs `cargo test`, and stops the servers again if it started them.
# Works on a fresh machine; CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Servers a developer already runs stay up afterwards; servers started here are stopped.
started_here=1
if [[ $(scripts/services.sh status 2>/dev/null | grep -c " running ") == 2 ]]; then
  started_here=0
fi
scripts/services.sh start
if (( started_here )); then
  trap 'scripts/services.sh stop' EXIT
fi
eval "$(scripts/services.sh env)"

# moto's server stands in for Amazon Timestream's write API (tests/timestream.rs starts
# one per test on a free port). From PyPI, into a venv beside the services' data.
moto_venv="${TSMIG_SERVICES_DIR:-/tmp/tsmig-services}/moto-venv"
if [[ ! -x $moto_venv/bin/moto_server ]]; then
  if ! python3 -m venv "$moto_venv"; then
    # Debian ships venv's pip bootstrap apart.
    rm -rf "$moto_venv"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-venv \
      || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-venv; }
    python3 -m venv "$moto_venv"
  fi
  "$moto_venv/bin/python" -m pip install --quiet --disable-pip-version-check 'moto[server]>=5.2,<5.3'
fi
export TSMIG_MOTO_SERVER="$moto_venv/bin/moto_server"

# kubernetes-validate checks deploy/kubernetes against Kubernetes' published schemas
# (tests/deploy.rs); it bundles them, so the tests need no network. From PyPI, into a venv
# beside the services' data, as moto.
k8s_venv="${TSMIG_SERVICES_DIR:-/tmp/tsmig-services}/k8s-validate-venv"
if [[ ! -x $k8s_venv/bin/kubernetes-validate ]]; then
  python3 -m venv "$k8s_venv" || {
    rm -rf "$k8s_venv"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-venv
    python3 -m venv "$k8s_venv"
  }
  "$k8s_venv/bin/python" -m pip install --quiet --disable-pip-version-check 'kubernetes-validate==1.37.0'
fi
export TSMIG_K8S_VALIDATE="$k8s_venv/bin/kubernetes-validate"

# The status page's browser test (tests/status_page.rs) drives Debian's chromium headless
# through playwright-core (pinned by tests/browser/package-lock.json; it never downloads a
# browser of its own), run by node: Debian's nodejs and npm where there is none (Debian 12's
# node 18 is enough for the pinned version).
browser_packages=()
[[ -x /usr/bin/chromium ]] || browser_packages+=(chromium fonts-dejavu-core)
command -v node >/dev/null || browser_packages+=(nodejs)
command -v npm >/dev/null || browser_packages+=(npm)
if (( ${#browser_packages[@]} )); then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${browser_packages[@]}" \
    || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${browser_packages[@]}"; }
fi
if [[ ! -d tests/browser/node_modules/playwright-core \
      || tests/browser/package-lock.json -nt tests/browser/node_modules/.package-lock.json ]]; then
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi
export TSMIG_CHROMIUM=/usr/bin/chromium TSMIG_BROWSER_DIR="$PWD/tests/browser"

cargo build --all-targets
# Lint as a failure, tests and benches included.
cargo clippy --all-targets -- -D warnings
# Every connector builds without the others, and the engine without any: each connector
# is a Cargo feature with the crates only it uses (CONTRIBUTING.md).
cargo check --quiet --no-default-features --lib --bins
for feature in $(sed -n 's/^default = \[\(.*\)\]/\1/p' Cargo.toml | tr -d '",'); do
  cargo check --quiet --no-default-features --features "$feature" --lib --bins
done
log="$(mktemp)"
status=0
cargo test --all-targets --no-fail-fast -- "$@" 2>&1 | tee "$log" || status=$?

# The benchmark in miniature (tiny data, one repetition, debug build, Flink included), so
# the harness cannot rot; its numbers mean nothing. The real run is bench/run.sh.
if [[ $status -eq 0 && $# -eq 0 ]]; then
  bench/run.sh --smoke || status=$?
  # The ingest endpoint's benchmark (bench/ingest.py): 10,000 points, debug build.
  bench/run.sh --ingest --smoke || status=$?
fi
# The scaling run in miniature, from a kit made here with the debug build (≈20 s: the
# packages' download, the strip, a private MariaDB, 20,000 rows at 1 and 2 workers), so its
# kit and run steps cannot rot. The real run is bench/scaling.sh (BENCHMARKS.md, "Scaling").
if [[ $status -eq 0 && $# -eq 0 ]]; then
  scaling_kit="$(mktemp -d)"
  { bench/scaling.sh kit "$scaling_kit/kit" --binary "${CARGO_TARGET_DIR:-target}/debug/tsmig-job" \
      && bench/scaling.sh run --smoke --kit "$scaling_kit/kit"; } || status=$?
  rm -rf "$scaling_kit"
fi

if (( started_here )); then
  trap - EXIT
  scripts/services.sh stop
fi

# One closing line over every test binary: "tests: N passed, N failed".
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
rm -f "$log"
exit "$status"
