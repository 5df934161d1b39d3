#!/usr/bin/env bash
# Run the Flink baseline job in-process (local mini cluster) on Java 17.
#
#   bench/flink/run.sh [--parallelism N] [--sink influx|discard] [--db NAME] [--table NAME]
#                      [--jdbc-url URL] [--influx-url URL] [--chunk-rows N] [--batch-size N]
#                      [--fetch-size N]
#
# Needs bench/flink/setup.sh first (run here if its classpath file is missing).
# Last stdout line: flink: rows=<rows read> seconds=<wall s> first_write_ms=<ms or -1>
# FLINK_HEAP overrides the heap (default 1g); FLINK_JAVA_OPTS adds JVM options.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${TSMIG_BENCH_CACHE:-/tmp/tsmig-bench}/flink"
if [[ ! -s $CACHE/classpath ]]; then
  "$HERE/setup.sh" >/dev/null
fi
CP=$(<"$CACHE/classpath")

# What Flink's own config.yaml passes on Java 17 (env.java.default-opts.all): its Kryo,
# reflection and network code reach into these JDK internals.
JAVA17_OPTS=(
  --add-exports=java.base/sun.net.util=ALL-UNNAMED
  --add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED
  --add-exports=java.security.jgss/sun.security.krb5=ALL-UNNAMED
  --add-opens=java.base/java.lang=ALL-UNNAMED
  --add-opens=java.base/java.net=ALL-UNNAMED
  --add-opens=java.base/java.io=ALL-UNNAMED
  --add-opens=java.base/java.nio=ALL-UNNAMED
  --add-opens=java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens=java.base/java.lang.reflect=ALL-UNNAMED
  --add-opens=java.base/java.text=ALL-UNNAMED
  --add-opens=java.base/java.time=ALL-UNNAMED
  --add-opens=java.base/java.util=ALL-UNNAMED
  --add-opens=java.base/java.util.concurrent=ALL-UNNAMED
  --add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED
  --add-opens=java.base/java.util.concurrent.locks=ALL-UNNAMED
)

# shellcheck disable=SC2086  # FLINK_JAVA_OPTS is a list of options
exec java \
  "-Xmx${FLINK_HEAP:-1g}" \
  "${JAVA17_OPTS[@]}" \
  -Dlog4j2.configurationFile="$HERE/log4j2.properties" \
  -Dlog4j.configurationFile="$HERE/log4j2.properties" \
  ${FLINK_JAVA_OPTS:-} \
  -cp "$CP" tsmig.bench.MysqlToInflux "$@"
