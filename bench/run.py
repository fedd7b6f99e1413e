#!/usr/bin/env python3
"""Run the benchmark workloads against Weft and its peers in one run, and
print one table per workload with Weft's ratios to each peer.

Peers: the Node reference server (@durable-streams/server, pinned in
package-lock.json) in memory and file-backed, and nginx answering 204 — the
ceiling of what this machine does over HTTP with this load generator (write
workloads only). Every server starts fresh for every run; CPU time and RSS
come from /proc for the server's whole process tree over the measurement.

Usage: bench/run.py {smoke|quick|full} [--only WORKLOAD] [--out FILE]
"""
import argparse
import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOADGEN = os.path.join(ROOT, "build", "loadgen")
FLOOR = os.path.join(ROOT, "build", "floor")
WEFT = os.path.join(ROOT, "build", "weft")
TICK = os.sysconf("SC_CLK_TCK")
# Against nginx, weft runs this many times in all, each time right before
# nginx: the machine's speed drifts by tens of percent within minutes, so
# the ratio is the median of back-to-back pairs, not of one pair of runs
# minutes apart.
PAIRS = {"smoke": 1, "quick": 1, "full": 3}

# (workload, label, loadgen args, servers) per mode.
PLANS = {
    "smoke": [
        ("append", "256B, 8 conns, 10 streams", ["--connections", "8", "--streams", "10", "--size", "256", "--producer"], ["weft"]),
        ("sse", "10 subscribers", ["--subscribers", "10", "--rate", "50", "--size", "256"], ["weft"]),
        # ~5 s: a handful of sessions, a 10,000-chunk history
        ("collab", "5 sessions x (agent + 3 participants), 10k-chunk attach",
         ["--sessions", "5", "--warmup", "0.5", "--grace", "0.5", "--history", "10000", "--attaches", "40"], ["weft"]),
    ],
    "quick": [
        ("append", "256B, 64 conns, 100 streams", ["--connections", "64", "--streams", "100", "--size", "256", "--producer"], ["weft", "node-mem", "node-file", "nginx"]),
        ("append", "256B, 64 conns, 10k streams", ["--connections", "64", "--streams", "10000", "--size", "256", "--producer"], ["weft", "node-mem", "nginx"]),
        ("sse", "100 subscribers", ["--subscribers", "100", "--rate", "50", "--size", "256"], ["weft", "node-mem"]),
        ("longpoll", "100 readers / 10 streams", ["--readers", "100", "--streams", "10", "--rate", "50", "--size", "256"], ["weft", "node-mem"]),
        ("catchup", "50 clients x 200 x 1KiB", ["--clients", "50", "--messages", "200", "--size", "1024"], ["weft", "node-mem"]),
        ("tokens", "50 sessions", ["--sessions", "50", "--rate", "30", "--size", "20", "--readers", "2"], ["weft", "node-mem"]),
        ("idle", "1000 SSE subscribers", ["--subscribers", "1000"], ["weft", "node-mem"]),
        ("collab", "100 sessions x (agent + 3 participants), 100k-chunk attach", ["--sessions", "100"], ["weft"]),
    ],
    "full": [
        ("append", "256B, 64 conns, 100 streams", ["--connections", "64", "--streams", "100", "--size", "256", "--producer"], ["weft", "node-mem", "node-file", "nginx"]),
        ("append", "256B, 64 conns, 10k streams", ["--connections", "64", "--streams", "10000", "--size", "256", "--producer"], ["weft", "node-mem", "node-file", "nginx"]),
        # 45 s: with 100k streams weft checkpoints about every 400 MiB of
        # WAL (4 KiB per stream written), ~30 s at this rate; a shorter run
        # would leave the checkpoint's cost out.
        ("append", "256B, 64 conns, 100k streams, 45 s", ["--connections", "64", "--streams", "100000", "--size", "256", "--producer", "--duration", "45"], ["weft", "node-mem", "node-file", "nginx"]),
        ("sse", "1 subscriber", ["--subscribers", "1", "--rate", "50", "--size", "256"], ["weft", "node-mem", "node-file"]),
        ("sse", "100 subscribers", ["--subscribers", "100", "--rate", "50", "--size", "256"], ["weft", "node-mem", "node-file"]),
        ("sse", "1000 subscribers", ["--subscribers", "1000", "--rate", "50", "--size", "256"], ["weft", "node-mem", "node-file"]),
        ("sse", "10000 subscribers", ["--subscribers", "10000", "--rate", "50", "--size", "256", "--threads", "2"], ["weft", "node-mem"]),
        ("longpoll", "1000 readers / 100 streams", ["--readers", "1000", "--streams", "100", "--rate", "50", "--size", "256"], ["weft", "node-mem", "node-file"]),
        ("catchup", "1000 clients x 2000 x 1KiB", ["--clients", "1000", "--messages", "2000", "--size", "1024"], ["weft", "node-mem", "node-file"]),
        ("tokens", "1000 sessions", ["--sessions", "1000", "--rate", "30", "--size", "20", "--readers", "2"], ["weft", "node-mem", "node-file"]),
        ("idle", "18000 SSE subscribers", ["--subscribers", "18000", "--threads", "2"], ["weft", "node-mem"]),
        ("collab", "1000 sessions x (agent + 3 participants), 100k-chunk attach", ["--sessions", "1000"], ["weft"]),
        ("collab", "1000 sessions, agents post 5 chunks per request",
         ["--sessions", "1000", "--chunk-batch", "5", "--history", "0"], ["weft"]),
    ],
}
DURATION = {"smoke": "2", "quick": "3", "full": "10"}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited during start-up")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start listening")


