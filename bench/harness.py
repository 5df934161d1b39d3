#!/usr/bin/env python3
"""The benchmark harness behind bench/run.sh.

On one machine, in one run, on the same table in the private MariaDB and the same private
InfluxDB 1.x, it measures side by side:

  ceiling-scan-N     `mariadb --quick` of the job's SELECT to /dev/null, N streams (disjoint id halves)
  ceiling-influx-N   the same rows pre-encoded as line protocol, POSTed in 5,000-line batches
                     by N concurrent curl senders (one keep-alive connection each), counted back
  tsmig-influx-Nw    tsmig-job backfill into InfluxDB with N workers
  tsmig-null-Nw      tsmig-job backfill into its blackhole sink with N workers
  flink-influx-pN    the Flink DataStream baseline (bench/flink) into InfluxDB, parallelism N
  flink-discard-pN   the same with a discarding sink

With --iotdb, instead: the IoTDB sink (see iotdb_main), a tsmig-job backfill into the
IoTDB stand-in of the tests run as a process (bench/iotdb_standin.rs), which is no IoTDB.

Every configuration runs --reps times, interleaved (rep 1 of all, then rep 2 of all, ...).
For each run: wall time, the process's user+sys CPU and peak RSS (GNU time -v), the CPU
mariadbd and influxd spent meanwhile (/proc/PID/stat), time to first row written, and
for every run that writes, the InfluxDB count checked against the table.
"""

import argparse
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import machine  # noqa: E402  (bench/machine.py; callers use H.machine)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
SERVICES = os.environ.get("TSMIG_SERVICES_DIR", "/tmp/tsmig-services")
INFLUX = os.environ.get("TSMIG_INFLUX_URL", "http://127.0.0.1:18086")
TABLE = "bench_readings"
COLUMNS = "device_id, site, ts, temperature, humidity, pressure, status"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=isinstance(cmd, str), check=True, text=True, **kw)


def sql(statement):
    out = sh(["scripts/services.sh", "sql", statement], capture_output=True, cwd=ROOT).stdout
    return out.strip()


def influx(q, db=""):
    data = urllib.parse.urlencode({"q": q, "db": db}).encode()
    with urllib.request.urlopen(f"{INFLUX}/query", data=data, timeout=120) as r:
        return json.load(r)


def influx_count(db):
    res = influx("SELECT count(temperature) FROM sensors", db)
    try:
        return res["results"][0]["series"][0]["values"][0][1]
    except (KeyError, IndexError):
        return 0


def fresh_db(db):
    influx(f'DROP DATABASE "{db}"')
    influx(f'CREATE DATABASE "{db}"')


def server_cpu(name):
    """CPU seconds a private server has used so far."""
    try:
        pid = open(os.path.join(SERVICES, f"{name}.pid")).read().strip()
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    except (OSError, IndexError, ValueError):
        return float("nan")


