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
    ],
    "quick": [
        ("append", "256B, 64 conns, 100 streams", ["--connections", "64", "--streams", "100", "--size", "256", "--producer"], ["weft", "node-mem", "node-file", "nginx"]),
        ("append", "256B, 64 conns, 10k streams", ["--connections", "64", "--streams", "10000", "--size", "256", "--producer"], ["weft", "node-mem", "nginx"]),
        ("sse", "100 subscribers", ["--subscribers", "100", "--rate", "50", "--size", "256"], ["weft", "node-mem"]),
        ("longpoll", "100 readers / 10 streams", ["--readers", "100", "--streams", "10", "--rate", "50", "--size", "256"], ["weft", "node-mem"]),
        ("catchup", "50 clients x 200 x 1KiB", ["--clients", "50", "--messages", "200", "--size", "1024"], ["weft", "node-mem"]),
        ("tokens", "50 sessions", ["--sessions", "50", "--rate", "30", "--size", "20", "--readers", "2"], ["weft", "node-mem"]),
        ("idle", "1000 SSE subscribers", ["--subscribers", "1000"], ["weft", "node-mem"]),
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


def table(rows):
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
    if weft and weft.get("ops_per_sec"):
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
