#!/usr/bin/env python3
"""Subscriptions over real sockets (src/subscription, docs/subscriptions.md):
what the public conformance suite does not reach.

Checks: webhook retries after failed attempts (status "failed" between
them, then delivered with a new body each time), a webhook's callback as a
heartbeat and with acks, acks that name an unknown stream, go back or
beyond the tail (409 INVALID_OFFSET), a forged token (401); pull-wake
leases that run out (another worker claims, the first is fenced); which
webhook URLs are refused; bad bodies and ids; a re-confirm with another
configuration (409); after SIGKILL and a restart: acked offsets, links and
the generation are kept, an acknowledged wake is not repeated and an
unacknowledged one is; sessions wake agents on a person's message and on
an object's change, not on a run's chunks; with capability tokens, the
subscription routes need `subscribe` (on the subscription and on what it
watches) while the wake's own callback and the JWKS need no token.

Usage: subscription_test.py path/to/weft
Ends with "subscription_test: N passed, N failed".
"""
import base64
import hashlib
import hmac
import http.server
import json
import os
import queue
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sessionlib import Http, wait_until  # noqa: E402
from weftproc import Checks, Weft  # noqa: E402

check = Checks("subscription_test")
SUBS = "/v1/stream/__ds/subscriptions/"


class Receiver:
    """A webhook receiver on loopback: answers each POST with the next of
    `answers` ((status, body)), the last one repeating."""

    def __init__(self, answers=((200, {}),)):
        self.answers = list(answers)
        self.got = queue.Queue()
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, body = outer.answers.pop(0) if len(outer.answers) > 1 else outer.answers[0]
                outer.got.put((time.monotonic(), json.loads(raw), self.headers.get("Webhook-Signature")))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = "http://127.0.0.1:%d/hook" % self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def next(self, timeout=10):
        try:
            return self.got.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self):
        self.srv.shutdown()


def put_sub(h, sid, body, want=201, headers=None):
    st, b, _ = h.json("PUT", SUBS + sid, body, dict({"Content-Type": "application/json"}, **(headers or {})))
    check(st == want, "PUT subscription %s: %s, want %s: %s" % (sid, st, want, b))
    return b


def append(h, path, value, create=False):
    st, r, _ = h.request("PUT" if create else "POST", "/v1/stream/" + path, json.dumps(value).encode(),
                         {"Content-Type": "application/json"})
    check(st in (200, 201, 204), "write %s: %s" % (path, st))
    return r.getheader("Stream-Next-Offset")


def get_sub(h, sid):
    st, b, _ = h.json("GET", SUBS + sid)
    return b if st == 200 else None


def link(body, path):
    return next((s for s in (body or {}).get("streams", []) if s["path"] == path), None)


def bearer(tok):
    return {"Authorization": "Bearer " + tok, "Content-Type": "application/json"}


def webhook_retries(h):
    rec = Receiver([(500, {}), (503, {}), (200, {"done": True})])
    put_sub(h, "retry", {"type": "webhook", "pattern": "retry/*", "webhook": {"url": rec.url}, "lease_ttl_ms": 1000})
    tail = append(h, "retry/a", {"n": 1}, create=True)
    first, second, third = rec.next(), rec.next(), rec.next()
    check(first and second and third, "three attempts (two failed, then done)")
    if not (first and second and third):
        return
    gap1, gap2 = second[0] - first[0], third[0] - second[0]
    check(0.75 <= gap1 <= 1.6, "the first retry after about 1 s (+-20%%): %.2f s" % gap1)
    check(1.55 <= gap2 <= 3.0, "the second after about 2 s: %.2f s" % gap2)
    check(first[1]["wake_id"] == third[1]["wake_id"], "retries carry the same wake")
    check(first[2] and first[2].startswith("t="), "every attempt is signed")
    ok = wait_until(lambda: (link(get_sub(h, "retry"), "retry/a") or {}).get("acked_offset") == tail, 5)
    check(ok, "done on the third attempt acked the tail %s" % tail)
    check(get_sub(h, "retry")["status"] == "active", "status back to active after a delivery")
    rec.close()


