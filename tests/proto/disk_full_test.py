#!/usr/bin/env python3
"""Disk-full test, on small tmpfs and ext4 mounts: appends past the space get 507 with
a message (never a crash), the server keeps serving reads, writes are
accepted again without a restart once space is freed (an append that was
waiting for room completes then), and every acknowledged append reads back
exactly, before and after a restart. healthz says which it is.

Two ways to run out:
  wal   - the disk fills as the WAL grows (no room for a preallocated
          segment): the WAL write itself finds no room;
  data  - another process fills the disk in an instant while weft writes
          behind: the WAL has preallocated room, the data file write-outs
          do not.
The wal case runs again on ext4 with 1 KiB blocks, where a direct WAL
write can stop inside one of weft's 4 KiB blocks (weft then writes that
segment through the page cache, which reports the full disk).
"""
import http.client
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time

from weftproc import Checks, Weft

check = Checks("disk_full_test")
CT = {"Content-Type": "application/octet-stream"}


def conn(w, timeout=10):
    return http.client.HTTPConnection("127.0.0.1", w.port, timeout=timeout)


def request(c, method, path, body=None, headers=None):
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    return r, r.read()


def read_all(w, path):
    c = conn(w)
    data, offset = b"", "-1"
    while True:
        r, body = request(c, "GET", path + "?offset=" + offset)
        data += body
        offset = r.getheader("Stream-Next-Offset")
        if r.getheader("Stream-Up-To-Date") == "true":
            return data


def fill(path):
    """Write zeros to path until the disk is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    chunk = b"\0" * (64 << 10)
    try:
        while os.write(fd, chunk) > 0:
            pass
    except OSError:
        pass
    os.close(fd)


def run(kind, binary, mnt):
    data_dir = os.path.join(mnt, "data")
    filler = os.path.join(mnt, "filler")
    if kind == "wal":
        with open(filler, "wb") as f:
            f.write(b"\0" * (256 << 10))
        w = Weft(binary, data_dir=data_dir).start()
    else:
        w = Weft(binary, data_dir=data_dir, args=["--checkpoint-size", "2MiB"]).start()
    c = conn(w)
    r, _ = request(c, "PUT", "/v1/stream/full", headers=CT)
    check(r.status == 201, "%s: create: %s" % (kind, r.status))
    acked = b""
    if kind == "data":
        blob = b"before the fill" * 1000
        r, _ = request(c, "POST", "/v1/stream/full", blob, CT)
        check(r.status == 204, "%s: append before the fill: %s" % (kind, r.status))
        acked += blob
        fill(filler)

    # Append until refused. An append may instead wait for room (its WAL
    # record found none): it was logged, so it completes once there is
    # space. Once one waits, every new append is refused at once.
    # Small appends after the first refusal: the data file (written through
    # on a disk this small) has room left in its last page more often than
    # the WAL does, so one WAL write finds no room.
    statuses, waiting = [], []
    for i in range(200):
        blob = bytes([i % 250 + 1]) * (1000 if 507 in statuses else 150000)
        c = conn(w, timeout=3)
        try:
            r, body = request(c, "POST", "/v1/stream/full", blob, CT)
        except socket.timeout:
            check(not waiting, "%s: append %d waits, after one waited already" % (kind, i))
            waiting.append((c, blob))
            continue
        statuses.append(r.status)
        if r.status == 204:
            check(not waiting and 507 not in statuses,
                  "%s: append %d accepted on a full disk" % (kind, i))
            acked += blob
        else:
            check(r.status == 507, "%s: append %d: want 507, got %d" % (kind, i, r.status))
            check(b"No space left" in body, "%s: 507 without a reason: %r" % (kind, body[:80]))
            if waiting or (kind == "data" and statuses.count(507) == 3):
                break
    # Behind the WAL, a write-out that finds no room waits, not the append,
    # which the WAL has: "data" acknowledges it, then refuses.
    check(waiting or kind == "data", "%s: no append waited for room: %s" % (kind, statuses))
    check(507 in statuses, "%s: no append was refused: %s" % (kind, statuses))
    check(len(acked) > 0, "%s: nothing was stored before the disk filled" % kind)

    # Full: reads and health still work, and health tells.
    r, body = request(conn(w), "GET", "/healthz")
    check(r.status == 200 and body.startswith(b"ok; storage full: No space left on device"),
          "%s: healthz on a full disk: %s %r" % (kind, r.status, body[:80]))
    check(read_all(w, "/v1/stream/full") == acked, "%s: reads on a full disk" % kind)

    # Room again: the waiting append completes, new ones are accepted.
    os.unlink(filler)
    for c, blob in waiting:
        c.sock.settimeout(10)
        r = c.getresponse()
        r.read()
        check(r.status == 204, "%s: the waiting append, once there is room: %s" % (kind, r.status))
        if r.status == 204:
            acked += blob
    blob = b"after the space came back" * 100
    status = None
    deadline = time.time() + 10
    while time.time() < deadline:
        r, _ = request(conn(w), "POST", "/v1/stream/full", blob, CT)
        status = r.status
        if status == 204:
            acked += blob
            break
        time.sleep(0.2)
    check(status == 204, "%s: append once space is freed: %s" % (kind, status))
    r, body = request(conn(w), "GET", "/healthz")
    check(r.status == 200 and body == b"ok\n", "%s: healthz once space is freed: %s %r" % (kind, r.status, body))
    check(read_all(w, "/v1/stream/full") == acked,
          "%s: after the space came back: read differs from the %d acknowledged bytes" % (kind, len(acked)))
    log = open(w.log, errors="replace").read()
    what = "WAL" if kind == "wal" else "data file"
    check(("%s write in" % what) in log and ("%s writes have room again" % what) in log,
          "%s: the log does not tell the %s write found no room, then room again" % (kind, what))

    rc = w.stop()
    check(rc == 0, "%s: weft exited %s on SIGTERM" % (kind, rc))
    w.start()
    check(read_all(w, "/v1/stream/full") == acked,
          "%s: after restart: read differs from the %d acknowledged bytes" % (kind, len(acked)))
    print("disk full (%s): %d appends acknowledged, then %s%s" %
          (kind, statuses.count(204), sorted(set(statuses)), ", one waited for room" if waiting else ""))
    w.stop()
    return w


def failed_for_good(binary, data_dir=None, fsize=1 << 20, streams=1):
    """A write error other than a full disk stops writes for good: here the
    WAL or a data file passes a file size limit (EFBIG). Appends get 507,
    healthz 503 so that an orchestrator restarts weft, and a restart
    recovers every acknowledged append. data_dir on a small disk makes weft
    write data files through (before logging), else behind. With appends
    spread over streams the WAL passes the limit first; a limit that is not
    a multiple of 4 KiB then stops a direct WAL write inside a block, which
    the kernel refuses (EINVAL), and weft writes the segment through the
    page cache, which tells the real reason."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    w = Weft(binary, data_dir=data_dir, preexec=limit).start()
    c = conn(w)
    paths = ["/v1/stream/limit%d" % k for k in range(streams)]
    for path in paths:
        r, _ = request(c, "PUT", path, headers=CT)
        check(r.status == 201, "fsize: create: %s" % r.status)
    acked, status, n = {p: b"" for p in paths}, 204, 0
    for i in range(20):
        blob = bytes([i + 1]) * 100000
        path = paths[i % streams]
        r, body = request(c, "POST", path, blob, CT)
        status = r.status
        if status != 204:
            break
        acked[path] += blob
        n += 1
    check(status == 507 and b"File too large" in body, "fsize: append past the limit: %s %r" % (status, body[:80]))
    r, body = request(conn(w), "GET", "/healthz")
    health = r.status
    check(health == 503 and body.startswith(b"storage failed: File too large"),
          "fsize: healthz after a write error: %s %r" % (health, body[:80]))
    check(all(read_all(w, p) == acked[p] for p in paths), "fsize: reads after a write error")
    w.stop()
    w.preexec = None
    w.start()
    check(all(read_all(w, p) == acked[p] for p in paths),
          "fsize: after restart: reads differ from the %d acknowledged appends" % n)
    r, body = request(conn(w), "GET", "/healthz")
    check(r.status == 200 and body == b"ok\n", "fsize: healthz after restart: %s %r" % (r.status, body))
    print("write error (limit %d, %d streams): %d appends acknowledged, then %d, healthz %d" %
          (fsize, streams, n, status, health))
    w.stop()
    return w


