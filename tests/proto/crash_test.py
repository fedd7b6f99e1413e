#!/usr/bin/env python3
"""Crash test: a producer appends as fast as it can while the server is
SIGKILLed and restarted several times. Every acknowledged append must be read
back exactly once, in order, with nothing extra; retries of an append whose
acknowledgement was lost are deduplicated across restarts (Producer-Id,
Producer-Epoch, Producer-Seq)."""
import http.client
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
    check.finish(w)


if __name__ == "__main__":
    main()