class Server:
    """One fresh server process (tree) for one run."""

    def __init__(self, kind):
        self.kind = kind
        self.dir = tempfile.mkdtemp(prefix="weft-bench-%s-" % kind)
        self.port = free_port()
        log = open(os.path.join(self.dir, "server.log"), "wb")
        if kind == "weft":
            cmd = [WEFT, "serve", "--port", str(self.port), "--data-dir", os.path.join(self.dir, "data"),
                   "--max-connections", "19000"]
        elif kind in ("node-mem", "node-file"):
            cmd = ["node", os.path.join(ROOT, "bench", "peers", "node-server.mjs"), str(self.port)]
            if kind == "node-file":
                cmd.append(os.path.join(self.dir, "data"))
        elif kind == "nginx":
            conf = open(os.path.join(ROOT, "bench", "nginx.conf.in")).read()
            conf = conf.replace("@PORT@", str(self.port)).replace("@DIR@", self.dir)
            path = os.path.join(self.dir, "nginx.conf")
            open(path, "w").write(conf)
            cmd = ["nginx", "-p", self.dir, "-c", path]
        else:
            raise ValueError(kind)
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
        wait_port(self.port, self.proc)

    def pids(self):
        """The server process and its descendants (nginx workers)."""
        children = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    ppid = int(open("/proc/%s/stat" % d).read().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(ppid, []).append(int(d))
        out, todo = [], [self.proc.pid]
        while todo:
            p = todo.pop()
            out.append(p)
            todo.extend(children.get(p, []))
        return out

    def cpu_ms(self):
        total = 0
        for p in self.pids():
            try:
                f = open("/proc/%d/stat" % p).read().rsplit(")", 1)[1].split()
                total += int(f[11]) + int(f[12])
            except (OSError, IndexError, ValueError):
                pass
        return total * 1000.0 / TICK

    def rss_kb(self, field="VmRSS"):
        total = 0
        for p in self.pids():
            try:
                for line in open("/proc/%d/status" % p):
                    if line.startswith(field + ":"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def run_one(mode, workload, label, args, kind):
    srv = Server(kind)
    out = os.path.join(srv.dir, "result.json")
    cmd = [LOADGEN, workload, "--url", "http://127.0.0.1:%d" % srv.port, "--duration", DURATION[mode],
           "--label", kind, "--json", out, "--server-pid", ",".join(map(str, srv.pids()))] + args
    if kind == "nginx":
        cmd.append("--no-create")
    try:
        cpu0 = srv.cpu_ms()
        t0 = time.time()
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900)
        wall = time.time() - t0
        cpu1 = srv.cpu_ms()
        text = p.stdout.decode(errors="replace").strip()
        if p.returncode != 0 or not os.path.exists(out):
            print("  %-9s FAILED (%s): %s" % (kind, p.returncode, text[-400:]))
            return None
        r = json.loads(open(out).read().strip().splitlines()[-1])
        r["server"] = kind
        r["case"] = label
        r["wall_s"] = round(wall, 2)
        r["server_cpu_ms_total"] = round(cpu1 - cpu0, 1)
        r["server_rss_kb_peak_tree"] = srv.rss_kb("VmHWM")
        print("  %-9s %s" % (kind, text.splitlines()[-1] if text else ""))
        return r
    finally:
        srv.stop()


def fmt(v, digits=0):
    if v is None:
        return "-"
    if isinstance(v, float) or digits:
        return ("%." + str(digits) + "f") % v
    return str(v)


def table(rows, ratios=True):
    cols = ["server", "ops/s", "MB/s", "p50 us", "p90 us", "p99 us", "p999 us", "cpu us/op", "peak RSS MB", "errors"]
    lines = [cols]
    for r in rows:
        lat = r.get("latency_us", {})
        lines.append([r["server"], fmt(r.get("ops_per_sec"), 0), fmt(r.get("mb_per_sec"), 1),
                      fmt(lat.get("p50")), fmt(lat.get("p90")), fmt(lat.get("p99")), fmt(lat.get("p999")),
                      fmt(r.get("server_cpu_us_per_op"), 1), fmt((r.get("server_rss_kb_peak") or 0) / 1024.0, 1),
                      fmt(r.get("errors"))])
    widths = [max(len(str(l[i])) for l in lines) for i in range(len(cols))]
    for l in lines:
        print("  " + "  ".join(str(c).rjust(w) for c, w in zip(l, widths)))
    weft = next((r for r in rows if r["server"] == "weft"), None)
    if ratios and weft and weft.get("ops_per_sec"):
        for r in rows:
            if r is weft or not r.get("ops_per_sec"):
                continue
            cpu = ""
            if weft.get("server_cpu_us_per_op") and r.get("server_cpu_us_per_op"):
                cpu = ", CPU/op %.2fx" % (weft["server_cpu_us_per_op"] / r["server_cpu_us_per_op"])
            print("  weft/%s: throughput %.2fx%s" % (r["server"], weft["ops_per_sec"] / r["ops_per_sec"], cpu))


def nginx_pairs(mode, workload, label, args, weft, nginx):
    """More back-to-back weft, nginx runs; prints and returns the median
    ratios over all pairs (the first is the table's)."""
    pairs = [(weft, nginx)]
    while len(pairs) < PAIRS[mode]:
        w = run_one(mode, workload, label, args, "weft")
        n = run_one(mode, workload, label, args, "nginx")
        if not w or not n:
            break
        pairs.append((w, n))
    cpu = sorted(w["server_cpu_us_per_op"] / n["server_cpu_us_per_op"] for w, n in pairs
                 if w.get("server_cpu_us_per_op") and n.get("server_cpu_us_per_op"))
    ops = sorted(w["ops_per_sec"] / n["ops_per_sec"] for w, n in pairs if n.get("ops_per_sec"))
    median = lambda v: v[len(v) // 2] if v else None
    print("  weft/nginx over %d back-to-back pairs: CPU/op %s (median %.2fx), throughput median %.2fx"
          % (len(pairs), " ".join("%.2fx" % x for x in cpu), median(cpu) or 0, median(ops) or 0))
    return {"server": "weft/nginx pairs", "case": label, "workload": workload, "pairs": len(pairs),
            "cpu_per_op_ratios": cpu, "cpu_per_op_ratio_median": median(cpu),
            "throughput_ratio_median": median(ops),
            "runs": [{"weft": w, "nginx": n} for w, n in pairs[1:]]}


def arg_of(args, name, default):
    return args[args.index(name) + 1] if name in args else default


def fsync_floor(n=200):
    """Milliseconds per 4 KiB append + fdatasync on the disk the servers'
    data directories are on (tempfile's): every session write is answered,
    and every event delivered, only once it is durable."""
    d = tempfile.mkdtemp(prefix="weft-bench-fsync-")
    try:
        fd = os.open(os.path.join(d, "f"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        lat = []
        for _ in range(n):
            t0 = time.perf_counter()
            os.write(fd, b"x" * 4096)
            os.fdatasync(fd)
            lat.append((time.perf_counter() - t0) * 1000)
        os.close(fd)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    lat.sort()
    return lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]


def verdict(ok):
    return "met" if ok else "NOT met"


def collab(mode, label, args, floors):
    """The sessions workload (issue 18), and right after each collab run the
    plain-stream tokens workload with the same sessions, rate, size and as
    many SSE readers as participants, on weft, back to back: the ratio of
    server CPU per delivered token. In full mode PAIRS[mode] pairs (the
    history and attaches only in the first). Prints the issue's targets as
    met / not met, with the floors measured in this run."""
    sessions, parts = arg_of(args, "--sessions", "100"), arg_of(args, "--participants", "3")
    tok_args = ["--sessions", sessions, "--readers", parts, "--rate", arg_of(args, "--rate", "30"),
                "--size", arg_of(args, "--size", "20")]
    if "--warmup" in args:
        tok_args += ["--warmup", arg_of(args, "--warmup", "1")]
    rows, pairs = [], []
    baseline = mode != "smoke"
    for i in range(PAIRS[mode] if baseline else 1):
        a = list(args)
        if i > 0:
            a += ["--history", "0"]
        c = run_one(mode, "collab", label, a, "weft")
        if not c:
            return rows, 1
        rows.append(c)
        if not baseline:
            break
        t = run_one(mode, "tokens", "tokens baseline: %s sessions x %s readers" % (sessions, parts), tok_args, "weft")
        if not t:
            return rows, 1
        t["server"] = "weft tokens"
        rows.append(t)
        pairs.append((c, t))
    table(rows, ratios=False)
    c = rows[0]
    ms = lambda us: "%.1f ms" % (us / 1000.0)
    runs = [r for r in rows if r.get("workload") == "collab"]
    med = lambda v: sorted(v)[len(v) // 2] if v else None
    tok99 = med([r.get("latency_us", {}).get("p99", 1e12) for r in runs])
    op99 = med([r.get("op_latency_us", {}).get("p99", 1e12) for r in runs])
    if len(runs) > 1:
        print("  over the %d collab runs: token p99 %s, op p99 %s (medians %s, %s); CPU per token %s us"
              % (len(runs), " ".join(ms(r["latency_us"]["p99"]) for r in runs),
                 " ".join(ms(r["op_latency_us"]["p99"]) for r in runs), ms(tok99), ms(op99),
                 " ".join("%.1f" % (r.get("server_cpu_us_per_token") or 0) for r in runs)))
        print("  the lines below are the first run's")
    lat, op, pres = c.get("latency_us", {}), c.get("op_latency_us", {}), c.get("presence_latency_us", {})
    print("  token append->delivery: p50 %s p99 %s (%d of %d delivered; %d of %d scheduled sent)"
          % (ms(lat.get("p50", 0)), ms(lat.get("p99", 0)), c.get("tokens_delivered", 0), c.get("tokens_expected", 0),
             c.get("tokens_sent", 0), c.get("tokens_scheduled", 0)))
    print("  op append->delivery:    p50 %s p99 %s (%d of %d); presence p50 %s p99 %s (%d of %d)"
          % (ms(op.get("p50", 0)), ms(op.get("p99", 0)), c.get("ops_delivered", 0), c.get("ops_expected", 0),
             ms(pres.get("p50", 0)), ms(pres.get("p99", 0)), c.get("presence_delivered", 0),
             c.get("presence_expected", 0)))
    if c.get("seq_gaps") or c.get("seq_dups"):
        print("  CHUNK SEQUENCE: %d gaps, %d duplicates" % (c.get("seq_gaps", 0), c.get("seq_dups", 0)))
    print("  server CPU per delivered event %.1f us (%d events), per delivered token %.1f us"
          % (c.get("server_cpu_us_per_event") or 0, c.get("events_delivered", 0), c.get("server_cpu_us_per_token") or 0))
    print("  server RSS per session %.0f B, per idle participant %.0f B (second half of them: %.0f B, %.0f B)"
          % (c.get("rss_per_session_bytes", 0), c.get("rss_per_idle_participant_bytes", 0),
             c.get("rss_per_session_bytes_second_half", 0), c.get("rss_per_idle_participant_bytes_second_half", 0)))
    att = c.get("attach")
    if att:
        print("  attach of a %d-chunk session (%d B answer): %.2f ms wall (p50 %s p99 %s), %.2f ms server CPU;"
              " empty session (%d B): %.2f ms, %.2f ms CPU; server time per attach %.2f ms (CPU %.2f ms), %d each"
              % (att["history_chunks"], att["bytes"], att["wall_ms_mean"], ms(att["wall_us_p50"]),
                 ms(att["wall_us_p99"]), att["server_cpu_ms"], att["empty_bytes"], att["empty_wall_ms_mean"],
                 att["empty_server_cpu_ms"], att["server_ms"], att["server_cpu_ms_net"], att["count"]))
    ratios = sorted(c2["server_cpu_us_per_token"] / t2["server_cpu_us_per_token"] for c2, t2 in pairs
                    if c2.get("server_cpu_us_per_token") and t2.get("server_cpu_us_per_token"))
    median = ratios[len(ratios) // 2] if ratios else None
    if pairs:
        t = pairs[0][1]
        tl = t.get("latency_us", {})
        print("  tokens workload (plain streams, same sessions, %s readers): %.1f us CPU per delivered token,"
              " p50 %s p99 %s" % (parts, t.get("server_cpu_us_per_token") or 0, ms(tl.get("p50", 0)),
                                  ms(tl.get("p99", 0))))
        print("  collab/tokens CPU per delivered token over %d back-to-back pair%s: %s (median %.2fx)"
              % (len(pairs), "" if len(pairs) == 1 else "s", " ".join("%.2fx" % r for r in ratios), median or 0))
    fs50, fs99 = fsync_floor()
    print("  floors: 4 KiB append + fdatasync on this disk p50 %.2f ms p99 %.2f ms; empty-session attach %s;"
          % (fs50, fs99, "%.2f ms" % att["empty_wall_ms_mean"] if att else "-"))
    for line in floors:
        if "--sockets 1000" in line or "1000 sockets" in line:
            print("          " + line)
    if not floors:
        print("          (loopback write floor: not measured in smoke mode)")
    print("  targets (2 cores shared by server and load generator):")
    over = "" if len(runs) == 1 else ", median of %d runs" % len(runs)
    if not all(r.get("tokens_delivered") and r.get("ops_delivered") for r in runs):
        tok99 = op99 = 1e12  # nothing delivered: not met
    print("    token p99 <= 10 ms: %s (%s%s)" % (verdict(tok99 <= 10000), ms(tok99), over))
    print("    op p99 <= 10 ms: %s (%s%s)" % (verdict(op99 <= 10000), ms(op99), over))
    rp, rp2 = c.get("rss_per_idle_participant_bytes"), c.get("rss_per_idle_participant_bytes_second_half")
    if rp is not None and c.get("connected", 0) < 1000:
        print("    <= 4 KiB per idle participant: not judged (%d participants are too few for RSS to resolve;"
              " full mode has 3,000): %.0f B on the whole average, %.0f B on the second half"
              % (c.get("connected", 0), rp, rp2 or 0))
    elif rp is not None:
        print("    <= 4 KiB per idle participant: %s on the whole average (%.0f B), %s on the second half (%.0f B)"
              % (verdict(rp <= 4096), rp, verdict((rp2 or 1e12) <= 4096), rp2 or 0))
    if att:
        print("    attach of a %d-chunk session <= 5 ms server time: %s (%.2f ms; CPU %.2f ms)%s"
              % (att["history_chunks"], verdict(att["server_ms"] <= 5), att["server_ms"], att["server_cpu_ms_net"],
                 "" if att["history_chunks"] >= 100000 else " [smaller history than the target's 100,000]"))
    if median is not None:
        print("    CPU per delivered token <= 0.5x the tokens workload's: %s (%.2fx)" % (verdict(median <= 0.5), median))
    summary = {"workload": "collab-summary", "server": "weft", "case": label, "pairs": len(pairs),
               "cpu_per_token_ratios": ratios, "cpu_per_token_ratio_median": median,
               "token_p99_us_median": tok99, "op_p99_us_median": op99,
               "fsync_ms_p50": round(fs50, 3), "fsync_ms_p99": round(fs99, 3)}
    return rows + [summary], 0


def many_streams(results):
    """Weft's CPU per append with many streams against with few, measured in
    the same run: sessions multiply streams, so the cost should not."""
    cpu = {}
    for r in results:
        if r.get("server") == "weft" and r.get("workload") == "append" and r.get("server_cpu_us_per_op"):
            n = {100: "100 streams", 10000: "10k streams"}.get(r.get("params", {}).get("streams"))
            if n:
                cpu.setdefault(n, r["server_cpu_us_per_op"])
    if len(cpu) == 2:
        ratio = cpu["10k streams"] / cpu["100 streams"]
        print("== many streams: weft CPU per append %.1f us at 10k streams, %.1f us at 100: %.2fx"
              % (cpu["10k streams"], cpu["100 streams"], ratio))
        results.append({"workload": "many-streams", "server": "weft", "cpu_us_100": cpu["100 streams"],
                        "cpu_us_10k": cpu["10k streams"], "ratio": ratio})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=sorted(PLANS))
    ap.add_argument("--only")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "latest.json"))
    a = ap.parse_args()
    results = []
    failures = 0
    floors = []
    if a.mode != "smoke" and os.path.exists(FLOOR):
        # The machine's floor under every fan-out number: one small write to a
        # loopback socket (see bench/floor.c).
        print("== floor: loopback write cost on this machine")
        # both ends in one process: 9000 pairs fit 20,000 fds; --uring batches
        # the writes as weft does (src/net/iobatch.c)
        for args in (["--sockets", "1000"], ["--sockets", "1000", "--uring"], ["--sockets", "9000"],
                     ["--sockets", "9000", "--uring"]):
            p = subprocess.run([FLOOR, "--seconds", "3"] + args, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=120)
            line = p.stdout.decode(errors="replace").strip()
            print("  " + line)
            floors.append(line)
    for workload, label, args, servers in PLANS[a.mode]:
        if a.only and workload != a.only:
            continue
        if "nginx" in servers and not shutil.which("nginx"):
            servers = [s for s in servers if s != "nginx"]
        print("== %s: %s" % (workload, label))
        if workload == "collab":
            rows, failed = collab(a.mode, label, args, floors)
            results.extend(rows)
            failures += failed
            continue
        rows = []
        for kind in servers:
            r = run_one(a.mode, workload, label, args, kind)
            if r:
                rows.append(r)
            else:
                failures += 1
        table(rows)
        results.extend(rows)
        weft = next((r for r in rows if r["server"] == "weft"), None)
        nginx = next((r for r in rows if r["server"] == "nginx"), None)
        if weft and nginx and PAIRS[a.mode] > 1:
            results.append(nginx_pairs(a.mode, workload, label, args, weft, nginx))
    many_streams(results)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"date": datetime.datetime.utcnow().isoformat() + "Z", "mode": a.mode,
                   "machine": {"cpus": os.cpu_count()}, "floor": floors, "results": results}, f, indent=1)
    print("results: %s" % a.out)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