def failed_status(h):
    rec = Receiver([(500, {})])
    put_sub(h, "failing", {"type": "webhook", "streams": ["failing/a"], "webhook": {"url": rec.url}})
    append(h, "failing/a", {"n": 1}, create=True)
    check(rec.next() is not None, "a failing receiver is called")
    ok = wait_until(lambda: get_sub(h, "failing")["status"] == "failed", 3)
    check(ok, "status is failed while a retry is scheduled")
    st, _, _ = h.request("DELETE", SUBS + "failing")
    check(st == 204, "delete a failing subscription: %s" % st)
    rec.close()


def callbacks(h):
    rec = Receiver([(200, {})])
    put_sub(h, "cb", {"type": "webhook", "pattern": "cb/**", "webhook": {"url": rec.url}, "lease_ttl_ms": 2000})
    t1 = append(h, "cb/x/y", {"n": 1}, create=True)
    got = rec.next()
    check(got is not None, "webhook for a stream two segments down (**)")
    if not got:
        return
    w = got[1]
    check(w["streams"][0]["tail_offset"] == t1 and w["streams"][0]["acked_offset"] == "-1",
          "a stream found by its first append starts before its first byte: %s" % w["streams"])
    url = w["callback_url"]
    path = url[url.index("/v1/"):]
    base = {"wake_id": w["wake_id"], "generation": w["generation"]}
    st, b, _ = h.json("POST", path, dict(base, acks=[{"stream": "cb/nope", "offset": t1}]), bearer(w["callback_token"]))
    check(st == 409 and b["error"]["code"] == "INVALID_OFFSET", "ack of an unlinked stream: %s %s" % (st, b))
    st, b, _ = h.json("POST", path, dict(base, acks=[{"stream": "cb/x/y", "offset": "-1"}]), bearer(w["callback_token"]))
    check(st == 409 and b["error"]["code"] == "INVALID_OFFSET", "ack of -1: %s" % st)
    beyond = "0000000000000000_%016d" % (int(t1.split("_")[1]) + 1)
    st, b, _ = h.json("POST", path, dict(base, acks=[{"stream": "cb/x/y", "offset": beyond}]), bearer(w["callback_token"]))
    check(st == 409 and b["error"]["code"] == "INVALID_OFFSET", "ack beyond the tail: %s" % st)
    forged = w["callback_token"][:-2] + ("AA" if not w["callback_token"].endswith("AA") else "BB")
    st, b, _ = h.json("POST", path, base, bearer(forged))
    check(st == 401, "a forged token: %s" % st)
    st, b, _ = h.json("POST", path, base, {"Content-Type": "application/json"})
    check(st == 401, "no token: %s" % st)
    # heartbeats keep the lease past its ttl
    for _ in range(3):
        time.sleep(0.8)
        st, b, _ = h.json("POST", path, base, bearer(w["callback_token"]))
        check(st == 200 and b == {"ok": True, "next_wake": False}, "heartbeat: %s %s" % (st, b))
    st, b, _ = h.json("POST", path, dict(base, acks=[{"stream": "cb/x/y", "offset": t1}]), bearer(w["callback_token"]))
    check(st == 200, "ack without done: %s" % st)
    t2 = append(h, "cb/x/y", {"n": 2})
    st, b, _ = h.json("POST", path, dict(base, done=True), bearer(w["callback_token"]))
    check(st == 200 and b == {"ok": True, "next_wake": True}, "done with more pending: next_wake true: %s" % b)
    got2 = rec.next()
    check(got2 and got2[1]["generation"] == w["generation"] + 1 and got2[1]["wake_id"] != w["wake_id"],
          "the next wake has the next generation and a new wake id")
    if got2:
        s = got2[1]["streams"][0]
        check(s["acked_offset"] == t1 and s["tail_offset"] == t2, "it starts after the ack: %s" % s)
        st, b, _ = h.json("POST", path, dict(base, acks=[{"stream": "cb/x/y", "offset": t1}]), bearer(w["callback_token"]))
        check(st == 409 and b["error"]["code"] == "FENCED", "the old wake's token is fenced: %s" % st)
        st, b, _ = h.json("POST", path, {"wake_id": got2[1]["wake_id"], "generation": got2[1]["generation"],
                                         "acks": [{"stream": "cb/x/y", "offset": t1}]}, bearer(got2[1]["callback_token"]))
        check(st == 200, "an ack at the acked offset again is fine: %s" % st)
        st, b, _ = h.json("POST", path, {"wake_id": got2[1]["wake_id"], "generation": got2[1]["generation"],
                                         "acks": [{"stream": "cb/x/y", "offset": "0000000000000000_0000000000000001"}]},
                          bearer(got2[1]["callback_token"]))
        check(st == 409 and b["error"]["code"] == "INVALID_OFFSET", "an ack going back: %s" % st)
    rec.close()


