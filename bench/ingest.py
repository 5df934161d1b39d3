#!/usr/bin/env python3
"""The ingest endpoint benchmark (issue 15): line protocol POSTed to `tsmig-job -c ingest`
into the blackhole sink, so what is measured is the endpoint and the engine alone.

For each configuration a fresh `tsmig-job -c ingest` (release; --smoke: debug) listens on
a free port with `--workers W`. N sensor-like points (default 2,000,000;
`sensors,device=dev-0042,site=site-3`, 4 to 6 fields of floats, integers and booleans,
nanosecond timestamps, one point per device and second) are encoded once, before any
run, into request bodies of --batch lines (default 5,000, ~0.5 MB), and K client
processes (fork; one keep-alive `http.client` connection each) POST their share of the
bodies to `/api/v2/write?bucket=bench&precision=ns` back to back:

  {label}-{ack}-Kc-Ww  K clients (--clients, default 1,2,4), W workers (--workers, default
                       2), the job's `ack` mode: `durable` (each 204 once the sink has the
                       points, a round trip of about one 20 ms epoch per request) or
                       `async` (204 once queued; max_pending_points is set past N, so the
                       points queue up in memory: peak RSS grows with N)

A request answered 429 or 503 is retried after its Retry-After (counted); any other answer
than 204 fails the run. The run ends when every point is counted by the sink (the
metrics endpoint, polled every 20 ms, with a deadline); then the job is stopped (SIGTERM)
and its summary must say rows_read = points_written = N and nothing dead-lettered.

Measured per run: wall time from the first request to the last point counted; the job's
CPU (user+sys from /proc/PID/stat) over the same interval, so startup is not charged;
its peak RSS (VmHWM); and the clients' own CPU (the Python side: sending the bodies,
reading the answers), reported apart. `--perf FILE` records the job of the first run with
`perf record --call-graph dwarf` (its CPU figures then include perf's own cost). On this 2-core machine the clients and the job share
the cores; CPU per point is the figure to compare, points/s depends on the clients too.

--baseline BIN runs another tsmig-job (e.g. one built before a change) beside this build,
interleaved run by run. Figures go to stdout; the BENCHMARKS.md section is written by hand
from them (see "Ingest endpoint" there).
"""

import argparse
import datetime
import http.client
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

log = H.log
DEVICES = 1000
# 2026-01-01T00:00:00Z in nanoseconds.
T0 = 1_767_225_600_000_000_000


# ------------------------------------------------------------------ data ---


