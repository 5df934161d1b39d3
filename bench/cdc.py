#!/usr/bin/env python3
"""The CDC benchmarks behind `bench/run.sh --cdc` (issue 5).

Catch-up: a backlog of N row changes (default 1,000,000) is written to factory.bench_cdc
once, between two recorded binlog positions. Every catch-up run starts from a fresh
cdc.json at the first position and runs `tsmig-job -c cdc --until-caught-up` to the end:

  cdc-null-Nw        into the blackhole sink, N workers
  cdc-influx-Nw      into InfluxDB 1.6, N workers; the final point count is checked
  ceiling-influx-2   the same writes and deletes sent raw, without tsmig: every INSERT's and
                     UPDATE's new row as a line (5,000-line POSTs, 2 curl senders on
                     keep-alive connections, as in harness.py), then every DELETE as the
                     statement tsmig sends (200 a request, 2 senders); counted back

changes/s = changes_read / seconds from tsmig's summary line (process start to exit,
connecting and the final checkpoint included); changes_read must equal the backlog.

The backlog's mix (in SQL, server-side from the SEQUENCE engine, in 10 rounds): each round
inserts 9.4% of N in 2,000-row INSERT…SELECT transactions, then updates 0.5% of N (rows
that round inserted, `temperature + 0.5`, `status + 1`) in 500-row transactions and
deletes 0.1% of N in 100-row transactions: 94% inserts, 5% updates, 1% deletes. A sensor
table is mostly appended to; corrections and removals are rare. Updated and deleted rows
are ~90,000 changes behind their insert, so no epoch cancels them out.

Lag: `tsmig-job -c cdc` follows factory.bench_cdc_lag into InfluxDB while a writer inserts
--rate rows/s (default 20,000) as one multi-row INSERT per 20 ms slice through one `mariadb`
client session, each row's `ts` = the wall clock (ms) when its slice was built, 400 rows a
slice with distinct devices. A poller asks InfluxDB every --poll ms for
`count(temperature) … WHERE time >= <oldest incomplete slice> GROUP BY time(1ms)`; each new
point's lag is (the response of the first poll that counts it) − its ts: an upper bound,
at most one poll period plus one query above the true moment it became visible (the lower
bound, from the poll before, is reported too). After --warmup s, --seconds s are measured.
"""

import argparse
import datetime
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

TABLE = "bench_cdc"
LAG_TABLE = "bench_cdc_lag"
# Replica ids of the benchmark's binlog readers; tests/cdc.rs uses 5000–15000.
CATCHUP_SERVER_ID = 29101
LAG_SERVER_ID = 29102
ROUNDS = 10
INSERT_SLICE = 2000
UPDATE_SLICE = 500
DELETE_SLICE = 100
FIELDS = "id, device_id, site, ts, temperature, humidity, pressure, status"
# The row of sequence number `seq`, as in scripts/load-sample.sh (device = seq mod 1000,
# one row per device and second), with microsecond timestamps.
ROW_SQL = (
    "seq AS id, CONCAT('dev-', LPAD(seq MOD 1000, 4, '0')) AS device_id, "
    "CONCAT('site-', (seq MOD 1000) MOD 7) AS site, "
    "TIMESTAMPADD(SECOND, seq DIV 1000, '2026-01-01 00:00:00') AS ts, "
    "ROUND(20 + 5 * SIN(seq / 1000.0) + (seq MOD 13) / 10.0, 3) AS temperature, "
    "IF(seq MOD 97 = 0, NULL, 40 + (seq MOD 50)) AS humidity, 1000 + (seq MOD 300) / 10 AS pressure, "
    "seq MOD 4 AS status"
)
log = H.log


def create_table(name):
    H.sql(
        f"DROP TABLE IF EXISTS factory.{name}; "
        f"CREATE TABLE factory.{name} (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, "
        "device_id VARCHAR(64) NOT NULL, site VARCHAR(32) NOT NULL, ts DATETIME(6) NOT NULL, "
        "temperature DOUBLE NOT NULL, humidity FLOAT NULL, pressure DECIMAL(8,2) NULL, "
        "status TINYINT NULL, KEY device_ts (device_id, ts)) ENGINE=InnoDB"
    )


def master_status():
    file, pos = H.sql("SHOW MASTER STATUS").split()[:2]
    return {"file": file, "offset": int(pos)}