def pull_leases(h):
    append(h, "wakes", [], create=True)
    put_sub(h, "pool", {"type": "pull-wake", "pattern": "jobs/*", "wake_stream": "wakes", "lease_ttl_ms": 1000})
    st, b, _ = h.json("POST", SUBS + "pool/claim", {"worker": "w1"})
    check(st == 409 and b["error"]["code"] == "NO_PENDING_WORK", "claim with nothing pending: %s %s" % (st, b))
    tail = append(h, "jobs/1", {"job": 1}, create=True)
    events = wait_until(lambda: [e for e in h.json("GET", "/v1/stream/wakes?offset=-1")[1] or [] if e.get("subscription_id") == "pool"], 5)
    check(events and events[0]["stream"] == "jobs/1" and events[0]["type"] == "wake", "a wake event: %s" % events)
    st, c1, _ = h.json("POST", SUBS + "pool/claim", {"worker": "w1"})
    check(st == 200 and c1["lease_ttl_ms"] == 1000, "w1 claims: %s" % st)
    st, b, _ = h.json("POST", SUBS + "pool/claim", {"worker": "w2"})
    check(st == 409 and b["error"]["current_holder"] == "w1", "w2 cannot while w1 holds it")
    # w1 crashes: its lease runs out and the wake goes to w2
    st, c2 = None, None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        st, c2, _ = h.json("POST", SUBS + "pool/claim", {"worker": "w2"})
        if st == 200:
            break
        time.sleep(0.1)
    check(st == 200 and c2["generation"] > c1["generation"], "after the lease, w2 claims a new generation: %s" % st)
    if st != 200:
        return
    n_events = len([e for e in h.json("GET", "/v1/stream/wakes?offset=-1")[1] if e.get("subscription_id") == "pool"])
    check(n_events == 2, "the expired lease wrote another wake event: %d" % n_events)
    st, b, _ = h.json("POST", SUBS + "pool/ack", {"wake_id": c1["wake_id"], "generation": c1["generation"],
                                                  "acks": [{"stream": "jobs/1", "offset": tail}], "done": True}, bearer(c1["token"]))
    check(st == 409 and b["error"]["code"] == "FENCED", "w1 comes back: fenced: %s" % st)
    st, b, _ = h.json("POST", SUBS + "pool/ack", {"wake_id": c2["wake_id"], "generation": c2["generation"],
                                                  "acks": [{"stream": "jobs/1", "offset": tail}], "done": True}, bearer(c2["token"]))
    check(st == 200 and b == {"ok": True, "next_wake": False}, "w2 acks: %s %s" % (st, b))
    check(link(get_sub(h, "pool"), "jobs/1")["acked_offset"] == tail, "the ack is the cursor")
    st, b, _ = h.json("POST", SUBS + "pool/callback", {"wake_id": "x", "generation": 1}, bearer(c2["token"]))
    check(st == 400, "callback on a pull-wake subscription: %s" % st)


