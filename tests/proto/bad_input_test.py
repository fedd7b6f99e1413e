#!/usr/bin/env python3
"""Bad-input test: malformed requests over a raw socket get the right 4xx,
never a crash, a hang or a partial append; the server keeps serving."""
import socket
import sys
import time

from weftproc import Checks, Weft

check = Checks("bad_input_test")


def raw(port, data, timeout=5.0, half_close=False):
    """Send bytes, return (status, whole response bytes). With several
    requests in `data`, read until the server closes."""
    multi = data.count(b" HTTP/1.1\r\n") > 1
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(data)
    if half_close:
        s.shutdown(socket.SHUT_WR)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out and not multi:
                head, _, body = out.partition(b"\r\n\r\n")
                cl = [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
                if cl and len(body) >= int(cl[0].split(b":")[1]):
                    break
    except (socket.timeout, ConnectionResetError):
        pass
    s.close()
    status = int(out.split(b" ", 2)[1]) if out.startswith(b"HTTP/1.1 ") else None
    return status, out


def req(method, path, headers=(), body=b""):
    h = "".join("%s: %s\r\n" % kv for kv in headers)
    return ("%s %s HTTP/1.1\r\nHost: t\r\n%sContent-Length: %d\r\n\r\n" % (method, path, h, len(body))).encode() + body


def tail(port, path):
    st, out = raw(port, ("HEAD %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % path).encode())
    for line in out.split(b"\r\n"):
        if line.lower().startswith(b"stream-next-offset:"):
            return line.split(b":", 1)[1].strip().decode()
    return None


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "build/weft"
    w = Weft(binary, args=["--max-body", "1MiB", "--request-timeout", "2s",
                           "--max-header-bytes", "8KiB"]).start()
    p = w.port
    st, _ = raw(p, req("PUT", "/v1/stream/ok", [("Content-Type", "text/plain")], b"hello"))
    check(st == 201, "create text stream: %s" % st)
    st, _ = raw(p, req("PUT", "/v1/stream/j", [("Content-Type", "application/json")]))
    check(st == 201, "create json stream: %s" % st)
    t0 = tail(p, "/v1/stream/ok")

    cases = [
        ("bad request line", b"GARBAGE\r\n\r\n", 400),
        ("bad HTTP version", b"GET / HTTP/2.5\r\nHost: t\r\n\r\n", 505),
        ("header without colon", b"GET /v1/stream/ok HTTP/1.1\r\nHost: t\r\nBroken\r\n\r\n", 400),
        ("oversize headers", b"GET /v1/stream/ok HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
        ("missing Host", b"GET /v1/stream/ok HTTP/1.1\r\n\r\n", 400),
        ("CL and TE together", b"POST /v1/stream/ok HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
         b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400),
        ("invalid chunk size", b"POST /v1/stream/ok HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
         b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400),
        ("chunk data overrun", b"POST /v1/stream/ok HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n", 400),
        ("unsupported transfer coding", b"POST /v1/stream/ok HTTP/1.1\r\nHost: t\r\n"
         b"Transfer-Encoding: gzip\r\n\r\n", 501),
        ("non-numeric TTL", req("PUT", "/v1/stream/ttl", [("Stream-TTL", "abc")]), 400),
        ("TTL with leading zero", req("PUT", "/v1/stream/ttl", [("Stream-TTL", "0100")]), 400),
        ("invalid Expires-At", req("PUT", "/v1/stream/exp", [("Stream-Expires-At", "tomorrow")]), 400),
        ("invalid offset", req("GET", "/v1/stream/ok?offset=xyz"), 400),
        ("offset with bad hex", req("GET", "/v1/stream/ok?offset=000000000000000g"), 400),
        ("invalid live mode", req("GET", "/v1/stream/ok?offset=-1&live=forever"), 400),
        ("invalid JSON", req("POST", "/v1/stream/j", [("Content-Type", "application/json")], b"{\"a\":"), 400),
        ("empty JSON array", req("POST", "/v1/stream/j", [("Content-Type", "application/json")], b"[]"), 400),
        ("unknown method", req("BREW", "/v1/stream/ok"), 405),
        ("body over limit", b"POST /v1/stream/ok HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
         b"Content-Length: 2000000\r\n\r\n", 413),
        ("chunked body over limit", b"POST /v1/stream/ok HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n" + (b"10000\r\n" + b"x" * 0x10000 + b"\r\n") * 17, 413),
        ("dot-dot segment", req("GET", "/v1/stream/a/../ok"), 400),
        ("encoded dot-dot", req("GET", "/v1/stream/a/%2e%2e/ok"), 400),
        ("encoded NUL", req("GET", "/v1/stream/a%00b"), 400),
        ("bad percent escape", req("GET", "/v1/stream/a%zzb"), 400),
        ("raw NUL in target", b"GET /v1/stream/a\x00b HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        ("empty append", req("POST", "/v1/stream/ok", [("Content-Type", "text/plain")]), 400),
        ("partial producer headers", req("POST", "/v1/stream/ok", [("Content-Type", "text/plain"),
                                                                   ("Producer-Id", "p")], b"x"), 400),
        ("non-integer producer epoch", req("POST", "/v1/stream/ok", [
            ("Content-Type", "text/plain"), ("Producer-Id", "p"), ("Producer-Epoch", "1.5"),
            ("Producer-Seq", "0")], b"x"), 400),
        ("absolute-form target", b"GET http://x/v1/stream/ok HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    ]
    for name, data, want in cases:
        st, out = raw(p, data)
        check(st == want, "%s: want %s, got %s (%r)" % (name, want, st, out[:120]))
        # The server still serves after each one.
        st2, _ = raw(p, req("GET", "/v1/stream/ok?offset=-1"))
        check(st2 == 200, "%s: server not serving afterwards (%s)" % (name, st2))

    check(tail(p, "/v1/stream/ok") == t0, "a rejected append changed the stream")

    more = [
        ("CR LF in path (header injection)", req("PUT", "/v1/stream/a%0d%0aSet-Cookie:%20x=1"), 400),
        ("JSON offset inside a message", req("GET", "/v1/stream/jm?offset=0000000000000000_0000000000000003&live=sse"), 400),
    ]
    st, _ = raw(p, req("PUT", "/v1/stream/jm", [("Content-Type", "application/json")], b'[{"a":1},{"b":2}]'))
    check(st == 201, "create json stream with data: %s" % st)
    for name, data, want in more:
        st, out = raw(p, data)
        check(st == want, "%s: want %s, got %s (%r)" % (name, want, st, out[:120]))
        check(b"Set-Cookie" not in out, "%s: injected header echoed" % name)

    # Pipelined requests, including bodiless ones, are all answered in order.
    st, out = raw(p, req("PUT", "/v1/stream/pipe", [("Content-Type", "text/plain")]) +
                  b"HEAD /v1/stream/pipe HTTP/1.1\r\nHost: t\r\n\r\n" +
                  b"DELETE /v1/stream/pipe HTTP/1.1\r\nHost: t\r\n\r\n" +
                  b"GET /v1/stream/pipe HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    codes = [l.split(b" ")[1] for l in out.split(b"\r\n") if l.startswith(b"HTTP/1.1 ")]
    check(codes == [b"201", b"200", b"204", b"404"], "pipelined PUT/HEAD/DELETE/GET: %r" % codes)
    # A client that half-closes after pipelining still gets every answer.
    st, out = raw(p, req("PUT", "/v1/stream/half", [("Content-Type", "text/plain")]) +
                  b"GET /v1/stream/half HTTP/1.1\r\nHost: t\r\n\r\n", half_close=True)
    codes = [l.split(b" ")[1] for l in out.split(b"\r\n") if l.startswith(b"HTTP/1.1 ")]
    check(codes == [b"201", b"200"], "half-closed pipelining: %r" % codes)

    # Slowloris: a head that never completes is cut off by --request-timeout.
    s = socket.create_connection(("127.0.0.1", p), timeout=10)
    s.sendall(b"GET /v1/stream/ok HTTP/1.1\r\nHost: t\r\n")
    start = time.time()
    got = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
    except socket.timeout:
        pass
    waited = time.time() - start
    check(waited < 6, "slow client not timed out (waited %.1fs)" % waited)
    check(got.startswith(b"HTTP/1.1 408"), "slow client: want 408, got %r" % got[:40])

    # A body that stops halfway is not appended.
    s = socket.create_connection(("127.0.0.1", p), timeout=10)
    s.sendall(b"POST /v1/stream/ok HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nhalf")
    s.close()
    time.sleep(0.2)
    check(tail(p, "/v1/stream/ok") == t0, "a truncated body was appended")

    rc = w.stop()
    check(rc == 0, "weft exited %s on SIGTERM" % rc)
    check.finish(w)


if __name__ == "__main__":
    main()