def quiesce(limit=90.0):
    """Waits until neither server is busy (InfluxDB compacts for a while after a big
    write), so one run's aftermath is not charged to the next."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        before = sum(server_cpu(s) for s in ("mariadb", "influxdb"))
        time.sleep(0.5)
        busy = (sum(server_cpu(s) for s in ("mariadb", "influxdb")) - before) / 0.5
        if busy < 0.05:
            return
    log(f"servers still busy after {limit:.0f}s; measuring anyway")


def timed(cmd, env=None, watch=None):
    """Runs cmd under GNU time -v; returns (stdout, wall s, cpu s, rss KB, server cpu).
    `watch(proc)`, if given, is called every 10 ms while cmd runs (its own session, so a
    signal to the group reaches cmd; GNU time ignores SIGINT)."""
    quiesce()
    before = {s: server_cpu(s) for s in ("mariadb", "influxdb")}
    started = time.monotonic()
    proc = subprocess.Popen(
        ["/usr/bin/time", "-v"] + cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env, cwd=ROOT, start_new_session=True,
    )
    if watch:
        while proc.poll() is None and not watch(proc):
            time.sleep(0.01)
    out, err = proc.communicate()
    proc.stdout, proc.stderr = out, err
    wall = time.monotonic() - started
    after = {s: server_cpu(s) for s in ("mariadb", "influxdb")}
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    err = proc.stderr

    def field(name):
        m = re.search(rf"{name}: ([0-9.:]+)", err)
        return m.group(1) if m else "0"

    cpu = float(field(r"User time \(seconds\)")) + float(field(r"System time \(seconds\)"))
    rss = int(field(r"Maximum resident set size \(kbytes\)"))
    servers = {s: after[s] - before[s] for s in before}
    return proc.stdout, wall, cpu, rss, servers


# ------------------------------------------------------------------ preparation ---


def prepare_table(rows, table=TABLE):
    have = sql(f"SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA='factory' AND TABLE_NAME='{table}'")
    count = int(sql(f"SELECT COUNT(*) FROM factory.{table}")) if have == "1" else -1
    if count != rows:
        log(f"loading {rows} rows into factory.{table}")
        sh(["scripts/load-sample.sh", str(rows), "--table", table], cwd=ROOT, stdout=subprocess.DEVNULL)
    sql(f"ANALYZE TABLE factory.{table}")


def prepare_lines(rows):
    """The table as line protocol in 5,000-line files, made by the database itself."""
    lines_dir = os.path.join(OUT, "lines")
    stamp = os.path.join(lines_dir, f".rows-{rows}")
    if os.path.exists(stamp):
        return sorted(os.path.join(lines_dir, f) for f in os.listdir(lines_dir) if f.startswith("batch-"))
    shutil.rmtree(lines_dir, ignore_errors=True)
    os.makedirs(lines_dir)
    query = (
        "SET time_zone = '+00:00'; "
        "SELECT CONCAT('sensors,device_id=', device_id, ',site=', site, ' ', CONCAT_WS(',', "
        "IF(temperature IS NULL, NULL, CONCAT('temperature=', temperature)), "
        "IF(humidity IS NULL, NULL, CONCAT('humidity=', humidity)), "
        "IF(pressure IS NULL, NULL, CONCAT('pressure=', pressure)), "
        "IF(status IS NULL, NULL, CONCAT('status=', status, 'i'))), "
        f"' ', CAST(UNIX_TIMESTAMP(ts) * 1000 AS SIGNED)) FROM factory.{TABLE}"
    )
    sock = os.path.join(SERVICES, "mariadb.sock")
    with open(os.path.join(lines_dir, "all.lp"), "w") as f:
        sh(["mariadb", "--no-defaults", f"--socket={sock}", "-uroot", "--batch", "--skip-column-names", "--raw", "-e", query], stdout=f)
    sh(["split", "-l", "5000", "-d", "-a", "5", "all.lp", "batch-"], cwd=lines_dir)
    os.remove(os.path.join(lines_dir, "all.lp"))
    open(stamp, "w").close()
    return sorted(os.path.join(lines_dir, f) for f in os.listdir(lines_dir) if f.startswith("batch-"))


def job_file(kind, rows):
    path = os.path.join(OUT, f"job-{kind}.yaml")
    if kind == "influx":
        sink = f"""sink:
  type: influxdb
  url: {INFLUX}
  database: bench
  precision: ms
  batch_size: 5000"""
    else:
        sink = """sink:
  type: blackhole
  batch_size: 5000"""
    text = f"""name: bench-{kind}
