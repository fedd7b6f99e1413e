#!/usr/bin/env python3
"""Streams that expire untouched are deleted by the sweeper.

Over real sockets: streams with a TTL, with an expiry time, with a TTL kept
alive by appends, without either, and one with a TTL that lives through a
restart (recovery hands it to the sweeper). Nothing reads the expiring
ones, so only the sweeper can delete them: the server must log
"<path>: expired" for each within its time, and must not for the others,
whose data must still be there. A soft-deleted source (kept for its fork)
is not expired again.

Usage: expiry_test.py path/to/weft
"""
import datetime
import http.client
import os
import sys
import time

from weftproc import Checks, Weft


def request(w, method, path, headers=None, body=None):
    c = http.client.HTTPConnection("127.0.0.1", w.port, timeout=10)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def expired_paths(w):
    with open(w.log, errors="replace") as f:
        return {line.split(": expired")[0].split()[-1] for line in f if ": expired" in line}


def data_files(w):
    n = 0
    for _root, _dirs, files in os.walk(os.path.join(w.data_dir, "data")):
        n += sum(1 for f in files if f.endswith(".dat"))
    return n


def main():
    check = Checks("expiry_test")
    w = Weft(sys.argv[1], args=["--log-level", "info"]).start()
    base = "/v1/stream/"
    ct = {"Content-Type": "text/plain"}
    at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=2)
    creates = [
        ("later", {"Stream-TTL": "3"}),
        ("ttl", {"Stream-TTL": "1"}),
        ("at", {"Stream-Expires-At": at.strftime("%Y-%m-%dT%H:%M:%SZ")}),
        ("alive", {"Stream-TTL": "2"}),
        ("keep", {}),
        ("src", {"Stream-TTL": "600"}),
    ]
    for name, h in creates:
        status, _ = request(w, "PUT", base + name, dict(ct, **h), b"x")
        check(status == 201, "PUT %s: %d" % (name, status))
    status, _ = request(w, "PUT", base + "fork", dict(ct, **{"Stream-Forked-From": base + "src"}))
    check(status == 201, "PUT fork: %d" % status)
    status, _ = request(w, "DELETE", base + "src")
    check(status == 204, "DELETE src (soft, it has a fork): %d" % status)

    # "later" is only in the catalog or the WAL after this.
    check(w.stop() == 0, "server stopped cleanly")
    w.start()
    files = data_files(w)
    check(files >= 6, "%d data files before expiry" % files)

    deadline = time.time() + 4.5
    while time.time() < deadline:
        status, _ = request(w, "POST", base + "alive", ct, b"y")
        check(status == 204, "append keeps 'alive' alive: %d" % status)
        time.sleep(0.5)
    gone = expired_paths(w)
    for name in ("ttl", "at", "later"):
        check(base + name in gone, "%s expired untouched (log: %s)" % (name, sorted(gone)))
    for name in ("alive", "keep", "src", "fork"):
        check(base + name not in gone, "%s not expired" % name)
    status, data = request(w, "GET", base + "keep?offset=-1")
    check(status == 200 and data == b"x", "keep still there: %d %r" % (status, data))
    status, data = request(w, "GET", base + "alive?offset=-1")
    check(status == 200 and data.startswith(b"xy"), "alive still there: %d %r" % (status, data[:8]))
    status, _ = request(w, "GET", base + "ttl?offset=-1")
    check(status == 404, "expired stream is gone: %d" % status)
    deadline = time.time() + 5
    while time.time() < deadline and data_files(w) > files - 3:
        time.sleep(0.1)
    check(data_files(w) == files - 3, "the 3 expired streams' data files removed: %d of %d left"
          % (data_files(w), files))
    check(w.stop() == 0, "server stopped cleanly")
    check.finish(w)


if __name__ == "__main__":
    main()