def refusals(h):
    bad_urls = ["http://10.1.2.3/h", "http://192.168.0.1/h", "http://172.16.5.4/h", "http://169.254.169.254/latest",
                "http://[fe80::1]/h", "http://[::ffff:10.0.0.1]/h", "http://[fd00::1]/h", "http://0.0.0.0/h",
                "http://100.64.0.1/h"]
    for u in bad_urls:
        b = put_sub(h, "bad-url", {"type": "webhook", "pattern": "x/*", "webhook": {"url": u}}, want=400)
        check(b and b["error"]["code"] == "WEBHOOK_URL_REJECTED", "%s rejected: %s" % (u, b))
    b = put_sub(h, "plain", {"type": "webhook", "pattern": "x/*", "webhook": {"url": "http://example.com/h"}}, want=400)
    check(b and "https" in b["error"]["message"], "plain http to a public host: %s" % b)
    for u in ["http://localhost:9/h", "http://127.0.0.2:9/h", "http://[::1]:9/h", "https://example.com/h"]:
        put_sub(h, "ok-url", {"type": "webhook", "pattern": "x/*", "webhook": {"url": u}})
        h.request("DELETE", SUBS + "ok-url")
    for body, what in [({"pattern": "x/*", "webhook": {"url": "http://localhost/"}}, "no type"),
                       ({"type": "webhook", "webhook": {"url": "http://localhost/"}}, "no pattern or streams"),
                       ({"type": "webhook", "pattern": "x/*"}, "no webhook.url"),
                       ({"type": "pull-wake", "pattern": "x/*"}, "no wake_stream"),
                       ({"type": "webhook", "pattern": "x/*", "webhook": {"url": "http://localhost/"}, "lease_ttl_ms": 999}, "lease too short"),
                       ({"type": "webhook", "pattern": "x/*", "webhook": {"url": "http://localhost/"}, "lease_ttl_ms": 600001}, "lease too long"),
                       ({"type": "webhook", "pattern": "__ds/*", "webhook": {"url": "http://localhost/"}}, "pattern under __ds"),
                       ({"type": "webhook", "streams": ["a", 3], "webhook": {"url": "http://localhost/"}}, "a stream that is no string"),
                       ({"type": "webhook", "streams": ["/v1/other/x"], "webhook": {"url": "http://localhost/"}}, "an absolute path nobody publishes")]:
        b = put_sub(h, "bad", body, want=400)
        check(b and b["error"]["code"] == "INVALID_REQUEST" and b["error"]["message"], "%s: %s" % (what, b))
    st, _, _ = h.request("PUT", SUBS + "bad", b"{", {"Content-Type": "application/json"})
    check(st == 400, "bad JSON: %s" % st)
    st, b, _ = h.json("PUT", SUBS + "bad%20id", {"type": "webhook", "pattern": "x/*", "webhook": {"url": "http://localhost/"}})
    check(st == 400, "an id with a space: %s" % st)
    st, b, _ = h.json("GET", SUBS + "nobody")
    check(st == 404 and b["error"]["code"] == "SUBSCRIPTION_NOT_FOUND", "GET unknown: %s" % st)
    st, b, _ = h.json("GET", "/v1/stream/__ds/other")
    check(st == 404, "unknown control route: %s" % st)
    cfg = {"type": "webhook", "pattern": "x/*", "webhook": {"url": "http://localhost:9/"}}
    put_sub(h, "twice", cfg)
    put_sub(h, "twice", dict(cfg, streams=["x/b", "x/a"]), want=409)
    put_sub(h, "twice", cfg, want=200)
    put_sub(h, "order", dict(cfg, streams=["x/b", "x/a", "x/a"]))
    put_sub(h, "order", dict(cfg, streams=["x/a", "x/b"]), want=200)
    st, r, _ = h.request("GET", "/v1/stream/__ds/jwks.json")
    check(st == 200 and "jwk-set+json" in r.getheader("Content-Type") and "max-age=300" in r.getheader("Cache-Control"),
          "JWKS: %s" % st)


