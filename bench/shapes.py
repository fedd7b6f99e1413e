#!/usr/bin/env python3
"""Shapes: changes per second through one `column = constant` shape as the
number of such shapes on the table grows, and the time to first sync a
large shape. Run through tests/pg/pgtmp.py (a throwaway Postgres):

    python3 tests/pg/pgtmp.py -- python3 bench/shapes.py build/weft [rows]

For each N in 10, 1000, 10000: N shapes `owner = 'o<i>'` on one table,
then 20,000 single-row update transactions on rows of owner o0 (one shape
gets every change, the others none). Reported: changes/s from the first
update to the last change in o0's log, weft's CPU per change, and RSS.
The figures at 10,000 shapes against 10 are the index's ratio (matching a
change must not scan every shape). Then the first full sync of a shape of
`rows` rows (default 200,000), and one change fanned out to 2,000 live
clients of one shape against one append to 2,000 live clients of a plain
stream (FANOUT_ONLY=1 runs just that).
"""
import asyncio
import http.client
import json
import os
import subprocess
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "proto"))
from weftproc import Weft  # noqa: E402

DB = os.environ.get("WEFT_TEST_DATABASE_URL")


def sql(q):
    return subprocess.run(["psql", DB, "-qAtc", q], check=True, capture_output=True, text=True).stdout


def cpu_ns(pid):
    """CPU time of every thread of pid, in ns (schedstat: finer than clock ticks)."""
    total = 0
    for t in os.listdir("/proc/%d/task" % pid):
        try:
            total += int(open("/proc/%d/task/%s/schedstat" % (pid, t)).read().split()[0])
        except OSError:
            pass
    return total


def cpu_rss(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(f[11]) + int(f[12])) / tick, int(f[21]) * os.sysconf("SC_PAGE_SIZE")


class Client:
    def __init__(self, port):
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def get(self, params):
        self.c.request("GET", "/v1/shape?" + urllib.parse.urlencode(params))
        r = self.c.getresponse()
        body = r.read()
        return r.status, r, body


def count_changes(cl, params, handle, offset, want, deadline):
    n = 0
    while n < want and time.monotonic() < deadline:
        st, r, body = cl.get(dict(params, handle=handle, offset=offset, live="true"))
        if st != 200:
            raise RuntimeError("live read: %d %s" % (st, body[:200]))
        offset = r.getheader("electric-offset")
        n += sum(1 for m in json.loads(body) if "key" in m)
    return n


