#!/usr/bin/env python3
"""Crash test: a producer appends as fast as it can while the server is
SIGKILLed and restarted several times. Every acknowledged append must be read
back exactly once, in order, with nothing extra; retries of an append whose
acknowledgement was lost are deduplicated across restarts (Producer-Id,
Producer-Epoch, Producer-Seq).

Then the same over many streams with a small --checkpoint-size, so that
kills land during checkpoints: the snapshot a checkpoint takes while appends
go on must still be the streams as they were at its WAL boundary, and the
WAL segments checkpoints recycle (holding older records past the new ones)
must give back nothing but the new ones."""
import http.client
import os
import random
import sys
import threading
import time

from weftproc import Checks, Weft

KILLS = 6
PATH = "/v1/stream/crash-test"


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "build/weft"
    w = Weft(binary).start()
    conn = http.client.HTTPConnection("127.0.0.1", w.port, timeout=10)
    conn.request("PUT", PATH, headers={"Content-Type": "text/plain"})
    r = conn.getresponse(); r.read()
    assert r.status == 201, r.status

    acked = []          # seqs acknowledged (200 new, 204 duplicate)
    dup_acks = 0
    seq = 0
    stop = threading.Event()
    errors = []

    def writer():
        nonlocal seq, dup_acks, conn
        while not stop.is_set():
            body = ("rec-%08d\n" % seq).encode()
            try:
                conn.request("POST", PATH, body=body, headers={
                    "Content-Type": "text/plain", "Producer-Id": "crash-writer",
                    "Producer-Epoch": "0", "Producer-Seq": str(seq)})
                r = conn.getresponse(); r.read()
            except (OSError, http.client.HTTPException):
                # Server down: reconnect and retry the same seq (the append may
                # or may not have been made durable before the kill).
                time.sleep(0.05)
                try:
                    conn.close()
                except OSError:
                    pass
                conn = http.client.HTTPConnection("127.0.0.1", w.port, timeout=10)
                continue
            if r.status in (200, 204):
                if r.status == 204:
                    dup_acks += 1
                acked.append(seq)
                seq += 1
            else:
                errors.append("seq %d: unexpected status %d" % (seq, r.status))
                stop.set()

    t = threading.Thread(target=writer)
    t.start()
    for _ in range(KILLS):
        time.sleep(random.uniform(0.3, 1.2))
        w.kill()
        time.sleep(random.uniform(0.0, 0.3))
        w.start()
    time.sleep(0.5)
    stop.set()
    t.join()

    c = http.client.HTTPConnection("127.0.0.1", w.port, timeout=30)
    data = b""
    offset = "-1"
    while True:
        c.request("GET", PATH + "?offset=" + offset)
        r = c.getresponse()
        chunk = r.read()
        data += chunk
        offset = r.getheader("Stream-Next-Offset")
        if r.getheader("Stream-Up-To-Date") == "true":
            break
    lines = data.decode().splitlines()
    got = [int(l[4:]) for l in lines]
    check = Checks("crash_test")

    check(not errors, "writer errors: %s" % errors[:3])
    check(len(acked) > 100, "too few appends acknowledged (%d)" % len(acked))
    check(got == list(range(len(got))), "records out of order or duplicated: first bad index %s" %
          next((i for i, v in enumerate(got) if v != i), None))
    check(len(got) >= len(acked), "acknowledged appends lost: read %d, acked %d" % (len(got), len(acked)))
    check(len(got) <= len(acked), "records nobody was told about: read %d, acked %d" % (len(got), len(acked)))
    check(all(l.startswith("rec-") and len(l) == 12 for l in lines), "torn record in data")
    print("crash test: %d appends acknowledged across %d kills (%d deduplicated retries), %d read back"
          % (len(acked), KILLS, dup_acks, len(got)))
    rc = w.stop()
    check(rc == 0, "weft exited %s on SIGTERM" % rc)
    many_streams(binary, check)
    check.finish(w)


STREAMS = 600
WRITERS = 4