def explicit_and_glob(h):
    put_sub(h, "mixed", {"type": "webhook", "pattern": "m/*", "streams": ["m/a"], "webhook": {"url": "http://localhost:9/"}})
    append(h, "m/b", {"n": 1}, create=True)
    wait_until(lambda: link(get_sub(h, "mixed"), "m/b"), 3)
    st, _, _ = h.request("DELETE", SUBS + "mixed/streams/" + "m%2Fa")
    check(st == 204, "remove explicit m/a: %s" % st)
    b = get_sub(h, "mixed")
    check(link(b, "m/a") and link(b, "m/a")["link_type"] == "glob", "m/a stays linked by the pattern: %s" % b["streams"])
    check(link(b, "m/b")["link_type"] == "glob", "m/b linked by the pattern")
    st, _, _ = h.request("POST", SUBS + "mixed/streams", json.dumps({"streams": ["other/z"]}).encode(), {"Content-Type": "application/json"})
    check(st == 204, "add other/z: %s" % st)
    st, _, _ = h.request("DELETE", SUBS + "mixed/streams/other%2Fz")
    check(st == 204 and not link(get_sub(h, "mixed"), "other/z"), "other/z gone with its explicit link")
    h.request("DELETE", SUBS + "mixed")


def restart(w, h):
    done = Receiver([(200, {"done": True})])
    put_sub(h, "durable", {"type": "webhook", "pattern": "d/*", "webhook": {"url": done.url}, "lease_ttl_ms": 1000})
    t1 = append(h, "d/1", {"n": 1}, create=True)
    first = done.next()
    check(first is not None, "durable: first wake")
    wait_until(lambda: link(get_sub(h, "durable"), "d/1")["acked_offset"] == t1, 5)
    slow = Receiver([(200, {})])  # never calls back
    put_sub(h, "unacked", {"type": "webhook", "pattern": "u/*", "webhook": {"url": slow.url}, "lease_ttl_ms": 60000})
    append(h, "u/1", {"n": 1}, create=True)
    u1 = slow.next()
    check(u1 is not None, "unacked: first wake")
    before = get_sub(h, "durable")
    w.kill()
    w.start()
    h2 = Http(w.port)
    after = get_sub(h2, "durable")
    check(after and after["streams"] == before["streams"] and after["created_at"] == before["created_at"],
          "after SIGKILL: links and acked offsets kept: %s" % (after or {}).get("streams"))
    check(done.next(timeout=1.5) is None, "an acknowledged wake is not repeated after a restart")
    u2 = slow.next(timeout=5)
    check(u2 is not None and u1 and u2[1]["generation"] > u1[1]["generation"],
          "an unacknowledged wake is delivered again, in a later generation")
    if u1 and u2:
        st, b, _ = h2.json("POST", u1[1]["callback_url"][u1[1]["callback_url"].index("/v1/"):],
                           {"wake_id": u1[1]["wake_id"], "generation": u1[1]["generation"]}, bearer(u1[1]["callback_token"]))
        check(st == 409 and b["error"]["code"] == "FENCED", "a wake from before the restart is fenced: %s" % st)
    t2 = append(h2, "d/1", {"n": 2})
    second = done.next()
    check(second and first and second[1]["generation"] > first[1]["generation"] and
          link(second[1], "d/1")["acked_offset"] == t1 and link(second[1], "d/1")["tail_offset"] == t2,
          "after the restart the next wake starts at the ack: %s" % (second and second[1]["streams"]))
    done.close()
    slow.close()
    return h2


