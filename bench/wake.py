#!/usr/bin/env python3
"""Wake-up latency: from a person's message POST to the agent's webhook.

One weft, one webhook receiver on loopback (answers {"done": true}), one
subscription to /v1/session/*. N times: POST a message to a session and
time until the signed wake arrives. The floor, measured in the same run:
the message POST's own round trip (acknowledged once durable, which a wake
must wait for too). Prints p50/p99 of both and their ratio.

Usage: bench/wake.py path/to/weft [N]
"""
import http.client
import http.server
import json
import os
import queue
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "proto"))
from weftproc import Weft  # noqa: E402


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(len(v) * p))]


def main():
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    got = queue.Queue()

    class H(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            got.put(time.perf_counter())
            body = b'{"done":true}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    w = Weft(sys.argv[1]).start()
    c = http.client.HTTPConnection("127.0.0.1", w.port)

    def req(method, path, body=None, headers=None):
        c.request(method, path, body=json.dumps(body).encode() if body is not None else None, headers=headers or {})
        r = c.getresponse()
        r.read()
        return r.status

    url = "http://127.0.0.1:%d/hook" % srv.server_address[1]
    assert req("PUT", "/v1/stream/__ds/subscriptions/bench", {"type": "webhook", "pattern": "/v1/session/*",
                                                              "webhook": {"url": url}}) == 201
    assert req("PUT", "/v1/session/bench-1") == 201
    wake, post = [], []
    for i in range(n):
        t0 = time.perf_counter()
        assert req("POST", "/v1/session/bench-1/messages", {"role": "user", "parts": [{"type": "text", "text": str(i)}]},
                   {"Weft-Client": "alice"}) == 201
        t1 = time.perf_counter()
        t2 = got.get(timeout=10)
        post.append((t1 - t0) * 1000)
        wake.append((t2 - t0) * 1000)
    w.stop()
    srv.shutdown()
    print("wake: %d messages; message POST p50 %.2f ms p99 %.2f ms (floor); wake p50 %.2f ms p99 %.2f ms; "
          "ratio p50 %.2fx" % (n, pct(post, .5), pct(post, .99), pct(wake, .5), pct(wake, .99),
                               pct(wake, .5) / pct(post, .5)))


if __name__ == "__main__":
    main()
