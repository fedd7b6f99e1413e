#!/usr/bin/env python3
"""Disk-full test: on a 2 MiB tmpfs, appends past the space get 507 with a
message (never a hang or a crash), the server keeps serving, and after a
restart every acknowledged append reads back exactly."""
import http.client
import os
import subprocess
import sys
import tempfile

from weftproc import Checks, Weft

check = Checks("disk_full_test")


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "build/weft"
    mnt = tempfile.mkdtemp(prefix="weft-full-")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", mnt]).returncode != 0:
        print("disk_full_test: cannot mount a tmpfs (needs root)")
        sys.exit(1)
    try:
        w = Weft(binary, data_dir=os.path.join(mnt, "data")).start()
        c = http.client.HTTPConnection("127.0.0.1", w.port, timeout=10)
        c.request("PUT", "/v1/stream/full", headers={"Content-Type": "application/octet-stream"})
        r = c.getresponse(); r.read()
        check(r.status == 201, "create: %s" % r.status)
        acked = b""
        statuses = []
        for i in range(20):
            blob = bytes([i]) * 150000
            c.request("POST", "/v1/stream/full", body=blob,
                      headers={"Content-Type": "application/octet-stream"})
            r = c.getresponse(); body = r.read()
            statuses.append(r.status)
            if r.status == 204:
                acked += blob
            else:
                check(r.status == 507, "append %d: want 507, got %d" % (i, r.status))
                check(b"No space left" in body, "507 without a reason: %r" % body[:80])
        check(507 in statuses, "disk never filled up: %s" % statuses)
        check(len(acked) > 0, "nothing was stored before the disk filled")
        c.request("GET", "/healthz")
        r = c.getresponse(); r.read()
        check(r.status == 200, "server not serving when the disk is full")
        rc = w.stop()
        check(rc == 0, "weft exited %s on SIGTERM with a full disk" % rc)
        w.start()
        c = http.client.HTTPConnection("127.0.0.1", w.port, timeout=10)
        data = b""
        offset = "-1"
        while True:
            c.request("GET", "/v1/stream/full?offset=" + offset)
            r = c.getresponse(); data += r.read()
            offset = r.getheader("Stream-Next-Offset")
            if r.getheader("Stream-Up-To-Date") == "true":
                break
        check(data == acked, "after restart: read %d bytes, %d were acknowledged" % (len(data), len(acked)))
        print("disk full: %d appends acknowledged, then %s" % (statuses.count(204), sorted(set(statuses))))
        w.stop()
    finally:
        subprocess.run(["umount", "-l", mnt])
        os.rmdir(mnt)
    check.finish(w)


if __name__ == "__main__":
    main()