def sessions(h):
    rec = Receiver([(200, {})])
    put_sub(h, "agent", {"type": "webhook", "pattern": "/v1/session/trip-*", "webhook": {"url": rec.url}, "lease_ttl_ms": 60000})
    put_sub(h, "planner", {"type": "webhook", "pattern": "/v1/session/*/objects/plan", "webhook": {"url": rec.url}})
    for sid in ["trip-1", "chat-1"]:
        st, _, _ = h.request("PUT", "/v1/session/" + sid, b"{}", {"Content-Type": "application/json"})
        check(st == 201, "create session %s: %s" % (sid, st))
    st, b, _ = h.json("POST", "/v1/session/trip-1/messages", {"id": "m1", "role": "user", "parts": [{"type": "text", "text": "hi"}]},
                      {"Weft-Client": "alice"})
    check(st == 201, "post a message: %s" % st)
    got = rec.next()
    check(got and got[1]["subscription_id"] == "agent" and got[1]["streams"][0]["path"] == "/v1/session/trip-1"
          and got[1]["streams"][0]["tail_offset"] == b["offset"], "a person's message wakes the agent: %s" % (got and got[1]))
    if not got:
        return
    w = got[1]
    cb = w["callback_url"][w["callback_url"].index("/v1/"):]
    st, r, _ = h.json("POST", "/v1/session/trip-1/runs", {"id": "r1", "answers": "m1"}, {"Weft-Client": "agent"})
    for i in range(3):
        h.json("POST", "/v1/session/trip-1/runs/r1/chunks", {"type": "text-delta", "id": "t", "delta": "x%d" % i}, {"Weft-Client": "agent"})
    h.json("POST", "/v1/session/trip-1/runs/r1/end", {"reason": "complete"}, {"Weft-Client": "agent"})
    st, b2, _ = h.json("POST", cb, {"wake_id": w["wake_id"], "generation": w["generation"],
                                    "acks": [{"stream": "/v1/session/trip-1", "offset": w["streams"][0]["tail_offset"]}], "done": True},
                       bearer(w["callback_token"]))
    check(st == 200 and b2 == {"ok": True, "next_wake": False}, "the run's chunks and answer did not make more work: %s" % b2)
    check(rec.next(timeout=1) is None, "no wake for a run's chunks, nor for the session chat-1 (not trip-*)")
    st, o, _ = h.json("POST", "/v1/session/chat-1/objects", {"ops": [{"object": "plan", "op": "set", "path": "days", "value": 2}]},
                      {"Weft-Client": "bob"})
    check(st == 200, "change an object: %s" % st)
    got = rec.next()
    check(got and got[1]["subscription_id"] == "planner" and got[1]["streams"][0]["path"] == "/v1/session/chat-1/objects/plan",
          "an object's change wakes who watches it: %s" % (got and got[1]))
    h.json("POST", "/v1/session/chat-1/objects", {"ops": [{"object": "other", "op": "increment"}]}, {"Weft-Client": "bob"})
    check(rec.next(timeout=1) is None, "another object does not")
    rec.close()


def scopes(h):
    rec = Receiver([(200, {"done": True})])
    st, _, _ = h.request("PUT", "/v1/session/scoped-1", b"{}", {"Content-Type": "application/json"})
    st, m, _ = h.json("POST", "/v1/session/scoped-1/messages", {"id": "m1", "role": "user", "parts": []}, {"Weft-Client": "a"})
    put_sub(h, "everything", {"type": "webhook", "pattern": "**", "webhook": {"url": rec.url}})
    put_sub(h, "explicit", {"type": "webhook", "streams": ["/v1/session/scoped-1"], "webhook": {"url": rec.url}})
    check(link(get_sub(h, "explicit"), "/v1/session/scoped-1")["acked_offset"] == m["offset"],
          "an explicit session path starts at its current offset, not -1")
    h.json("POST", "/v1/session/scoped-1/messages", {"id": "m2", "role": "user", "parts": []}, {"Weft-Client": "a"})
    got = rec.next()
    check(got and got[1]["subscription_id"] == "explicit", "the session wakes its explicit subscriber: %s" % (got and got[1]))
    check(rec.next(timeout=1) is None, "a relative pattern (**) never matches a session path")
    for sid in ("everything", "explicit"):
        h.request("DELETE", SUBS + sid)
    rec.close()