def mix(changes):
    """(inserts, updates, deletes) per round."""
    per_round = changes // ROUNDS
    if per_round * ROUNDS != changes or per_round % 1000:
        raise SystemExit(f"--changes must be a multiple of {ROUNDS * 1000}")
    return per_round * 94 // 100, per_round * 5 // 100, per_round // 100


def rounds(changes):
    """Per round: the id ranges inserted, updated and deleted."""
    ins, upd, dele = mix(changes)
    for r in range(ROUNDS):
        base = r * ins
        yield (base + 1, base + ins), (base + 1, base + upd), (base + upd + 1, base + upd + dele)


def slices(lo, hi, step):
    for a in range(lo, hi + 1, step):
        yield a, min(a + step - 1, hi)


def make_backlog(changes):
    """Writes the backlog; returns (start, end) binlog positions and its size in bytes."""
    create_table(TABLE)
    start = master_status()
    statements = ["USE factory;"]
    for (ia, ib), (ua, ub), (da, db) in rounds(changes):
        for a, b in slices(ia, ib, INSERT_SLICE):
            statements.append(f"INSERT INTO factory.{TABLE} ({FIELDS}) SELECT {ROW_SQL} FROM seq_{a}_to_{b};")
        for a, b in slices(ua, ub, UPDATE_SLICE):
            statements.append(
                f"UPDATE factory.{TABLE} SET temperature = temperature + 0.5, status = (status + 1) MOD 4 "
                f"WHERE id BETWEEN {a} AND {b};"
            )
        for a, b in slices(da, db, DELETE_SLICE):
            statements.append(f"DELETE FROM factory.{TABLE} WHERE id BETWEEN {a} AND {b};")
    began = time.monotonic()
    H.sh(["scripts/services.sh", "sql"], input="\n".join(statements), cwd=H.ROOT, stdout=subprocess.DEVNULL)
    end = master_status()
    ins, upd, dele = mix(changes)
    rows = int(H.sql(f"SELECT COUNT(*) FROM factory.{TABLE}"))
    if rows != ROUNDS * (ins - dele):
        raise RuntimeError(f"backlog: {rows} rows in {TABLE}, expected {ROUNDS * (ins - dele)}")
    size = binlog_bytes(start, end)
    log(f"backlog: {changes:,} row changes ({ROUNDS * ins:,} inserts, {ROUNDS * upd:,} updates, "
        f"{ROUNDS * dele:,} deletes) in {time.monotonic() - began:.1f}s, {size / 1e6:.0f} MB of binlog "
        f"{start['file']}:{start['offset']} → {end['file']}:{end['offset']}")
    return start, end, size


def binlog_bytes(start, end):
    total = 0
    for line in H.sql("SHOW BINARY LOGS").splitlines():
        name, size = line.split()[:2]
        lo = start["offset"] if name == start["file"] else 0
        hi = end["offset"] if name == end["file"] else int(size)
        if start["file"] <= name <= end["file"]:
            total += hi - lo
    return total