def line(i):
    """Point number i: device i mod 1000, one point per device and second, 4 to 6 fields."""
    d = i % DEVICES
    t = T0 + (i // DEVICES) * 1_000_000_000
    fields = (
        f"temperature={20 + (i % 97) / 8},humidity={40 + i % 50}.5,"
        f"pressure={1000 + (i % 300) / 10},status={i % 4}i"
    )
    extra = i % 3
    if extra >= 1:
        fields += f",battery={i % 101}i"
    if extra == 2:
        fields += f",online={'true' if i % 2 else 'false'}"
    return f"sensors,device=dev-{d:04d},site=site-{d % 7} {fields} {t}"


def bodies(points, batch):
    """The points as request bodies of `batch` lines each."""
    out = []
    for start in range(0, points, batch):
        text = "\n".join(line(i) for i in range(start, min(points, start + batch)))
        out.append((text + "\n").encode())
    return out


# ------------------------------------------------------------------ the job ---


def job_file(name, port, ack, workers_dir):
    text = f"""name: {name}
mode: ingest
source:
  type: ingest
  listen: 127.0.0.1:{port}
  api: [v1, v2]
  ack: {ack}
  # Every point of the run may be pending at once: clients are not slowed by 429s.
  max_pending_points: 100000000
  max_body_bytes_in_flight: 2147483648
sink:
  type: blackhole
  batch_size: 5000
dead_letter: {os.path.join(workers_dir, "dead-letter.jsonl")}
"""
    path = os.path.join(workers_dir, "job.yaml")
    with open(path, "w") as f:
        f.write(text)
    return path


def metric(port, name):
    """A counter from the job's metrics endpoint (None until it answers)."""
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/metrics")
        for row in conn.getresponse().read().decode().splitlines():
            if row.startswith(name + " ") or row.startswith(name + "{"):
                return int(float(row.split()[-1]))
        return 0
    except OSError:
        return None


def proc_cpu(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / H.CLOCK_TICKS


def proc_kb(pid, key):
    for row in open(f"/proc/{pid}/status"):
        if row.startswith(key + ":"):
            return int(row.split()[1])
    return 0


def wait_for(check, limit, what):
    until = time.monotonic() + limit
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > until:
            raise RuntimeError(f"timed out after {limit:.0f} s waiting for {what}")
        time.sleep(0.02)


def ping(port):
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/ping")
        return conn.getresponse().status == 204
    except OSError:
        return False


# ------------------------------------------------------------------ clients ---


def client(port, my_bodies, ready, start, results):
    """One client: its bodies, one after the other, on one keep-alive connection. It
    connects, says so (`ready`), then waits for `start`."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    path = "/api/v2/write?bucket=bench&precision=ns"
    headers = {"Content-Type": "text/plain; charset=utf-8"}
    retries = 0
    conn.connect()
    ready.release()
    start.wait()
    cpu0 = time.process_time()
    try:
        for body in my_bodies:
            while True:
                conn.request("POST", path, body=body, headers=headers)
                response = conn.getresponse()
                answer = response.read()
                if response.status == 204:
                    break
                if response.status in (429, 503):
                    retries += 1
                    if response.getheader("connection", "").lower() == "close":
                        conn.close()
                    time.sleep(float(response.getheader("retry-after", "1")))
                    continue
                raise RuntimeError(f"POST answered {response.status}: {answer[:500]!r}")
        results.put(("ok", time.process_time() - cpu0, retries))
    except Exception as e:  # noqa: BLE001 - reported to the parent, which fails the run
        results.put(("error", str(e), retries))


def run(binary, ack, clients, workers, all_bodies, points, deadline, perf=None):
    """One run; returns its measurements. `perf`: a file for `perf record` of the job
    while the clients send (its CPU figures then include perf's own cost)."""
    name = f"bench-ingest-{ack}"
    work = os.path.join(H.OUT, "ingest", f"{os.getpid()}-{time.monotonic_ns()}")
    os.makedirs(work)
    port, metrics_port = free_ports(2)
    job = job_file(name, port, ack, work)
    env = dict(os.environ, RUST_LOG="warn")
    cmd = [binary, "-c", "ingest", "--config", job, "--workers", str(workers), "--progress", "off",
           "--metrics-addr", f"127.0.0.1:{metrics_port}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(os.path.join(work, "job.log"), "w"),
                            text=True, env=env, cwd=work)
    ctx = multiprocessing.get_context("fork")
    ready, start, results = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    children = []
    try:
        wait_for(lambda: proc.poll() is not None or ping(port), 60, "the endpoint to answer /ping")
        if proc.poll() is not None:
            raise RuntimeError(f"tsmig-job exited ({proc.returncode}):\n{open(os.path.join(work, 'job.log')).read()[-3000:]}")
        children = [ctx.Process(target=client, args=(port, all_bodies[k::clients], ready, start, results))
                    for k in range(clients)]
        for c in children:
            c.start()
        for _ in children:  # every client connected and waiting
            if not ready.acquire(timeout=60):
                raise RuntimeError("a client did not connect within 60 s")
        profiler = None
        if perf:
            if os.path.exists(perf):
                os.remove(perf)
            profiler = subprocess.Popen(["perf", "record", "-F", "999", "--call-graph", "dwarf,32768", "-o", perf, "-p", str(proc.pid)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            # perf writes its file's header once it is attached.
            wait_for(lambda: profiler.poll() is not None or (os.path.exists(perf) and os.path.getsize(perf) > 0),
                     30, "perf to attach")
            if profiler.poll() is not None:
                raise RuntimeError(f"perf record exited ({profiler.returncode})")
        cpu0 = proc_cpu(proc.pid)
        began = time.monotonic()
        start.set()
        answers = [results.get(timeout=deadline) for _ in children]
        for c in children:
            c.join()
        errors = [a[1] for a in answers if a[0] != "ok"]
        if errors:
            raise RuntimeError(f"client failed: {errors[0]}")
        answered = time.monotonic()

        def counted():
            n = metric(metrics_port, "tsmig_sink_points_written_total")
            if n is not None and n > points:
                raise RuntimeError(f"the sink counted {n} points, more than the {points} sent")
            return n == points

        wait_for(counted, deadline, f"the sink to count {points} points")
        wall = time.monotonic() - began
        cpu = proc_cpu(proc.pid) - cpu0
        rss = proc_kb(proc.pid, "VmHWM")
        if profiler:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(timeout=120)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        for c in children:
            if c.is_alive():
                c.kill()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"tsmig-job exited {proc.returncode}:\n{open(os.path.join(work, 'job.log')).read()[-3000:]}")
    summary = dict(kv.split("=", 1) for kv in out.split("summary: ", 1)[1].split())
    if int(summary["rows_read"]) != points or int(summary["points_written"]) != points or int(summary["dead_lettered"]) != 0:
        raise RuntimeError(f"summary does not add up to {points} points: {summary}")
    subprocess.run(["rm", "-rf", work], check=True)
    return dict(
        rows=points, wall=wall, cpu=cpu, rss=rss, answered=answered - began,
        client_cpu=sum(a[1] for a in answers), retries=sum(a[2] for a in answers),
    )


def free_ports(n):
    import socket
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


# ------------------------------------------------------------------ report ---


def rng(values, digits=0):
    return H.fmt_range((statistics.median(values), min(values), max(values)), digits)


def report(results, points, batch, reps, loads, build, baseline):
    lines = [
        f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC on {H.machine()}; "
        f"{points:,} points in {batch:,}-line requests, tsmig-job {build}, blackhole sink "
        f"(configuration: build-ack-clients-workers); "
        f"median (min–max) of {reps} interleaved runs per configuration; load average "
        f"{min(loads):.1f}–{max(loads):.1f} (1 min, sampled before each run)."
        + (f" `baseline` is {baseline}." if baseline else ""),
        "",
        "| configuration | points/s | wall s | job CPU s | job CPU µs/point | peak RSS MB | client CPU µs/point | retries |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, runs in results.items():
        lines.append(
            f"| {name} | {rng([r['rows'] / r['wall'] for r in runs])} | {rng([r['wall'] for r in runs], 2)} | "
            f"{rng([r['cpu'] for r in runs], 2)} | {rng([r['cpu'] * 1e6 / r['rows'] for r in runs], 2)} | "
            f"{rng([r['rss'] / 1024 for r in runs])} | {rng([r['client_cpu'] * 1e6 / r['rows'] for r in runs], 2)} | "
            f"{statistics.median(r['retries'] for r in runs):.0f} |"
        )
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="10,000 points in 1,000-line requests, 1 and 2 clients, one repetition, debug build")
    p.add_argument("--points", type=int)
    p.add_argument("--batch", type=int, help="lines per request (default 5,000)")
    p.add_argument("--clients", default=None, help="comma-separated client counts (default 1,2,4)")
    p.add_argument("--ack", default="durable,async", help="comma-separated ack modes (default durable,async)")
    p.add_argument("--workers", default="2", help="comma-separated worker counts (default 2)")
    p.add_argument("--reps", type=int)
    p.add_argument("--binary", help="tsmig-job to run (default: built here)")
    p.add_argument("--baseline", metavar="BIN", help="another tsmig-job to run beside this build, interleaved")
    p.add_argument("--perf", metavar="FILE", help="`perf record -g` the job of the first run into FILE")
    p.add_argument("--deadline", type=float, default=300, help="seconds a run may take to be counted")
    args = p.parse_args()
    points = args.points or (10_000 if args.smoke else 2_000_000)
    batch = args.batch or (1_000 if args.smoke else 5_000)
    reps = args.reps or (1 if args.smoke else 3)
    counts = [int(k) for k in (args.clients or ("1,2" if args.smoke else "1,2,4")).split(",")]
    acks = args.ack.split(",")
    for ack in acks:
        if ack not in ("durable", "async"):
            raise SystemExit(f"--ack: `{ack}` is not durable or async")
    os.makedirs(os.path.join(H.OUT, "ingest"), exist_ok=True)
    binary = args.binary or H.build(args.smoke)
    builds = [("tsmig", binary)] + ([("baseline", args.baseline)] if args.baseline else [])

    began = time.monotonic()
    all_bodies = bodies(points, batch)
    log(f"{points:,} points in {len(all_bodies)} bodies of {batch:,} lines, "
        f"{sum(map(len, all_bodies)) / 1e6:.0f} MB, encoded in {time.monotonic() - began:.1f} s")

    workers = [int(w) for w in args.workers.split(",")]
    configs = [(f"{label}-{ack}-{k}c-{w}w", tsmig, ack, k, w)
               for w in workers for ack in acks for k in counts for label, tsmig in builds]
    results = {name: [] for name, *_ in configs}
    loads = []
    for rep in range(reps):
        for name, tsmig, ack, k, w in configs:
            loads.append(os.getloadavg()[0])
            log(f"rep {rep + 1}/{reps}: {name} (load {loads[-1]:.2f})")
            perf, args.perf = args.perf, None
            r = run(tsmig, ack, k, w, all_bodies, points, args.deadline, perf)
            log(f"  {r['rows'] / r['wall']:,.0f} points/s, wall {r['wall']:.2f}s, cpu {r['cpu']:.2f}s "
                f"({r['cpu'] * 1e6 / r['rows']:.2f} µs/point), rss {r['rss'] / 1024:.0f} MB, "
                f"clients {r['client_cpu'] * 1e6 / r['rows']:.2f} µs/point, {r['retries']} retries")
            results[name].append(r)
    build = args.binary or ("debug build" if args.smoke else "release build")
    print(report(results, points, batch, reps, loads, build, args.baseline))


if __name__ == "__main__":
    main()