def idle_while_failing(w, h):
    rec = Receiver([(500, {})])
    put_sub(h, "down", {"type": "webhook", "streams": ["down/a"], "webhook": {"url": rec.url}, "lease_ttl_ms": 1000})
    append(h, "down/a", {"n": 1}, create=True)
    rec.next()

    def cpu():
        f = open("/proc/%d/stat" % w.proc.pid).read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    c0 = cpu()
    time.sleep(3)
    used = cpu() - c0
    check(used < 0.5, "weft stays idle while a webhook keeps failing past its lease: %.2f s CPU in 3 s" % used)
    h.request("DELETE", SUBS + "down")
    rec.close()


def many_after_restart(w, h):
    rec = Receiver([(200, {})])
    put_sub(h, "many", {"type": "webhook", "pattern": "/v1/session/many-*", "webhook": {"url": rec.url}, "lease_ttl_ms": 60000})
    for i in range(20):
        h.request("PUT", "/v1/session/many-%d" % i, b"{}", {"Content-Type": "application/json"})
        h.json("POST", "/v1/session/many-%d/messages" % i, {"id": "m", "role": "user", "parts": []}, {"Weft-Client": "a"})
    check(rec.next() is not None, "many: the first wake")
    w.kill()
    w.start()
    h2 = Http(w.port)
    got = rec.next(timeout=5)
    pending = {s["path"] for s in (got[1]["streams"] if got else []) if s["has_pending"]}
    check(len(pending) == 20, "after a restart every session with an unacked message is pending: %d" % len(pending))
    rec.close()
    return h2