def job_file(name, table, sink, server_id, workers_dir):
    if sink == "influx":
        sink_text = f"""sink:
  type: influxdb
  url: {H.INFLUX}
  database: {name}
  precision: ms
  batch_size: 5000"""
    else:
        sink_text = """sink:
  type: blackhole
  batch_size: 5000"""
    text = f"""name: {name}
mode: cdc
source:
  type: mysql
  url: mysql://tsmig:${{MYSQL_PASSWORD}}@127.0.0.1:13306/factory
  server_id: {server_id}
  heartbeat: 100ms
  tables:
    - name: {table}
{sink_text}
mappings:
  - table: {table}
    measurement: sensors
    device_field: device_id
    timestamp_field: ts
    tags: [site]
    fields: [temperature, humidity, pressure, status]
checkpoint:
  store: file:{workers_dir}
dead_letter: {os.path.join(H.OUT, "cdc-dead-letter.jsonl")}
"""
    path = os.path.join(H.OUT, f"job-{name}.yaml")
    with open(path, "w") as f:
        f.write(text)
    return path


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_changes(port):
    """tsmig's changes-read counter from its metrics endpoint (0 until it answers)."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        conn.request("GET", "/metrics")
        for line in conn.getresponse().read().decode().splitlines():
            if line.startswith("tsmig_source_changes_total"):
                return int(float(line.split()[-1]))
    except OSError:
        pass
    return 0


def summary_of(out):
    return dict(kv.split("=", 1) for kv in out.split("summary: ", 1)[1].split())


# ------------------------------------------------------------------ catch-up ---


def run_catchup(binary, sink, workers, changes, start, expected_points):
    name = f"bench_cdc_{sink}"
    state = os.path.join(H.OUT, "state", name)
    os.makedirs(state, exist_ok=True)
    with open(os.path.join(state, "cdc.json"), "w") as f:
        json.dump({"version": 1, "job": name, "position": start, "committed_at": 0}, f)
    if sink == "influx":
        H.fresh_db(name)
    env = dict(os.environ, MYSQL_PASSWORD="tsmig", RUST_LOG="warn")
    job = job_file(name, TABLE, sink, CATCHUP_SERVER_ID, state)
    port = free_port()
    cmd = [binary, "-c", "cdc", "--config", job, "--workers", str(workers), "--until-caught-up",
           "--progress", "off", "--metrics-addr", f"127.0.0.1:{port}"]

    # `--until-caught-up` stops at the server's first heartbeat, which never comes while
    # other clients keep writing to the (shared) binlog: the job is also stopped (SIGINT:
    # what was read is written and checkpointed, then it exits) once it has read the
    # whole backlog.
    progress = {"changes": -1, "at": time.monotonic()}

    def watch(proc):
        n = read_changes(port)
        if n >= changes:
            os.killpg(proc.pid, signal.SIGINT)
            return True
        if n != progress["changes"]:
            progress.update(changes=n, at=time.monotonic())
        elif time.monotonic() - progress["at"] > 60:
            os.killpg(proc.pid, signal.SIGKILL)
            raise RuntimeError(f"cdc {sink} {workers}w: stalled at {n} of {changes} changes for 60 s")
        return False

    out, wall, cpu, rss, servers = H.timed(cmd, env=env, watch=watch)
    s = summary_of(out)
    if int(s["changes_read"]) != changes or int(s["dead_lettered"]) != 0:
        raise RuntimeError(f"cdc {sink} {workers}w: read {s['changes_read']} changes, expected {changes}: {s}")
    if sink == "influx":
        count = H.influx_count(name)
        if count < expected_points:
            raise RuntimeError(f"cdc {sink} {workers}w: InfluxDB holds {count} points, expected {expected_points}")
        if count > expected_points:
            # InfluxDB 1.6 leaves some DELETEs undone while the same shard takes writes
            # (the raw ceiling's own deletes show it too); a later DELETE of the point works.
            log(f"  InfluxDB did not apply {count - expected_points} of the deletes (see BENCHMARKS.md)")
    seconds = float(s["seconds"])
    log(f"  changes_read={s['changes_read']} points_written={s['points_written']} "
        f"points_deleted={s['points_deleted']} seconds={seconds:.3f}")
    return dict(rows=changes, wall=seconds, cpu=cpu, rss=rss, servers=servers, first_write_ms=None)


def prepare_ceiling(changes):
    """The backlog's writes as line protocol (5,000-line files) and its deletes as
    InfluxDB statements (200 a file), made from the same formulas."""
    d = os.path.join(H.OUT, "cdc-lines")
    stamp = os.path.join(d, f".changes-{changes}")
    if not os.path.exists(stamp):
        subprocess.run(["rm", "-rf", d], check=True)
        os.makedirs(d)
        ins, _, _ = mix(changes)
        line = (
            "CONCAT('sensors,device_id=', device_id, ',site=', site, ' ', CONCAT_WS(',', "
            "CONCAT('temperature=', temperature), "
            "IF(humidity IS NULL, NULL, CONCAT('humidity=', humidity)), "
            "IF(pressure IS NULL, NULL, CONCAT('pressure=', pressure)), "
            "IF(status IS NULL, NULL, CONCAT('status=', status, 'i'))), "
            "' ', CAST(UNIX_TIMESTAMP(ts) * 1000 AS SIGNED))"
        )
        updated = " OR ".join(f"id BETWEEN {ua} AND {ub}" for _, (ua, ub), _ in rounds(changes))
        query = (
            "USE factory; SET time_zone = '+00:00'; "
            f"SELECT {line} FROM (SELECT {ROW_SQL} FROM seq_1_to_{ins * ROUNDS}) AS r; "
            f"SELECT {line} FROM factory.{TABLE} WHERE {updated}; "
        )
        with open(os.path.join(d, "all.lp"), "w") as f:
            H.sh(["scripts/services.sh", "sql", query], stdout=f, cwd=H.ROOT)
        H.sh(["split", "-l", "5000", "-d", "-a", "5", "all.lp", "batch-"], cwd=d)
        os.remove(os.path.join(d, "all.lp"))
        deletes = (
            "USE factory; SET time_zone = '+00:00'; "
            "SELECT CONCAT('DELETE FROM \"sensors\" WHERE \"device_id\" = ''', device_id, ''' AND \"site\" = ''', site, "
            "''' AND time = ', CAST(UNIX_TIMESTAMP(ts) * 1000000000 AS SIGNED)) "
            f"FROM (SELECT {ROW_SQL} FROM seq_1_to_{ins * ROUNDS}) AS r WHERE "
            + " OR ".join(f"id BETWEEN {da} AND {db}" for _, _, (da, db) in rounds(changes))
        )
        stmts = H.sql(deletes).splitlines()
        for i in range(0, len(stmts), 200):
            with open(os.path.join(d, f"delete-{i // 200:05d}"), "w") as f:
                f.write(";".join(stmts[i:i + 200]))
        open(stamp, "w").close()
    files = sorted(os.listdir(d))
    return ([os.path.join(d, f) for f in files if f.startswith("batch-")],
            [os.path.join(d, f) for f in files if f.startswith("delete-")])


def run_ceiling(changes, lines, deletes, expected_points):
    db = "bench_cdc_ceiling"
    H.fresh_db(db)
    write = H.curl_senders(lines, 2, "cdc-write", ["-XPOST", f"'{H.INFLUX}/write?db={db}&precision=ms'", "--data-binary"])
    delete = H.curl_senders(deletes, 2, "cdc-delete", ["-XPOST", f"'{H.INFLUX}/query?db={db}'", "--data-urlencode"], prefix="q@")
    _, wall, cpu, rss, servers = H.timed(["bash", "-c", f"{write}; {delete}"])
    count = H.influx_count(db)
    if count != expected_points:
        raise RuntimeError(f"ceiling: InfluxDB holds {count} points, expected {expected_points}")
    return dict(rows=changes, wall=wall, cpu=cpu, rss=rss, servers=servers, first_write_ms=None)


# ------------------------------------------------------------------ lag ---


class Writer(threading.Thread):
    """Inserts `rate` rows/s into the lag table, one multi-row INSERT per slice, through
    one `mariadb` client session; remembers each slice's ts (ms) and size."""

    def __init__(self, rate, slice_ms):
        super().__init__(daemon=True)
        if rate * slice_ms % 1000:
            raise SystemExit(f"--rate must be a multiple of {1000 // slice_ms} rows/s")
        self.per_slice = rate * slice_ms // 1000
        self.slice = slice_ms / 1000
        self.sent = {}  # ts ms → rows
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.late = 0
        self.client = subprocess.Popen(
            ["mariadb", "--no-defaults", "-h127.0.0.1", "-P13306", "-utsmig", "-ptsmig", "factory"],
            stdin=subprocess.PIPE, text=True,
        )

    def run(self):
        n = self.per_slice
        values = [
            f"('dev-{i:04d}', 'site-{i % 7}', '{{ts}}', {20 + (i % 50) / 10}, {40 + i % 50}, {1000 + i % 300 / 10}, {i % 4})"
            for i in range(n)
        ]
        template = (f"INSERT INTO {LAG_TABLE} (device_id, site, ts, temperature, humidity, pressure, status) VALUES "
                    + ",".join(values) + ";\n")
        step = int(self.slice * 1000)
        ms = (int(time.time() * 1000) // step + 1) * step
        while not self.stop.is_set():
            # Each slice is stamped with its scheduled instant (a multiple of the slice
            # length, so it is one InfluxDB time bucket) and sent at that instant or, when
            # the writer runs late, after it: lateness counts as lag, never against it.
            now = time.time()
            if now < ms / 1000:
                time.sleep(ms / 1000 - now)
            elif now - ms / 1000 > self.slice:
                self.late += 1
            ts = datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
            with self.lock:
                self.sent[ms] = n
            self.client.stdin.write(template.replace("{ts}", ts))
            self.client.stdin.flush()
            ms += step

    def finish(self):
        self.stop.set()
        self.join()
        self.client.stdin.close()
        self.client.wait()


class Poller(threading.Thread):
    """Counts new points per slice in InfluxDB every `period` s; records each point's
    (first poll that saw it) − ts, and (the poll before) − ts."""

    def __init__(self, db, writer, period):
        super().__init__(daemon=True)
        self.db, self.writer, self.period = db, writer, period
        self.seen = {}
        self.lags = []  # (ts ms, upper ms, lower ms) per point
        self.polls = []
        self.stop = threading.Event()
        u = urllib.parse.urlparse(H.INFLUX)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)

    def counts(self, first_ms, last_ms):
        step = int(self.writer.slice * 1000)
        q = (f"SELECT count(temperature) FROM sensors WHERE time >= {first_ms}ms AND time <= {last_ms}ms "
             f"GROUP BY time({step}ms) fill(none)")
        self.conn.request("GET", "/query?" + urllib.parse.urlencode({"db": self.db, "q": q, "epoch": "ms"}))
        body = json.loads(self.conn.getresponse().read())
        series = body["results"][0].get("series") or []
        return {int(t): int(c) for t, c in series[0]["values"]} if series else {}

    def run(self):
        previous = time.time() * 1000
        while True:
            stopping = self.stop.is_set()
            with self.writer.lock:
                pending = sorted(ts for ts, n in self.writer.sent.items() if self.seen.get(ts, 0) < n)
            if not pending:
                if stopping:
                    return
                time.sleep(self.period)
                previous = time.time() * 1000
                continue
            sent = time.time() * 1000
            got = self.counts(pending[0], pending[-1])
            received = time.time() * 1000
            self.polls.append(received - sent)
            for ts, c in got.items():
                new = c - self.seen.get(ts, 0)
                if new > 0:
                    self.seen[ts] = c
                    self.lags.extend([(ts, received - ts, max(0.0, previous - ts))] * new)
            previous = sent
            if stopping and time.time() > self.deadline:
                return
            time.sleep(max(0.0, self.period - (time.time() * 1000 - sent) / 1000))

    def finish(self, within):
        self.deadline = time.time() + within
        self.stop.set()
        self.join()


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))] if values else float("nan")


