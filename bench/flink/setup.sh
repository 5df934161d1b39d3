#!/usr/bin/env bash
# Apache Flink baseline: install what it needs and compile the job.
#
#   bench/flink/setup.sh
#
# Idempotent. Everything goes under ${TSMIG_BENCH_CACHE:-/tmp/tsmig-bench}/flink:
#   pylib/       pip --target install of apache-flink-libraries (the Flink jars:
#                pyflink/lib/flink-dist-*.jar etc.; no Maven Central needed)
#   classes/     the compiled job (javac against those jars)
#   classpath    the runtime classpath, read by run.sh
# MariaDB Connector/J comes from Debian (libmariadb-java, /usr/share/java).
# Prints the classpath it built.
set -euo pipefail

FLINK_VERSION=1.20.5
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${TSMIG_BENCH_CACHE:-/tmp/tsmig-bench}/flink"
PYLIB="$CACHE/pylib"
CLASSES="$CACHE/classes"

log() { printf 'flink-setup: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v java >/dev/null || die "java not found (Java 17 needed)"
command -v javac >/dev/null || die "javac not found (a JDK 17 is needed)"
java_major=$(java -XshowSettings:properties -version 2>&1 | awk -F' = ' '/java.specification.version/ {print $2}')
[[ $java_major == 17 ]] || log "warning: java is $java_major; Flink 1.20 supports 11 and 17"

mkdir -p "$CACHE"

# 1. Flink jars, from PyPI's apache-flink-libraries (an sdist carrying the binary jars).
stamp="$PYLIB/.installed-$FLINK_VERSION"
if [[ ! -f $stamp ]]; then
  log "installing apache-flink-libraries==$FLINK_VERSION into $PYLIB (about 230 MB)"
  rm -rf "$PYLIB"
  python3 -m pip install --quiet --no-cache-dir --no-deps --disable-pip-version-check --root-user-action=ignore \
    --target "$PYLIB" "apache-flink-libraries==$FLINK_VERSION"
  touch "$stamp"
fi
FLINK_LIB=$(find "$PYLIB" -type f -name "flink-dist-$FLINK_VERSION.jar" -path '*/lib/*' -print -quit)
[[ -n $FLINK_LIB ]] || die "flink-dist-$FLINK_VERSION.jar not found under $PYLIB"
FLINK_LIB=$(dirname "$FLINK_LIB")
# flink-dist bundles flink-core, -runtime, -streaming-java, -clients, ...; log4j is beside it.
flink_jars=("$FLINK_LIB/flink-dist-$FLINK_VERSION.jar")
for pat in 'log4j-api-*.jar' 'log4j-core-*.jar' 'log4j-slf4j-impl-*.jar' 'log4j-1.2-api-*.jar'; do
  jar=$(find "$FLINK_LIB" -maxdepth 1 -name "$pat" -print -quit)
  [[ -n $jar ]] || die "$pat not found in $FLINK_LIB"
  flink_jars+=("$jar")
done

# 2. MariaDB Connector/J from Debian.
if [[ ! -f /usr/share/java/mariadb-java-client.jar ]]; then
  log "installing libmariadb-java (MariaDB Connector/J) with apt"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends libmariadb-java >&2 \
    || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends libmariadb-java >&2; }
fi
MARIADB_JAR=/usr/share/java/mariadb-java-client.jar
[[ -f $MARIADB_JAR ]] || die "$MARIADB_JAR missing after installing libmariadb-java"

compile_cp=$(IFS=:; echo "${flink_jars[*]}")

# 3. Compile the job (again only when a source is newer than the last build).
mapfile -t sources < <(find "$HERE/src" -name '*.java' | sort)
(( ${#sources[@]} )) || die "no Java sources under $HERE/src"
build_stamp="$CLASSES/.built"
need_build=1
if [[ -f $build_stamp ]]; then
  need_build=0
  for s in "${sources[@]}"; do [[ $s -nt $build_stamp ]] && need_build=1; done
fi
if (( need_build )); then
  log "compiling ${#sources[@]} source file(s) into $CLASSES"
  rm -rf "$CLASSES"
  mkdir -p "$CLASSES"
  javac --release 17 -encoding UTF-8 -nowarn -Xlint:-deprecation -XDsuppressNotes -d "$CLASSES" -cp "$compile_cp" "${sources[@]}"
  touch "$build_stamp"
fi

classpath="$CLASSES:$compile_cp:$MARIADB_JAR"
printf '%s\n' "$classpath" > "$CACHE/classpath"
log "classpath written to $CACHE/classpath"
printf '%s\n' "$classpath"