def hs256(claims, secret):
    b = lambda v: base64.urlsafe_b64encode(v).rstrip(b"=").decode()  # noqa: E731
    head = b(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b(json.dumps(claims).encode())
    return head + "." + b(hmac.new(secret, head.encode(), hashlib.sha256).digest())


def with_tokens(binary):
    secret = os.urandom(32).hex().encode()
    w = Weft(binary)
    path = os.path.join(w.tmp, "secret")
    open(path, "wb").write(secret)
    w.args = ["--auth-secret-file", path]
    w.start()
    h = Http(w.port)
    exp = int(time.time()) + 600
    agent = hs256({"sub": "agent", "exp": exp, "caps": {"/v1/stream/__ds/subscriptions/agent-*": ["subscribe"],
                                                        "/v1/session/**": ["subscribe", "read", "write", "create"]}}, secret)
    reader = hs256({"sub": "eve", "exp": exp, "caps": {"/v1/**": ["read"]}}, secret)
    narrow = hs256({"sub": "nina", "exp": exp, "caps": {"/v1/stream/__ds/subscriptions/agent-*": ["subscribe"],
                                                        "/v1/session/trip-*": ["subscribe"]}}, secret)
    rec = Receiver([(200, {})])
    body = {"type": "webhook", "pattern": "/v1/session/*", "webhook": {"url": rec.url}}
    st, _, _ = h.json("PUT", SUBS + "agent-1", body)
    check(st == 401, "tokens: no token: %s" % st)
    st, b, _ = h.json("PUT", SUBS + "agent-1", body, {"Authorization": "Bearer " + reader})
    check(st == 403 and "subscribe" in b["error"], "tokens: read only: 403 naming subscribe: %s %s" % (st, b))
    st, b, _ = h.json("PUT", SUBS + "agent-1", body, {"Authorization": "Bearer " + narrow})
    check(st == 403 and "/v1/session/*" in b["error"], "tokens: a pattern wider than granted: %s %s" % (st, b))
    st, b, _ = h.json("PUT", SUBS + "other-1", body, {"Authorization": "Bearer " + agent})
    check(st == 403, "tokens: a subscription id outside the grant: %s" % st)
    st, b, _ = h.json("PUT", SUBS + "agent-1", body, {"Authorization": "Bearer " + agent})
    check(st == 201, "tokens: the agent subscribes: %s %s" % (st, b))
    st, _, _ = h.request("GET", "/v1/stream/__ds/jwks.json")
    check(st == 200, "tokens: the JWKS needs none: %s" % st)
    h.request("PUT", "/v1/session/s1", b"{}", {"Authorization": "Bearer " + agent})
    h.json("POST", "/v1/session/s1/messages", {"id": "m1", "role": "user", "parts": []}, {"Authorization": "Bearer " + agent})
    got = rec.next()
    check(got is not None, "tokens: woken")
    if got:
        w_ = got[1]
        cb = w_["callback_url"][w_["callback_url"].index("/v1/"):]
        st, b, _ = h.json("POST", cb, {"wake_id": w_["wake_id"], "generation": w_["generation"], "done": True}, bearer(w_["callback_token"]))
        check(st == 200, "tokens: the callback with the wake's token only: %s %s" % (st, b))
    st, _, _ = h.request("DELETE", SUBS + "agent-1/streams/a%2Fcallback")
    check(st == 401, "tokens: a route ending in /callback deeper down still needs a token: %s" % st)
    for path in ["/v1/stream/abcdejwks.json", "/v1/session/abcdjwks.json"]:
        st, _, _ = h.request("PUT", path, b"{}", {"Content-Type": "application/json"})
        check(st == 401, "tokens: %s is no JWKS: it needs a token: %s" % (path, st))
    st, _, _ = h.request("POST", "/v1/stream/__ds/jwks.json", b"{}")
    check(st == 401, "tokens: only GET of the JWKS is open: %s" % st)
    sub_only = hs256({"sub": "s", "exp": exp, "caps": {"/v1/stream/__ds/subscriptions/**": ["subscribe"]}}, secret)
    st, _, _ = h.request("PUT", "/v1/stream/__ds%2Fsubscriptions/x", b"hi", {"Authorization": "Bearer " + sub_only})
    check(st == 400, "tokens: a percent-encoded __ds is refused, not a stream: %s" % st)
    shallow = hs256({"sub": "s", "exp": exp, "caps": {"/v1/stream/__ds/subscriptions/agent-*": ["subscribe"],
                                                      "/v1/stream/*": ["subscribe"]}}, secret)
    st, b, _ = h.json("PUT", SUBS + "agent-2", {"type": "webhook", "pattern": "**", "webhook": {"url": rec.url}},
                      {"Authorization": "Bearer " + shallow})
    check(st == 403, "tokens: a pattern deeper than the grant: %s %s" % (st, b))
    st, b, _ = h.json("PUT", SUBS + "agent-2", {"type": "webhook", "pattern": "*", "webhook": {"url": rec.url}},
                      {"Authorization": "Bearer " + shallow})
    check(st == 201, "tokens: the grant's own pattern: %s %s" % (st, b))
    rec.close()
    check(w.stop() == 0, "tokens: weft exits 0 on SIGTERM")


def main():
    binary = sys.argv[1]
    w = Weft(binary, args=["--log-level", "info"])
    w.start()
    h = Http(w.port)
    try:
        refusals(h)
        explicit_and_glob(h)
        callbacks(h)
        pull_leases(h)
        webhook_retries(h)
        failed_status(h)
        sessions(h)
        scopes(h)
        idle_while_failing(w, h)
        h = restart(w, h)
        h = many_after_restart(w, h)
        with_tokens(binary)
    finally:
        rc = w.stop()
    check(rc == 0, "weft exits 0 on SIGTERM (no leak, no sanitizer report): %s" % rc)
    check.finish(w)


if __name__ == "__main__":
    main()
