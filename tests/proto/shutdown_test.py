#!/usr/bin/env python3
"""Graceful shutdown answers every request it handled.

40 keep-alive clients read a stream in a loop over real sockets; the server
gets SIGTERM mid-stream. With --log-level debug the server logs one line per
request it handles (with the client's port); every connection must have
received as many answers as the server handled requests for it, and the
server must exit 0. Regression test: answers are written when the loop
iteration ends, and shutdown once closed connections before that.

Usage: shutdown_test.py path/to/weft
"""
import re
import signal
import socket
import sys
import threading
import time

from weftproc import Checks, Weft


def main():
    check = Checks("shutdown_test")
    w = Weft(sys.argv[1], args=["--threads", "2", "--log-level", "debug"]).start()
    s = socket.create_connection(("127.0.0.1", w.port))
    s.sendall(b"PUT /v1/stream/a HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
              b"Content-Length: 5\r\n\r\nhello")
    check(s.recv(4096).startswith(b"HTTP/1.1 201"), "stream created")
    s.close()
    received = {}
    stop = threading.Event()

    def client():
        c = socket.create_connection(("127.0.0.1", w.port))
        c.settimeout(10)
        port = c.getsockname()[1]
        n = 0
        try:
            while not stop.is_set():
                c.sendall(b"GET /v1/stream/a?offset=-1 HTTP/1.1\r\nHost: x\r\n\r\n")
                d = b""
                while b"hello" not in d:
                    x = c.recv(65536)
                    if not x:
                        raise EOFError
                    d += x
                n += 1
        except (OSError, EOFError):
            pass
        received[port] = n

    threads = [threading.Thread(target=client) for _ in range(40)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    w.proc.send_signal(signal.SIGTERM)
    rc = w.proc.wait(timeout=30)
    stop.set()
    for t in threads:
        t.join()
    check(rc == 0, "exit status 0 after SIGTERM (got %s)" % rc)
    log = open(w.log, errors="replace").read()
    handled = {}
    for m in re.finditer(r"127\.0\.0\.1:(\d+) GET /v1/stream/a", log):
        port = int(m.group(1))
        handled[port] = handled.get(port, 0) + 1
    total = sum(received.values())
    check(len(received) == 40 and total > 1000, "clients ran (%d answers)" % total)
    lost = [p for p, n in received.items() if handled.get(p, 0) != n]
    check(not lost, "every handled request was answered (%d connections differ)" % len(lost))
    print("shutdown: %d answers over 40 connections, SIGTERM mid-stream" % total)
    check.finish(w)


if __name__ == "__main__":
    main()