def run_lag(binary, rate, warmup, seconds, poll_ms, workers):
    name = "bench_cdc_lag"
    create_table(LAG_TABLE)
    H.fresh_db(name)
    state = os.path.join(H.OUT, "state", name)
    subprocess.run(["rm", "-rf", state], check=True)
    job = job_file(name, LAG_TABLE, "influx", LAG_SERVER_ID, state)
    env = dict(os.environ, MYSQL_PASSWORD="tsmig", RUST_LOG="info")
    H.quiesce()
    err = open(os.path.join(H.OUT, "cdc-lag.log"), "w")
    proc = subprocess.Popen(
        [binary, "-c", "cdc", "--config", job, "--workers", str(workers), "--progress", "off"],
        stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=H.ROOT,
    )
    try:
        wait_for(lambda: "reading the binlog" in open(err.name).read(), 30, "tsmig to start reading the binlog")
        writer = Writer(rate, 20)
        poller = Poller(name, writer, poll_ms / 1000)
        began = time.time()
        writer.start()
        poller.start()
        time.sleep(warmup + seconds)
        writer.finish()
        sent_rows = sum(writer.sent.values())
        poller.finish(30)
        elapsed = time.time() - began
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        err.close()
    s = summary_of(out)
    rows = int(H.sql(f"SELECT COUNT(*) FROM factory.{LAG_TABLE}"))
    count = H.influx_count(name)
    if rows != sent_rows or count != rows or int(s["changes_read"]) != rows:
        raise RuntimeError(f"lag: sent {sent_rows}, table holds {rows}, tsmig read {s['changes_read']}, InfluxDB holds {count}")
    start_ms = (began + warmup) * 1000
    end_ms = (began + warmup + seconds) * 1000
    measured = [(up, lo) for ts, up, lo in poller.lags if start_ms <= ts < end_ms]
    upper = [u for u, _ in measured]
    lower = [lo for _, lo in measured]
    achieved = sum(n for ts, n in writer.sent.items() if start_ms <= ts < end_ms) / seconds
    result = dict(
        rate=rate, achieved=achieved, points=len(measured), seconds=seconds, workers=workers,
        p50=percentile(upper, 50), p95=percentile(upper, 95), p99=percentile(upper, 99), max=max(upper),
        p99_lower=percentile(lower, 99), poll_ms=statistics.median(poller.polls), late_slices=writer.late,
        total=rows, elapsed=elapsed,
    )
    log(f"  lag over {len(measured):,} points at {achieved:,.0f} rows/s: p50 {result['p50']:.0f} ms, "
        f"p95 {result['p95']:.0f}, p99 {result['p99']:.0f} (≥ {result['p99_lower']:.0f}), max {result['max']:.0f}; "
        f"query {result['poll_ms']:.1f} ms; {writer.late} late slices")
    return result