def read_all(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    data, offset = b"", "-1"
    while True:
        c.request("GET", path + "?offset=" + offset)
        r = c.getresponse()
        data += r.read()
        offset = r.getheader("Stream-Next-Offset")
        if r.status != 200 or r.getheader("Stream-Up-To-Date") == "true":
            return r.status, data


def many_streams(binary, check):
    w = Weft(binary, args=["--checkpoint-size", "1MiB"]).start()
    paths = ["/v1/stream/ckpt-%04d" % i for i in range(STREAMS)]
    conn = http.client.HTTPConnection("127.0.0.1", w.port, timeout=10)
    for p in paths:
        conn.request("PUT", p, headers={"Content-Type": "text/plain"})
        r = conn.getresponse(); r.read()
        assert r.status == 201, r.status
    conn.close()

    acked = [0] * STREAMS  # per stream: seqs 0..acked-1 acknowledged
    stop = threading.Event()
    errors = []

    def writer(k):
        mine = list(range(k, STREAMS, WRITERS))
        c = http.client.HTTPConnection("127.0.0.1", w.port, timeout=10)
        i = random.choice(mine)
        while not stop.is_set():
            seq = acked[i]
            # About 300 bytes of WAL per append: a checkpoint every few
            # thousand appends.
            body = ("s%04d-%08d " % (i, seq)).ljust(199, ".").encode() + b"\n"
            try:
                c.request("POST", paths[i], body=body, headers={
                    "Content-Type": "text/plain", "Producer-Id": "w%04d" % i,
                    "Producer-Epoch": "0", "Producer-Seq": str(seq)})
                r = c.getresponse(); r.read()
            except (OSError, http.client.HTTPException):
                time.sleep(0.05)
                c.close()
                c = http.client.HTTPConnection("127.0.0.1", w.port, timeout=10)
                continue
            if r.status not in (200, 204):
                errors.append("%s seq %d: status %d" % (paths[i], seq, r.status))
                stop.set()
                return
            acked[i] += 1
            i = random.choice(mine)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(WRITERS)]
    for t in threads:
        t.start()
    for _ in range(4):
        time.sleep(random.uniform(0.8, 1.6))
        w.kill()
        w.start()
    # A checkpoint keeps a segment it covers as the next spare: then the
    # spare starts with that segment's header, not with zeros.
    spare = os.path.join(w.data_dir, "wal", "spare")
    recycled = False
    deadline = time.time() + 15
    while not recycled and time.time() < deadline and not errors:
        try:
            with open(spare, "rb") as f:
                recycled = f.read(8) == b"WEFTWAL1"
        except OSError:
            pass
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join()

    check(not errors, "many streams: writer errors: %s" % errors[:3])
    check(sum(acked) > 2000, "many streams: too few appends acknowledged (%d)" % sum(acked))
    bad = []
    for i, p in enumerate(paths):
        status, data = read_all(w.port, p)
        want = b"".join(("s%04d-%08d " % (i, k)).ljust(199, ".").encode() + b"\n"
                        for k in range(acked[i]))
        if status != 200 or data != want:
            bad.append("%s: status %d, %d bytes, want %d" % (p, status, len(data), len(want)))
    check(not bad, "many streams: %d streams differ from what was acknowledged: %s" %
          (len(bad), bad[:3]))
    check(recycled, "many streams: no checkpoint kept a covered WAL segment as the spare")
    # Checkpoints ran: they delete the WAL segments they cover.
    segs = sorted(f for f in os.listdir(os.path.join(w.data_dir, "wal")) if f.endswith(".log"))
    check(segs and int(segs[0][:-4], 16) > 4, "many streams: no checkpoint removed a WAL segment "
          "(%s)" % segs[:3])
    print("crash test, %d streams, --checkpoint-size 1MiB: %d appends acknowledged across 4 kills, "
          "first WAL segment now %s" % (STREAMS, sum(acked), segs[0] if segs else None))
    rc = w.stop()
    check(rc == 0, "weft exited %s on SIGTERM (many streams)" % rc)


if __name__ == "__main__":
    main()