source:
  type: mysql
  url: mysql://tsmig:${{MYSQL_PASSWORD}}@127.0.0.1:13306/factory
  tables:
    - name: {TABLE}
      split_by: id
      chunk_rows: {max(1000, rows // 40)}
{sink}
mappings:
  - table: {TABLE}
    measurement: sensors
    device_field: device_id
    timestamp_field: ts
    tags: [site]
    fields: [temperature, humidity, pressure, status]
checkpoint:
  store: file:{os.path.join(OUT, "state", kind)}
dead_letter: {os.path.join(OUT, "dead-letter.jsonl")}
"""
    with open(path, "w") as f:
        f.write(text)
    return path


# ------------------------------------------------------------------ the runs ---


def run_scan(streams, rows):
    lo, hi = (int(x) for x in sql(f"SELECT MIN(id), MAX(id) FROM factory.{TABLE}").split())
    mid = (lo + hi) // 2
    ranges = [(lo, hi + 1)] if streams == 1 else [(lo, mid), (mid, hi + 1)]
    parts = [
        f"mariadb --no-defaults -h127.0.0.1 -P13306 -utsmig -ptsmig --quick --batch "
        f"-e 'SELECT {COLUMNS} FROM factory.{TABLE} WHERE id >= {a} AND id < {b}' > /dev/null"
        for a, b in ranges
    ]
    script = " & ".join(parts) + " & wait"
    _, wall, cpu, rss, servers = timed(["bash", "-c", script])
    return dict(rows=rows, wall=wall, cpu=cpu, rss=rss, servers=servers, first_write_ms=None)


def curl_senders(files, senders, tag, request, prefix="@"):
    """A shell command that sends every file as the body of `request` (curl arguments
    ending in the body option; the file goes after it as `prefix` + path) over `senders`
    concurrent curl processes, one keep-alive connection each, and waits for all."""
    groups = [files[i::senders] for i in range(senders)]
    scripts = []
    for group in groups:
        args = []
        for i, f in enumerate(group):
            if i:
                args.append("--next")
            # No `Expect: 100-continue` round trip: tsmig does not wait for one either.
            args += ["-sf", "-H", "'Expect:'"] + request + [f"{prefix}{f}"]
        arg_file = os.path.join(OUT, f"curl-{tag}-{len(scripts)}.args")
        with open(arg_file, "w") as fh:
            fh.write(" ".join(args))
        scripts.append(f"xargs -a {arg_file} curl > /dev/null")
    return "{ " + " & ".join(scripts) + " & wait; }"


def run_ingest(senders, files, rows):
    fresh_db("bench_ceiling")
    url = f"{INFLUX}/write?db=bench_ceiling&precision=ms"
    script = curl_senders(files, senders, "ingest", ["-XPOST", f"'{url}'", "--data-binary"])
    _, wall, cpu, rss, servers = timed(["bash", "-c", script])
    count = influx_count("bench_ceiling")
    if count != rows:
        raise RuntimeError(f"ceiling ingest: InfluxDB holds {count} points, expected {rows}")
    return dict(rows=rows, wall=wall, cpu=cpu, rss=rss, servers=servers, first_write_ms=None)


def run_tsmig(binary, kind, workers, rows):
    if kind == "influx":
        fresh_db("bench")
    env = dict(os.environ, MYSQL_PASSWORD="tsmig", RUST_LOG="warn")
    cmd = [binary, "-c", "backfill", "--config", job_file(kind, rows), "--workers", str(workers), "--fresh", "--progress", "off"]
    out, wall, cpu, rss, servers = timed(cmd, env=env)
    summary = dict(kv.split("=", 1) for kv in out.split("summary: ", 1)[1].split())
    if int(summary["rows_read"]) != rows or int(summary["points_written"]) != rows:
        raise RuntimeError(f"tsmig {kind} {workers}w: {summary}")
    if kind == "influx" and influx_count("bench") != rows:
        raise RuntimeError(f"tsmig {kind} {workers}w: InfluxDB holds {influx_count('bench')} points, expected {rows}")
    first = float(summary["first_write_ms"])
    return dict(rows=rows, wall=wall, cpu=cpu, rss=rss, servers=servers, first_write_ms=first if first > 0 else None)


def run_flink(sink, parallelism, rows):
    if sink == "influx":
        fresh_db("bench")
    cmd = ["bench/flink/run.sh", "--parallelism", str(parallelism), "--sink", sink, "--db", "bench", "--table", TABLE]
    out, wall, cpu, rss, servers = timed(cmd)
    m = re.search(r"flink: rows=(\d+) seconds=([0-9.]+) first_write_ms=(-?[0-9.]+)", out)
    if not m or int(m.group(1)) != rows:
        raise RuntimeError(f"flink {sink} p{parallelism}: unexpected output {out[-500:]}")
    if sink == "influx" and influx_count("bench") != rows:
        raise RuntimeError(f"flink {sink} p{parallelism}: InfluxDB holds {influx_count('bench')} points, expected {rows}")
    first = float(m.group(3))
    return dict(rows=rows, wall=wall, cpu=cpu, rss=rss, servers=servers, first_write_ms=first if first >= 0 else None)


# ------------------------------------------------------------------ report ---


def summarise(results):
    out = {}
    for name, runs in results.items():
        def stat(key):
            values = [r[key] for r in runs if r[key] is not None]
            if not values:
                return None
            return (statistics.median(values), min(values), max(values))

        rate = [r["rows"] / r["wall"] for r in runs]
        out[name] = dict(
            rate=(statistics.median(rate), min(rate), max(rate)),
            wall=stat("wall"),
            cpu=stat("cpu"),
            us_per_row=tuple(x * 1e6 / runs[0]["rows"] for x in stat("cpu")),
            rss_mb=tuple(x / 1024 for x in stat("rss")),
            first_write_ms=stat("first_write_ms"),
            mariadb_cpu=statistics.median(r["servers"]["mariadb"] for r in runs),
            influxd_cpu=statistics.median(r["servers"]["influxdb"] for r in runs),
            reps=len(runs),
        )
    return out


def fmt_range(t, digits=0, scale=1.0):
    if t is None:
        return "–"
    med, lo, hi = (x * scale for x in t)
    return f"{med:,.{digits}f} ({lo:,.{digits}f}–{hi:,.{digits}f})"




def report(summary, rows, reps):
    lines = []
    lines.append(f"Measured {datetime.date.today().isoformat()} on {machine()}; {rows:,} rows, "
                 f"median (min–max) of {reps} interleaved runs per configuration.")
    lines.append("")
    lines.append("| configuration | rows/s | wall s | process CPU s | CPU µs/row | peak RSS MB | first write ms | mariadbd CPU s | influxd CPU s |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, s in summary.items():
        lines.append(
            f"| {name} | {fmt_range(s['rate'])} | {fmt_range(s['wall'], 2)} | {fmt_range(s['cpu'], 2)} | "
            f"{fmt_range(s['us_per_row'], 2)} | {fmt_range(s['rss_mb'], 0)} | {fmt_range(s['first_write_ms'], 0)} | "
            f"{s['mariadb_cpu']:.2f} | {s['influxd_cpu']:.2f} |"
        )
    lines.append("")

    def get(name, key, i=0):
        s = summary.get(name)
        return None if s is None or s[key] is None else s[key][i]

    def ratio(label, a, b, target, better):
        if a is None or b is None or b == 0:
            return f"| {label} | – | {target} | not measured |"
        r = a / b
        met = (r >= better) if target.startswith("≥") else (r <= better)
        return f"| {label} | {r:.2f} | {target} | {'met' if met else 'MISSED'} |"

    lines.append("| ratio (medians) | measured | target | |")
    lines.append("|---|---:|---:|---|")
    lines.append(ratio("tsmig 2w / Flink p2, rows/s into InfluxDB", get("tsmig-influx-2w", "rate"), get("flink-influx-p2", "rate"), "≥ 1.6", 1.6))
    lines.append(ratio("tsmig 2w / raw InfluxDB ingest (2 senders), rows/s", get("tsmig-influx-2w", "rate"), get("ceiling-influx-2", "rate"), "≥ 0.75", 0.75))
    lines.append(ratio("tsmig 2w / Flink p2, process CPU", get("tsmig-influx-2w", "cpu"), get("flink-influx-p2", "cpu"), "≤ 0.125", 0.125))
    lines.append(ratio("tsmig 2w / Flink p2, peak RSS", get("tsmig-influx-2w", "rss_mb"), get("flink-influx-p2", "rss_mb"), "≤ 0.10", 0.10))
    lines.append(ratio("tsmig 1w null / raw scan (1 stream), rows/s", get("tsmig-null-1w", "rate"), get("ceiling-scan-1", "rate"), "≥ 1.0", 1.0))
    lines.append(ratio("tsmig 2w null / raw scan (2 streams), rows/s", get("tsmig-null-2w", "rate"), get("ceiling-scan-2", "rate"), "≥ 1.0", 1.0))
    lines.append(ratio("tsmig 1w null / Flink p1 discard, rows/s", get("tsmig-null-1w", "rate"), get("flink-discard-p1", "rate"), "≥ 3", 3.0))
    lines.append(ratio("tsmig 2w null / Flink p2 discard, rows/s", get("tsmig-null-2w", "rate"), get("flink-discard-p2", "rate"), "≥ 3", 3.0))
    us = get("tsmig-influx-2w", "us_per_row")
    lines.append(f"| tsmig 2w CPU per row into InfluxDB, µs | {us:.2f} | ≤ 0.7 | {'met' if us is not None and us <= 0.7 else 'MISSED'} |" if us is not None else "| tsmig CPU per row | – | ≤ 0.7 | not measured |")
    fw = get("tsmig-influx-2w", "first_write_ms")
    lines.append(f"| tsmig first row written, ms after start | {fw:.0f} | < 100 | {'met' if fw is not None and fw < 100 else 'MISSED'} |" if fw is not None else "| tsmig first row written | – | < 100 | not measured |")
    return "\n".join(lines)


def write_benchmarks(text, section="bench"):
    """Replaces what is between `<!-- SECTION:begin -->` and `<!-- SECTION:end -->` in
    BENCHMARKS.md (appending the markers if missing) with `text`."""
    path = os.path.join(ROOT, "BENCHMARKS.md")
    begin, end = f"<!-- {section}:begin -->", f"<!-- {section}:end -->"
    doc = open(path).read() if os.path.exists(path) else f"# Benchmarks\n\n{begin}\n{end}\n"
    if begin not in doc:
        doc += f"\n{begin}\n{end}\n"
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    with open(path, "w") as f:
        f.write(f"{head}{begin}\n{text}\n{end}{tail}")
    log(f"wrote {path}")


def build(smoke):
    """Builds tsmig-job (debug for a smoke run, else release); returns its path."""
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    profile = [] if smoke else ["--release"]
    sh(["cargo", "build", *profile, "--bin", "tsmig-job"], cwd=ROOT)
    return os.path.join(target, "debug" if smoke else "release", "tsmig-job")


# ------------------------------------------------------------------ IoTDB sink ---

IOTDB_TABLE = "bench_iotdb_readings"
# Batch sizes of the IoTDB runs: the shipped job's, and small batches where each call's
# round trip counts.
IOTDB_BATCHES = {"": 5000, "-b100": 100}
IOTDB_CAVEAT = (
    "The target is the IoTDB stand-in of the tests (tests/standins/iotdb/, in memory, one "
    "thread per connection), not IoTDB: these figures measure tsmig's IoTDB client side "
    "(calls, CPU per point) and are no speed reference for IoTDB itself, whose writes "
    "cost far more than the stand-in's."
)


def build_standin(smoke):
    """Builds the stand-in as a process (bench/iotdb_standin.rs); returns its path."""
    profile = [] if smoke else ["--release"]
    out = sh(["cargo", "build", *profile, "--bench", "iotdb_standin", "--message-format=json-render-diagnostics"],
             cwd=ROOT, capture_output=True).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "iotdb_standin" and msg.get("executable"):
            return msg["executable"]
    raise RuntimeError("cargo built no iotdb_standin executable")


class StandIn:
    """A running stand-in process: its port, the calls it answered, its CPU."""

    def __init__(self, binary):
        self.proc = subprocess.Popen([binary, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline().strip().split("=", 1)[1])

    def ask(self, command):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def calls(self):
        return json.loads(self.ask("calls"))

    def points(self):
        return int(self.ask("points"))

    def cpu(self):
        fields = open(f"/proc/{self.proc.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def stop(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def iotdb_job_file(batch, rows):
    path = os.path.join(OUT, f"job-iotdb-{batch}.yaml")
    text = f"""name: bench-iotdb
source:
  type: mysql
  url: mysql://tsmig:${{MYSQL_PASSWORD}}@127.0.0.1:13306/factory
  time_zone: "+00:00"
  tables:
    - name: {IOTDB_TABLE}
      split_by: id
      chunk_rows: {max(1000, rows // 40)}
sink:
  type: iotdb
  host: 127.0.0.1
  port: ${{IOTDB_PORT}}
  precision: ms
  batch_size: {batch}
  sessions: 2
mappings:
  - table: {IOTDB_TABLE}
    device_field: device_id
    timestamp_field: ts
    path: root.bench.{{device_id}}
    measurements: [temperature, humidity, pressure, status]
checkpoint:
  store: file:{os.path.join(OUT, "state", f"iotdb-{batch}")}
dead_letter: {os.path.join(OUT, "dead-letter.jsonl")}
"""
    with open(path, "w") as f:
        f.write(text)
    return path


def run_tsmig_iotdb(binary, standin_binary, batch, workers, rows, values):
    """One backfill of the table into a fresh stand-in; `values` is the table's non-NULL
    measurement values, each of which must be a point in the stand-in afterwards."""
    standin = StandIn(standin_binary)
    try:
        env = dict(os.environ, MYSQL_PASSWORD="tsmig", RUST_LOG="warn", IOTDB_PORT=str(standin.port))
        cmd = [binary, "-c", "backfill", "--config", iotdb_job_file(batch, rows), "--workers", str(workers), "--fresh", "--progress", "off"]
        cpu_before = standin.cpu()
        out, wall, cpu, rss, servers = timed(cmd, env=env)
        standin_cpu = standin.cpu() - cpu_before
        summary = dict(kv.split("=", 1) for kv in out.split("summary: ", 1)[1].split())
        if int(summary["rows_read"]) != rows or int(summary["points_written"]) != rows:
            raise RuntimeError(f"tsmig iotdb {workers}w: {summary}")
        held = standin.points()
        if held != values:
            raise RuntimeError(f"tsmig iotdb {workers}w: the stand-in holds {held} points, expected {values}")
        calls = {m: n for m, n in standin.calls().items() if m not in ("openSession", "closeSession")}
    finally:
        standin.stop()
    return dict(rows=rows, wall=wall, cpu=cpu, rss=rss, servers=servers, standin_cpu=standin_cpu,
                calls=sum(calls.values()), inserts=calls.get("insertTablets", 0))


def iotdb_report(results, rows, reps, note, smoke, baseline):
    build = "debug" if smoke else "release"
    lines = [
        f"Measured {datetime.date.today().isoformat()} on {machine()}{f' ({note})' if note else ''}; {rows:,} rows "
        f"({IOTDB_TABLE}, 1,000 devices × 4 measurements), tsmig-job {build} build, 2 workers, "
        f"2 sessions; median (min–max) of {reps} interleaved runs per configuration."
        + (" `baseline` is the build --baseline named." if baseline else ""),
        "",
        f"**{IOTDB_CAVEAT}**",
        "",
        "| configuration | batch | calls | calls/s | rows/s | wall s | tsmig CPU s | tsmig CPU µs/row | stand-in CPU s | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, (batch, runs) in results.items():
        def rng(values, digits=0):
            return fmt_range((statistics.median(values), min(values), max(values)), digits)
        lines.append(
            f"| {name} | {batch} | {statistics.median(r['calls'] for r in runs):,.0f} | "
            f"{rng([r['calls'] / r['wall'] for r in runs])} | {rng([r['rows'] / r['wall'] for r in runs])} | "
            f"{rng([r['wall'] for r in runs], 2)} | {rng([r['cpu'] for r in runs], 2)} | "
            f"{rng([r['cpu'] * 1e6 / r['rows'] for r in runs], 2)} | {rng([r['standin_cpu'] for r in runs], 2)} | "
            f"{rng([r['rss'] / 1024 for r in runs])} |"
        )
    return "\n".join(lines)


def iotdb_main(args):
    """The IoTDB sink benchmark: backfills of the table into the stand-in, with the
    shipped batch size and with small batches, by this build and (--baseline) another."""
    rows = args.rows or (20_000 if args.smoke else 200_000)
    reps = args.reps or (1 if args.smoke else 3)
    os.makedirs(OUT, exist_ok=True)
    binary = build(args.smoke)
    standin_binary = build_standin(args.smoke)
    prepare_table(rows, IOTDB_TABLE)
    values = int(sql(f"SELECT COUNT(temperature) + COUNT(humidity) + COUNT(pressure) + COUNT(status) FROM factory.{IOTDB_TABLE}"))
    builds = [("tsmig", binary)] + ([("baseline", args.baseline)] if args.baseline else [])
    configs = [
        (f"{label}-iotdb{suffix}-2w", batch, tsmig)
        for suffix, batch in IOTDB_BATCHES.items()
        for label, tsmig in builds
    ]
    results = {name: (batch, []) for name, batch, _ in configs}
    for rep in range(reps):
        for name, batch, tsmig in configs:
            log(f"rep {rep + 1}/{reps}: {name}")
            r = run_tsmig_iotdb(tsmig, standin_binary, batch, 2, rows, values)
            log(f"  {r['calls']} calls, {r['calls'] / r['wall']:,.0f} calls/s, {r['rows'] / r['wall']:,.0f} rows/s, "
                f"cpu {r['cpu']:.2f}s ({r['cpu'] * 1e6 / rows:.2f} µs/row), stand-in cpu {r['standin_cpu']:.2f}s")
            results[name][1].append(r)
    text = iotdb_report(results, rows, reps, args.note, args.smoke, args.baseline)
    print(text)
    if not args.smoke:
        write_benchmarks(text, "iotdb")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny data, one repetition, debug build; no BENCHMARKS.md")
    p.add_argument("--rows", type=int)
    p.add_argument("--reps", type=int)
    p.add_argument("--no-flink", action="store_true")
    p.add_argument("--only", help="comma-separated configuration names to run")
    p.add_argument("--iotdb", action="store_true", help="only the IoTDB sink benchmark, into the stand-in (default 200,000 rows)")
    p.add_argument("--baseline", help="another tsmig-job binary (e.g. one built before a change) run beside this build: "
                   "with --iotdb, in the IoTDB benchmark; else each tsmig-* configuration also runs as baseline-*, interleaved")
    p.add_argument("--binary", help="the tsmig-job binary to measure instead of building one")
    p.add_argument("--note", help="with --iotdb: said of the machine in the report, e.g. 'shared with other builds'")
    args = p.parse_args()
    if args.iotdb:
        return iotdb_main(args)
    rows = args.rows or (20_000 if args.smoke else 2_000_000)
    reps = args.reps or (1 if args.smoke else 3)
    os.makedirs(OUT, exist_ok=True)

    binary = args.binary or build(args.smoke)
    flink = not args.no_flink
    if flink:
        sh(["bench/flink/setup.sh"], cwd=ROOT, stdout=sys.stderr)

    prepare_table(rows)
    files = prepare_lines(rows)

    configs = [
        ("ceiling-scan-1", lambda: run_scan(1, rows)),
        ("ceiling-scan-2", lambda: run_scan(2, rows)),
        ("ceiling-influx-1", lambda: run_ingest(1, files, rows)),
        ("ceiling-influx-2", lambda: run_ingest(2, files, rows)),
        ("tsmig-influx-1w", lambda: run_tsmig(binary, "influx", 1, rows)),
        ("tsmig-influx-2w", lambda: run_tsmig(binary, "influx", 2, rows)),
        ("tsmig-null-1w", lambda: run_tsmig(binary, "null", 1, rows)),
        ("tsmig-null-2w", lambda: run_tsmig(binary, "null", 2, rows)),
    ]
    if flink:
        configs += [
            ("flink-influx-p1", lambda: run_flink("influx", 1, rows)),
            ("flink-influx-p2", lambda: run_flink("influx", 2, rows)),
            ("flink-discard-p1", lambda: run_flink("discard", 1, rows)),
            ("flink-discard-p2", lambda: run_flink("discard", 2, rows)),
        ]
    if args.only:
        wanted = set(args.only.split(","))
        configs = [c for c in configs if c[0] in wanted]
    if args.baseline:
        # Each tsmig configuration right after the same one run by the baseline binary.
        paired = []
        for name, run in configs:
            if name.startswith("tsmig-"):
                kind, workers = name.split("-")[1], int(name.split("-")[2].rstrip("w"))
                paired.append((name.replace("tsmig-", "baseline-", 1),
                               lambda kind=kind, workers=workers: run_tsmig(args.baseline, kind, workers, rows)))
            paired.append((name, run))
        configs = paired

    results = {name: [] for name, _ in configs}
    for rep in range(reps):
        for name, run in configs:
            log(f"rep {rep + 1}/{reps}: {name}")
            r = run()
            log(f"  {r['rows'] / r['wall']:,.0f} rows/s, wall {r['wall']:.2f}s, cpu {r['cpu']:.2f}s, rss {r['rss'] / 1024:.0f} MB")
            results[name].append(r)

    text = report(summarise(results), rows, reps)
    print(text)
    if not args.smoke and not args.only and not args.baseline and not args.binary:
        write_benchmarks(text)
    influx('DROP DATABASE "bench"')
    influx('DROP DATABASE "bench_ceiling"')


if __name__ == "__main__":
    main()