def wait_for(check, limit, what):
    until = time.time() + limit
    while not check():
        if time.time() > until:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


# ------------------------------------------------------------------ report ---


def report(summary, changes, reps, size, lag):
    ins, upd, dele = mix(changes)
    lines = [
        f"Measured {datetime.date.today().isoformat()} on {H.machine()}; backlog of {changes:,} row changes "
        f"({ROUNDS * ins:,} inserts, {ROUNDS * upd:,} updates, {ROUNDS * dele:,} deletes; {size / 1e6:.0f} MB of binlog), "
        f"median (min–max) of {reps} interleaved runs per configuration.",
        "",
        "| configuration | changes/s | seconds | process CPU s | CPU µs/change | peak RSS MB | mariadbd CPU s | influxd CPU s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in summary.items():
        lines.append(
            f"| {name} | {H.fmt_range(s['rate'])} | {H.fmt_range(s['wall'], 2)} | {H.fmt_range(s['cpu'], 2)} | "
            f"{H.fmt_range(s['us_per_row'], 2)} | {H.fmt_range(s['rss_mb'], 0)} | {s['mariadb_cpu']:.2f} | {s['influxd_cpu']:.2f} |"
        )
    lines.append("")

    def rate(name):
        s = summary.get(name)
        return None if s is None else s["rate"][0]

    def row(label, value, target, met, digits=2):
        if value is None:
            return f"| {label} | – | {target} | not measured |"
        return f"| {label} | {value:,.{digits}f} | {target} | {'met' if met(value) else 'MISSED'} |"

    lines.append("| target (medians) | measured | target | |")
    lines.append("|---|---:|---:|---|")
    # Issue 15's targets: ≥ 500,000 changes/s with 1 worker, ≥ 1,000,000 with 2, ≤ 1 µs of CPU per change.
    for w, least in ((1, 500_000), (2, 1_000_000)):
        lines.append(row(f"catch-up into the blackhole, {w}w, changes/s", rate(f"cdc-null-{w}w"), f"≥ {least:,}", lambda v, least=least: v >= least, 0))
    for w in (1, 2):
        s = summary.get(f"cdc-null-{w}w")
        lines.append(row(f"catch-up into the blackhole, {w}w, CPU µs per change", None if s is None else s["us_per_row"][0], "≤ 1", lambda v: v <= 1.0))
    ceiling = rate("ceiling-influx-2")
    for w in (1, 2):
        r = rate(f"cdc-influx-{w}w")
        lines.append(row(f"catch-up into InfluxDB, {w}w / raw ingest of the same writes and deletes", None if r is None or not ceiling else r / ceiling, "≈ 1 (the sink's ceiling)", lambda v: v >= 0.7))
    if lag:
        lines.append(row(f"end-to-end lag p99 at {lag['achieved']:,.0f} changes/s, ms", lag["p99"], "< 100", lambda v: v < 100, 0))
        lines.append("")
        lines.append(
            f"Lag at {lag['achieved']:,.0f} rows/s (target {lag['rate']:,}) over {lag['seconds']} s, {lag['points']:,} points, "
            f"{lag['workers']} worker(s): p50 {lag['p50']:.0f} ms, p95 {lag['p95']:.0f} ms, p99 {lag['p99']:.0f} ms, "
            f"max {lag['max']:.0f} ms (upper bounds: the first poll that saw the point; the poll before gives p99 ≥ "
            f"{lag['p99_lower']:.0f} ms; one poll query took {lag['poll_ms']:.1f} ms, median)."
        )
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="20,000 changes, one repetition, 5 s of lag, debug build; no BENCHMARKS.md")
    p.add_argument("--changes", type=int)
    p.add_argument("--reps", type=int)
    p.add_argument("--rate", type=int, default=20_000, help="rows/s the lag writer inserts")
    p.add_argument("--seconds", type=int, help="measured seconds of the lag run")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--poll", type=float, default=10, help="ms between InfluxDB polls")
    p.add_argument("--lag-workers", type=int, default=1)
    p.add_argument("--only", help="comma-separated configuration names (and/or `lag`)")
    p.add_argument("--binary", help="tsmig-job to run (default: built here)")
    p.add_argument("--compare", metavar="BASELINE",
                   help="also run every catch-up configuration with this tsmig-job (an earlier build), "
                        "interleaved with this build's runs, and print each median's ratio to it; no BENCHMARKS.md")
    args = p.parse_args()
    changes = args.changes or (20_000 if args.smoke else 1_000_000)
    reps = args.reps or (1 if args.smoke else 3)
    seconds = args.seconds or (5 if args.smoke else 30)
    os.makedirs(H.OUT, exist_ok=True)
    binary = args.binary or H.build(args.smoke)

    start, _, size = make_backlog(changes)
    ins, _, dele = mix(changes)
    points = ROUNDS * (ins - dele)
    lines, deletes = prepare_ceiling(changes)
    configs = [
        ("cdc-null-1w", lambda: run_catchup(binary, "null", 1, changes, start, points)),
        ("cdc-null-2w", lambda: run_catchup(binary, "null", 2, changes, start, points)),
        ("ceiling-influx-2", lambda: run_ceiling(changes, lines, deletes, points)),
        ("cdc-influx-1w", lambda: run_catchup(binary, "influx", 1, changes, start, points)),
        ("cdc-influx-2w", lambda: run_catchup(binary, "influx", 2, changes, start, points)),
    ]
    wanted = set(args.only.split(",")) if args.only else None
    if wanted:
        configs = [c for c in configs if c[0] in wanted]
    if args.compare:
        # Side by side: each catch-up configuration of the baseline right after this build's.
        baseline = []
        for name, _ in configs:
            if name.startswith("cdc-"):
                sink, w = name.split("-")[1], int(name.split("-")[2][:-1])
                baseline.append((f"{name} (baseline)",
                                 lambda sink=sink, w=w: run_catchup(args.compare, sink, w, changes, start, points)))
        configs = [c for pair in zip(configs, baseline) for c in pair] if len(baseline) == len(configs) else configs + baseline

    results = {name: [] for name, _ in configs}
    for rep in range(reps):
        for name, run in configs:
            log(f"rep {rep + 1}/{reps}: {name}")
            r = run()
            log(f"  {r['rows'] / r['wall']:,.0f} changes/s, {r['wall']:.2f}s, cpu {r['cpu']:.2f}s, rss {r['rss'] / 1024:.0f} MB")
            results[name].append(r)
    lag = None
    if not wanted or "lag" in wanted:
        log(f"lag: {args.rate:,} rows/s for {args.warmup}+{seconds} s")
        lag = run_lag(binary, args.rate, args.warmup, seconds, args.poll, args.lag_workers)

    summary = H.summarise(results)
    text = report(summary, changes, reps, size, lag)
    if args.compare:
        text += f"\n\nBaseline: {args.compare}\n\n| configuration | this build / baseline, changes/s (medians) |\n|---|---:|"
        for name in summary:
            if name.endswith(" (baseline)"):
                ours = summary.get(name[: -len(" (baseline)")])
                if ours:
                    text += f"\n| {name[: -len(' (baseline)')]} | {ours['rate'][0] / summary[name]['rate'][0]:.3f} |"
    print(text)
    if not args.smoke and not wanted and not args.compare:
        H.write_benchmarks(text, "cdc")
    for db in ("bench_cdc_influx", "bench_cdc_ceiling", "bench_cdc_lag"):
        H.influx(f'DROP DATABASE "{db}"')
    H.sql(f"DROP TABLE IF EXISTS factory.{TABLE}; DROP TABLE IF EXISTS factory.{LAG_TABLE}")


if __name__ == "__main__":
    main()