def settle(pid, limit=20.0):
    """Wait (up to limit s) until weft is idle: a half second with under
    5 ms of CPU (making thousands of shapes leaves checkpoints behind)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        c0 = cpu_ns(pid)
        time.sleep(0.5)
        if cpu_ns(pid) - c0 < 5e6:
            return


def run_n(weft, n, updates=20000):
    table = "items%d" % n  # a table of its own: the shapes of the runs before do not see its changes
    sql("CREATE TABLE %s (id int PRIMARY KEY, owner text NOT NULL, v int NOT NULL)" % table)
    sql("INSERT INTO %s SELECT i, 'o' || (i %% %d), 0 FROM generate_series(1, %d) i" % (table, n, max(n, 100)))
    cl = Client(weft.port)
    t0 = time.monotonic()
    for i in range(n):
        st, r, body = cl.get({"table": table, "where": "owner = 'o%d'" % i, "offset": "-1"})
        if st != 200:
            raise RuntimeError("shape %d: %d %s" % (i, st, body[:200]))
        if i == 0:
            handle, offset = r.getheader("electric-handle"), r.getheader("electric-offset")
    made = time.monotonic() - t0
    settle(weft.proc.pid)
    cpu0 = cpu_ns(weft.proc.pid)
    t1 = time.monotonic()
    writer = subprocess.Popen(["psql", DB, "-qc",
                               "DO $$ BEGIN FOR i IN 1..%d LOOP UPDATE %s SET v = v + 1 WHERE id = %d; COMMIT; END LOOP; END $$"
                               % (updates, table, n)])
    got = count_changes(cl, {"table": table, "where": "owner = 'o0'"}, handle, offset, updates, time.monotonic() + 300)
    took = time.monotonic() - t1
    writer.wait()
    cpu1 = cpu_ns(weft.proc.pid)
    _, rss = cpu_rss(weft.proc.pid)
    print("shapes %5d: made in %.1f s; %d changes through o0 in %.2f s = %.0f changes/s; weft CPU %.1f us/change; RSS %.1f MB"
          % (n, made, got, took, got / took, (cpu1 - cpu0) / 1e3 / max(got, 1), rss / 1e6))
    return got / took, (cpu1 - cpu0) / max(got, 1)


def first_sync(weft, rows):
    sql("DROP TABLE IF EXISTS big; CREATE TABLE big (id int PRIMARY KEY, title text, n int)")
    sql("INSERT INTO big SELECT i, 'title ' || i, i %% 100 FROM generate_series(1, %d) i" % rows)
    cl = Client(weft.port)
    t0 = time.monotonic()
    offset, handle, got, first = "-1", None, 0, None
    while True:
        params = {"table": "big", "offset": offset}
        if handle:
            params["handle"] = handle
        st, r, body = cl.get(params)
        if st != 200:
            raise RuntimeError("sync: %d %s" % (st, body[:200]))
        if first is None:
            first = time.monotonic() - t0
        handle, offset = r.getheader("electric-handle"), r.getheader("electric-offset")
        got += body.count(b'{"key":')  # rows (parsing them would time Python's JSON, not the server)
        if r.getheader("electric-up-to-date") is not None:
            break
    took = time.monotonic() - t0
    t1 = time.monotonic()
    st, r, body = Client(weft.port).get({"table": "big", "offset": "-1"})  # a second client: from the log
    again = time.monotonic() - t1
    print("first sync of %d rows: %.2f s (%.0f rows/s; the snapshot made and the first chunk answered after %.2f s); "
          "the first chunk for a second client: %.3f s" % (got, took, got / took, first, again))


async def fanout_async(weft, path, n, trigger):
    """n live long-polls of one log; the time from trigger() to each answer
    and weft's CPU meanwhile."""
    conns = []
    for _ in range(n):
        conns.append(await asyncio.open_connection("127.0.0.1", weft.port))
    req = ("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode()
    for _, w in conns:
        w.write(req)
        await w.drain()
    await asyncio.sleep(1.0)  # all parked
    cpu0 = cpu_ns(weft.proc.pid)
    t0 = time.monotonic()
    trigger()

    async def one(r):
        head = await r.readuntil(b"\r\n\r\n")
        n = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0].split(b":")[1])
        await r.readexactly(n)
        return time.monotonic()
    done = await asyncio.gather(*(one(r) for r, _ in conns))
    cpu1 = cpu_ns(weft.proc.pid)
    for _, w in conns:
        w.close()
    lat = sorted(t - t0 for t in done)
    return lat[len(lat) // 2], lat[-1], (cpu1 - cpu0) / 1e9 / n


def fanout(weft, n=2000):
    """One change to n live long-polls of one shape, against the floor of
    one append to n live long-polls of a plain JSON stream (the stream
    layer's fan-out), back to back. The UPDATE goes through a connection
    opened before the clock starts."""
    sql("CREATE TABLE fan (id int PRIMARY KEY, v int)")
    sql("INSERT INTO fan VALUES (1, 0)")
    cl = Client(weft.port)
    st, r, body = cl.get({"table": "fan", "offset": "-1"})
    q = urllib.parse.urlencode({"table": "fan", "offset": r.getheader("electric-offset"),
                                "handle": r.getheader("electric-handle"), "live": "true"})
    psql = subprocess.Popen(["psql", DB, "-qX"], stdin=subprocess.PIPE, text=True)

    def update():
        psql.stdin.write("UPDATE fan SET v = v + 1 WHERE id = 1;\n")
        psql.stdin.flush()
    c = http.client.HTTPConnection("127.0.0.1", weft.port)
    c.request("PUT", "/v1/stream/fan", b"", {"Content-Type": "application/json"})
    c.getresponse().read()

    def append():
        c.request("POST", "/v1/stream/fan", b'{"id":1,"v":1}', {"Content-Type": "application/json"})
        c.getresponse().read()
    # twice each, alternating: the first round also pays for the memory of
    # n connections; the second pair is reported
    for _ in range(2):
        shape = asyncio.run(fanout_async(weft, "/v1/shape?" + q, n, update))
        st, r, body = cl.get({"table": "fan", "offset": r.getheader("electric-offset"), "handle": r.getheader("electric-handle")})
        q = urllib.parse.urlencode({"table": "fan", "offset": r.getheader("electric-offset"),
                                    "handle": r.getheader("electric-handle"), "live": "true"})
        c.request("GET", "/v1/stream/fan?offset=-1")
        sr = c.getresponse()
        sr.read()
        floor = asyncio.run(fanout_async(weft, "/v1/stream/fan?live=long-poll&offset=" + sr.getheader("Stream-Next-Offset"),
                                         n, append))
    psql.stdin.close()
    psql.wait()
    for name, (p50, last, cpu) in (("shape (UPDATE in Postgres)", shape), ("plain stream (POST): the floor", floor)):
        print("fan-out to %d live long-polls, %s: p50 %.1f ms, last %.1f ms, weft CPU %.1f us per answer"
              % (n, name, p50 * 1000, last * 1000, cpu * 1e6))
    print("fan-out, shape vs stream: %.2fx the time to the last answer, %.2fx the CPU per answer"
          % (shape[1] / floor[1], shape[2] / max(floor[2], 1e-9)))


def main():
    if not DB:
        sys.exit("run through tests/pg/pgtmp.py (WEFT_TEST_DATABASE_URL)")
    binary = sys.argv[1]
    rows = int(sys.argv[2]) if len(sys.argv) > 2 else 200000
    w = Weft(binary, args=["--database-url", DB, "--long-poll-timeout", "20s"]).start()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        c = http.client.HTTPConnection("127.0.0.1", w.port)
        c.request("GET", "/v1/health")
        if c.getresponse().status == 200:
            break
        time.sleep(0.1)
    try:
        if os.environ.get("FANOUT_ONLY"):
            fanout(w)
            return
        res = {n: run_n(w, n) for n in (10, 1000, 10000)}
        print("10,000 shapes vs 10: %.2fx the changes/s, %.2fx the CPU per change"
              % (res[10000][0] / res[10][0], res[10000][1] / res[10][1]))
        first_sync(w, rows)
        fanout(w)
    finally:
        w.stop()


if __name__ == "__main__":
    main()