def mount_ext4_1k(mnt, size_mb):
    """A loop-mounted ext4 image with 1 KiB blocks and no journal."""
    img = mnt + ".img"
    with open(img, "wb") as f:
        f.truncate(size_mb << 20)
    ok = (subprocess.run(["mkfs.ext4", "-q", "-F", "-b", "1024", "-O", "^has_journal", img]).returncode == 0 and
          subprocess.run(["mount", "-o", "loop", img, mnt]).returncode == 0)
    os.unlink(img)
    return ok


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "build/weft"
    w = None
    # "data" needs more free space than weft's low-disk threshold, or it
    # writes through (and a full disk is just a 507).
    for kind, fs, size in (("wal", "tmpfs", "2m"), ("data", "tmpfs", "300m"), ("wal", "ext4", 4)):
        mnt = tempfile.mkdtemp(prefix="weft-full-")
        if fs == "ext4":
            mounted = mount_ext4_1k(mnt, size)
        else:
            mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + size, "tmpfs", mnt]).returncode == 0
        if not mounted:
            print("disk_full_test: cannot mount a %s (needs root and mkfs.ext4)" % fs)
            sys.exit(1)
        try:
            w = run(kind, binary, mnt)
        finally:
            subprocess.run(["umount", "-l", mnt])
            os.rmdir(mnt)
    w = failed_for_good(binary)
    w = failed_for_good(binary, fsize=(1 << 20) + 100, streams=20)
    mnt = tempfile.mkdtemp(prefix="weft-small-")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", mnt]).returncode == 0:
        try:
            w = failed_for_good(binary, os.path.join(mnt, "data"))
        finally:
            subprocess.run(["umount", "-l", mnt])
    os.rmdir(mnt)
    check.finish(w)


if __name__ == "__main__":
    main()
