#!/usr/bin/env python3
"""Session protocol test: every session route and every error path, over real
sockets against the real binary (docs/sessions.md).

- Create, attach, delete; Stream-TTL; --max-sessions; OPTIONS and HEAD.
- Messages: posted, retried (applied once), conflicting (409), ids made by
  the server, identity from the header or ?client=.
- Runs: started (ids chosen or made), chunks (one or a batch, seq), heartbeat,
  end (complete, cancelled, error), cancel by anyone, the run lease
  (--run-lease 1s on a second server).
- Errors: unknown session 404, bad session id 400, missing identity 400, bad
  JSON 400 with the byte position, non-object body 400, bad role / parts / id
  / metadata 400, oversize body 413 (--session-max-event, 200 at the limit),
  unknown run 404, non-owner 403, writes to an ended run 409, bad end reason
  400, wrong method 405, answers naming no message 404, duplicate run 409.
  Every refused request logs nothing.
- After every write, the log read from the previous offset holds exactly the
  events it logged (type, key, operation, value, client, timestamp) and ends
  at the offset its answer gave. The log read from -1 is exactly all of them,
  in order, byte for byte as the server frames them.
- Attach mid-run shows the output so far; after the end the run is compacted
  into one assistant UIMessage as the AI SDK client would build it (text and
  reasoning deltas joined, tool calls with input and output or error, steps,
  sources, files, data parts, metadata); the snapshot's state equals the
  materialisation of the log (State Protocol) up to the snapshot's offset —
  also for snapshots taken while another client writes.
- A late joiner that attaches and then long-polls (or reads SSE) from the
  attach offset gets exactly the later events: no gap, no duplicate.
- An SSE reader of the log gets every event live.
- A restart (SIGTERM, then start) rebuilds every session: the same attach
  state and the same log bytes.
- Then the server bugs found while writing this test, each a check that says
  what it sent, what it expected and what it got.

Usage: session_test.py path/to/weft
"""
import calendar
import json
import re
import sys
import threading
import time

from sessionlib import (SESSION, Http, LogReader, assemble, dumps, log_body, materialise,
                        normal_state, output_of, read_log, wait_until, who, TIMESTAMP)
from weftproc import Checks, Weft

check = Checks("session_test")
MAX_EVENT = 64 * 1024
T0 = time.time()

# --- matching events against what we expect ---


class _Sentinel:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return self.name


TS = _Sentinel("<timestamp>")       # an RFC 3339 UTC time during the test
OPTIONAL = _Sentinel("<optional>")  # a member that may be absent (checked elsewhere)


def ts_ok(v):
    if not isinstance(v, str) or not TIMESTAMP.match(v):
        return False
    t = calendar.timegm(time.strptime(v, "%Y-%m-%dT%H:%M:%SZ"))
    return T0 - 2 <= t <= time.time() + 2


def match(a, e, path="$"):
    """None if actual a matches expected e, else where it differs."""
    if e is TS:
        return None if ts_ok(a) else "%s: %r is not a timestamp of now" % (path, a)
    if e is OPTIONAL:
        return None
    if callable(e):
        return None if e(a) else "%s: %r rejected" % (path, a)
    if isinstance(e, dict):
        if not isinstance(a, dict):
            return "%s: %r is not an object" % (path, a)
        need = {k for k, v in e.items() if v is not OPTIONAL}
        if not need <= set(a) or not set(a) <= set(e):
            return "%s: keys %s, want %s" % (path, sorted(a), sorted(e))
        for k in a:
            d = match(a[k], e[k], path + "." + k)
            if d:
                return d
        return None
    if isinstance(e, list):
        if not isinstance(a, list) or len(a) != len(e):
            return "%s: %r, want %r" % (path, a, e)
        for i, (x, y) in enumerate(zip(a, e)):
            d = match(x, y, "%s[%d]" % (path, i))
            if d:
                return d
        return None
    if a != e or type(a) != type(e):
        return "%s: %r, want %r" % (path, a, e)
    return None


def ev(type_, key, op, value, client):
    """An expected event; client None: no client header; OPTIONAL: either."""
    headers = {"operation": op, "timestamp": TS}
    if client is not None:
        headers["client"] = client
    return {"type": type_, "key": key, "value": value, "headers": headers}


def ID(prefix):
    return lambda v: isinstance(v, str) and re.fullmatch(prefix + "_[0-9a-f]{24}", v) is not None


def running(rid, owner, message_id, answers=None, metadata=None):
    v = {"id": rid, "owner": owner, "status": "running", "answers": answers,
         "message_id": message_id, "started_at": TS}
    if metadata is not None:
        v["metadata"] = metadata
    return v


def ended(run, status, **extra):
    v = dict(run)
    v["status"] = status
    v["ended_at"] = TS
    v.update(extra)
    return v


class Sess:
    """A session under test: its expected log so far and its tail."""

    def __init__(self, port, sid):
        self.port, self.sid = port, sid
        self.h = Http(port)
        self.exp = []         # every event we expect in the log, in order
        self.got = []         # every event the log had after each write
        self.tail = None      # the log's offset after them
        self.path = SESSION + sid

    def create(self, want=201):
        st, body, r = self.h.json("PUT", self.path)
        check(st == want and body == {"id": self.sid}, "PUT %s: want %d {id}, got %d %r" % (self.path, want, st, body))
        _, _, self.tail = read_log(self.port, self.sid)
        return st

    def write(self, method, rest, body, client, want, events=(), what="", headers=None):
        """One request: status want, then the log from the previous tail holds
        exactly `events` (or a function of the answer giving them) and ends at
        the answer's offset. Returns the parsed answer."""
        what = what or "%s %s%s" % (method, self.sid, rest)
        hd = who(client)
        hd.update(headers or {})
        st, ans, r = self.h.json(method, self.path + rest, body, hd)
        check(st == want, "%s: want %d, got %d %r" % (what, want, st, ans))
        if st >= 400:
            check(isinstance(ans, dict) and isinstance(ans.get("error"), str) and list(ans) == ["error"],
                  "%s: error answer is not {\"error\": \"...\"}: %r" % (what, ans))
        if st != want:
            # re-sync so that the next checks stand on their own
            self.got, _, self.tail = read_log(self.port, self.sid)
            self.exp = list(self.got)
            return ans
        if callable(events):
            events = events(ans)
        got, _, nxt = read_log(self.port, self.sid, self.tail)
        d = match(got, list(events))
        check(d is None, "%s: logged %s (%s)" % (what, json.dumps(got)[:600], d))
        if st < 300 and isinstance(ans, dict) and "offset" in ans:
            check(ans["offset"] == nxt == r.getheader("Stream-Next-Offset"),
                  "%s: answer offset %s, header %s, log tail %s" % (what, ans.get("offset"),
                                                                     r.getheader("Stream-Next-Offset"), nxt))
        # the expectations (the real events where they failed, so that one
        # failure is reported once)
        self.exp.extend(list(events) if d is None else got)
        self.got.extend(got)
        self.tail = nxt
        return ans

    def refused(self, method, rest, body, client, want, what, headers=None, error=None):
        """A refused request: status want, an {"error"} answer (matching
        `error` if given), and nothing logged."""
        ans = self.write(method, rest, body, client, want, [], what, headers)
        if error is not None:
            msg = ans.get("error", "") if isinstance(ans, dict) else ""
            check(re.search(error, msg) is not None, "%s: error %r does not match %r" % (what, msg, error))
        return ans

    def attach(self):
        st, body, r = self.h.json("GET", self.path)
        check(st == 200, "attach %s: %d %r" % (self.sid, st, body))
        if st == 200:
            check(body.get("offset") == r.getheader("Stream-Next-Offset"),
                  "attach %s: body offset %s, header %s" % (self.sid, body.get("offset"),
                                                          r.getheader("Stream-Next-Offset")))
            check({"id", "offset", "state", "output"} <= set(body) and body["id"] == self.sid,
                  "attach %s: members %s" % (self.sid, list(body)))
        return body or {}

    def check_snapshot(self, what):
        """Attach; its state equals the materialised log; its output holds,
        for every running run, every chunk the log streamed for it."""
        snap = self.attach()
        events, bodies, nxt = read_log(self.port, self.sid)
        check(snap.get("offset") == nxt, "%s: attach offset %s, log tail %s" % (what, snap.get("offset"), nxt))
        anomalies = []
        state = materialise(events, anomalies=anomalies)
        check(normal_state(snap.get("state", {})) == normal_state(state),
              "%s: attach state differs from the materialised log:\n  attach %s\n  log    %s"
              % (what, json.dumps(snap.get("state"))[:800], json.dumps(state)[:800]))
        check(not anomalies, "%s: State Protocol anomalies in the log: %s" % (what, anomalies[:5]))
        check(snap.get("output") == output_of(events),
              "%s: attach output %s, the log's chunks of running runs %s"
              % (what, json.dumps(snap.get("output"))[:400], json.dumps(output_of(events))[:400]))
        return snap


# --- the main flow: messages, runs, chunks, ends, on one session ---

RICH_CHUNKS = [
    [{"type": "start", "messageMetadata": {"model": "m-1"}}, {"type": "start-step"}],
    [{"type": "reasoning-start", "id": "r0"},
     {"type": "reasoning-delta", "id": "r0", "delta": "Let me "},
     {"type": "reasoning-delta", "id": "r0", "delta": "think."},
     {"type": "reasoning-end", "id": "r0"}],
    [{"type": "text-start", "id": "t0"}],
    [{"type": "text-delta", "id": "t0", "delta": "Día 1: "}],
    [{"type": "text-delta", "id": "t0", "delta": "Colosseo \u2014 \U0001F3DB\ufe0f, \"quotes\" \\ and\nnewline"}],
    [{"type": "text-end", "id": "t0"},
     {"type": "tool-input-start", "toolCallId": "call-1", "toolName": "weather"},
     {"type": "tool-input-delta", "toolCallId": "call-1", "inputTextDelta": "{\"city\":"},
     {"type": "tool-input-delta", "toolCallId": "call-1", "inputTextDelta": "\"Rome\"}"}],
    [{"type": "tool-input-available", "toolCallId": "call-1", "toolName": "weather", "input": {"city": "Rome"}}],
    [{"type": "tool-output-available", "toolCallId": "call-1", "output": {"temp": 21, "sky": ["sun", None]}}],
    [{"type": "tool-input-available", "toolCallId": "call-2", "toolName": "book", "input": {"hotel": 7}},
     {"type": "tool-output-error", "toolCallId": "call-2", "errorText": "sold out"},
     {"type": "tool-input-available", "toolCallId": "call-3", "toolName": "lookup", "dynamic": True, "input": {"q": 1}},
     {"type": "tool-output-available", "toolCallId": "call-3", "output": "ok"}],
    [{"type": "finish-step"}, {"type": "start-step"},
     {"type": "source-url", "sourceId": "s1", "url": "https://example.com/rome", "title": "Rome"},
     {"type": "file", "url": "data:text/plain;base64,aGk=", "mediaType": "text/plain"},
     {"type": "data-weather", "id": "w1", "data": {"status": "loading"}},
     {"type": "data-note", "data": {"n": 1}, "transient": True},
     {"type": "data-weather", "id": "w1", "data": {"status": "done", "temp": 21}},
     {"type": "some-future-chunk", "x": 1}],
    [{"type": "text-start", "id": "t1"}, {"type": "text-delta", "id": "t1", "delta": "Day 2"}],
    [{"type": "text-delta", "id": "t1", "delta": ": Vatican."}, {"type": "text-end", "id": "t1"},
     {"type": "finish-step"}, {"type": "finish", "messageMetadata": {"tokens": 42}}],
]


def main_flow(port):
    s = Sess(port, "main")
    s.create(201)
    s.create(200)
    snap = s.attach()
    check({"message", "run", "chunk"} <= set(snap.get("state", {})) and normal_state(snap["state"]) == {}
          and snap.get("output") == {},
          "attach of a new session: %r" % snap)
    empty, _, nxt = read_log(port, "main", snap.get("offset", "-1"))
    check(empty == [] and nxt == snap.get("offset"), "log after a new session's attach offset: %r %s" % (empty, nxt))

    # -- messages --
    m1 = {"id": "m1", "role": "user",
          "parts": [{"type": "text", "text": "Plan 3 days in Rome \u00e9\u2028\u0001 \U0001F600 </script>"}],
          "metadata": {"lang": "en", "n": 3, "ok": True, "none": None}}
    ans = s.write("POST", "/messages", m1, "alice", 201, [ev("message", "m1", "insert", m1, "alice")], "post m1")
    check(isinstance(ans, dict) and set(ans) == {"id", "offset"} and ans.get("id") == "m1", "post m1 answer: %r" % ans)
    check(dumps(s.got[-1]["value"]) == dumps(m1), "m1 stored as given (key order): %s" % dumps(s.got[-1]["value"]))
    tail = s.tail
    ans = s.write("POST", "/messages", m1, "alice", 200, [], "post m1 again (a retry)")
    check(isinstance(ans, dict) and ans.get("id") == "m1" and ans.get("offset") == tail,
          "retry of m1: answer %r, want id m1 at offset %s" % (ans, tail))
    m1_reordered = {"metadata": m1["metadata"], "parts": m1["parts"], "role": "user", "id": "m1"}
    s.write("POST", "/messages", m1_reordered, "alice", 200, [], "retry of m1 with its keys in another order")
    s.refused("POST", "/messages", dict(m1, parts=[{"type": "text", "text": "other"}]), "alice", 409,
              "post m1 with another body", error="different message")
    s.refused("POST", "/messages", dict(m1, role="assistant"), "bob", 409, "post m1 with another role by bob")

    m2 = {"role": "assistant", "parts": []}
    ans = s.write("POST", "/messages", m2, "bob", 201,
                  lambda a: [ev("message", a["id"], "insert", dict(m2, id=a["id"]), "bob")], "post m2 without id")
    check(ID("msg")(ans.get("id")), "server-made message id: %r" % ans.get("id"))
    check(dumps(s.got[-1]["value"]) == dumps(dict(m2, id=ans.get("id"))),
          "m2 stored as given, id appended: %s" % dumps(s.got[-1]["value"]))
    m3 = {"id": "m3", "role": "system", "parts": [{"type": "text", "text": "be brief"}], "metadata": None}
    s.write("POST", "/messages?client=carol", m3, None, 201, [ev("message", "m3", "insert", m3, "carol")],
            "post m3 with ?client=carol")
    long_client = "c" * 256
    m4 = {"id": "m4", "role": "user", "parts": [{"type": "text", "text": "x"}]}
    s.write("POST", "/messages", m4, long_client, 201, [ev("message", "m4", "insert", m4, long_client)],
            "post m4 as a 256-byte client id")

    # -- message errors: each 400, nothing logged --
    s.refused("POST", "/messages", m4, None, 400, "message without identity", error="identity")
    s.refused("POST", "/messages", m4, "", 400, "message with an empty Weft-Client")
    s.refused("POST", "/messages", m4, "c" * 257, 400, "message with a 257-byte Weft-Client")
    bad_json = [
        (b'{"role":"user","parts":[]', 25, 25),         # cut short: at the end
        (b'{"role": x, "parts": []}', 9, 10),           # the bad token at byte 9
        (b'{"role":"user","parts":[]} trailing', 27, 35),  # jansson: the end of the bad token
        (b'{"role":"user","role":"user","parts":[]}', 15, 22),  # duplicate key
        (b'\xff', 0, 1),
        (b'{"role":"user","parts":[1,]}', 26, 27),
    ]
    for body, lo, hi in bad_json:
        ans = s.refused("POST", "/messages", body, "alice", 400, "bad JSON %r" % body)
        mt = re.search(r"invalid JSON at byte (\d+)", (ans or {}).get("error", ""))
        check(mt is not None and lo <= int(mt.group(1)) <= hi,
              "bad JSON %r: error %r, want the byte position %d..%d" % (body, (ans or {}).get("error"), lo, hi))
    for body in [b"[1]", b"[]"]:
        s.refused("POST", "/messages", body, "alice", 400, "non-object body %r" % body, error="JSON object")
    for body in [b'"x"', b"5", b"null", b"true"]:  # jansson takes no scalar at the top
        s.refused("POST", "/messages", body, "alice", 400, "non-object body %r" % body,
                  error=r"JSON object|'\[' or '\{' expected")
    s.refused("POST", "/messages", b"", "alice", 400, "empty message body")
    bad_msgs = [
        ({"parts": []}, "role"), ({"role": "robot", "parts": []}, "role"), ({"role": 5, "parts": []}, "role"),
        ({"role": "", "parts": []}, "role"), ({"role": None, "parts": []}, "role"),
        ({"role": "user"}, "parts"), ({"role": "user", "parts": {}}, "parts"),
        ({"role": "user", "parts": "text"}, "parts"), ({"role": "user", "parts": None}, "parts"),
        ({"id": 5, "role": "user", "parts": []}, "id"), ({"id": "", "role": "user", "parts": []}, "id"),
        ({"id": "x" * 257, "role": "user", "parts": []}, "id"), ({"id": ["a"], "role": "user", "parts": []}, "id"),
        ({"role": "user", "parts": [], "metadata": 5}, "metadata"),
        ({"role": "user", "parts": [], "metadata": []}, "metadata"),
    ]
    for body, what in bad_msgs:
        s.refused("POST", "/messages", body, "alice", 400, "bad message %s" % json.dumps(body)[:80], error=what)

    # -- oversize bodies (--session-max-event 64KiB): at the limit ok, one byte over 413 --
    def sized(n, mid):
        m = {"id": mid, "role": "user", "parts": [{"type": "text", "text": ""}]}
        pad = n - len(json.dumps(m).encode())
        m["parts"][0]["text"] = "a" * pad
        assert len(json.dumps(m).encode()) == n
        return m
    big = sized(MAX_EVENT, "big")
    s.write("POST", "/messages", big, "alice", 201, [ev("message", "big", "insert", big, "alice")],
            "message of exactly --session-max-event bytes")
    s.refused("POST", "/messages", sized(MAX_EVENT + 1, "big2"), "alice", 413, "message one byte over the limit",
              error="too large")
    s.refused("POST", "/messages", sized(4 * MAX_EVENT, "big3"), "alice", 413, "message 4x the limit")

    # -- runs --
    md = {"model": "gpt-x", "temperature": 0}
    ans = s.write("POST", "/runs", {"id": "r1", "answers": "m1", "metadata": md}, "agent-1", 201,
                  lambda a: [ev("run", "r1", "insert", running("r1", "agent-1", a["message_id"], "m1", md), "agent-1")],
                  "start r1")
    check(isinstance(ans, dict) and set(ans) == {"id", "message_id", "offset"} and ans.get("id") == "r1"
          and ID("msg")(ans.get("message_id")), "start r1 answer: %r" % ans)
    r1_mid = (ans or {}).get("message_id")
    r1 = s.got[-1]["value"]
    ans = s.write("POST", "/runs", None, "agent-2", 201,
                  lambda a: [ev("run", a["id"], "insert", running(a["id"], "agent-2", a["message_id"]), "agent-2")],
                  "start a run with no body")
    check(ID("run")((ans or {}).get("id")) and ID("msg")((ans or {}).get("message_id")),
          "server-made run and message ids: %r" % ans)
    r2id, r2 = (ans or {}).get("id"), s.got[-1]["value"]
    ans = s.write("POST", "/runs", {"id": "r3", "message_id": "answer-3", "answers": None}, "agent-1", 201,
                  [ev("run", "r3", "insert", running("r3", "agent-1", "answer-3"), "agent-1")], "start r3")
    r3 = s.got[-1]["value"]
    s.refused("POST", "/runs", {"id": "r1"}, "agent-9", 409, "start r1 again", error="exists")
    # A retried start (its answer lost) with the same body must say the run
    # exists, so that the agent knows its start landed.
    s.refused("POST", "/runs", {"id": "r3", "message_id": "answer-3", "answers": None}, "agent-1", 409,
              "retry of start r3 (same id and message_id)", error="^a run with this id exists$")
    s.refused("POST", "/runs", {"answers": "nope"}, "agent-1", 404, "a run answering no message", error="message")
    for body in [{"id": 5}, {"id": ""}, {"answers": 5}, {"message_id": []}, {"metadata": 5},
                 {"metadata": "x"}, {"id": "x" * 257}]:
        s.refused("POST", "/runs", body, "agent-1", 400, "bad run body %s" % json.dumps(body)[:60])
    s.refused("POST", "/runs", b"[]", "agent-1", 400, "run body not an object")
    s.refused("POST", "/runs", b"{", "agent-1", 400, "run body bad JSON", error="at byte 1")
    s.refused("POST", "/runs", {"id": "r9"}, None, 400, "run without identity")
    s.refused("POST", "/runs", {"id": "r9", "metadata": {"pad": "a" * MAX_EVENT}}, "agent-1", 413, "run body too large")

    # -- chunks for r1, as single chunks and batches --
    sent = []
    for i, batch in enumerate(RICH_CHUNKS):
        body = batch[0] if len(batch) == 1 else {"chunks": batch}
        value = {"run": "r1", "seq": i, "chunks": batch}
        ans = s.write("POST", "/runs/r1/chunks", body, "agent-1", 200,
                      [ev("chunk", "r1", "insert" if i == 0 else "update", value, "agent-1")], "r1 chunk batch %d" % i)
        check(isinstance(ans, dict) and ans.get("seq") == i and set(ans) == {"seq", "offset"},
              "r1 chunk batch %d answer: %r" % (i, ans))
        sent.extend(batch)
        if i == 4:  # mid-run: attach shows the output so far
            snap = s.check_snapshot("attach mid-run")
            check(snap.get("output", {}).get("r1") == sent, "attach mid-run: output of r1 %r, want the %d chunks sent"
                  % (snap.get("output", {}).get("r1"), len(sent)))
            check(snap.get("state", {}).get("chunk", {}).get("r1") == value,
                  "attach mid-run: chunk entity is the latest batch: %r" % snap.get("state", {}).get("chunk"))
    # errors on a running run
    s.refused("POST", "/runs/r1/chunks", {"type": "text-delta", "id": "t0", "delta": "x"}, "agent-2", 403,
              "chunk by a non-owner", error="owner")
    s.refused("POST", "/runs/r1/chunks", {"type": "text-delta"}, None, 400, "chunk without identity")
    s.refused("POST", "/runs/nope/chunks", {"type": "text-delta"}, "agent-1", 404, "chunk to an unknown run",
              error="run not found")
    for body in [{"id": "x"}, {"type": 5}, {"chunks": []}, {"chunks": "x"}, {"chunks": [{"id": 1}]},
                 {"chunks": [{"type": "a"}, 5]}, {"chunks": [{"type": None}]}]:
        s.refused("POST", "/runs/r1/chunks", body, "agent-1", 400, "bad chunk %s" % json.dumps(body), error="chunk")
    s.refused("POST", "/runs/r1/chunks", b"[{\"type\":\"a\"}]", "agent-1", 400, "chunk body an array")
    s.refused("POST", "/runs/r1/chunks", b"{\"type\":", "agent-1", 400, "chunk body bad JSON", error="at byte")
    s.refused("POST", "/runs/r1/chunks", {"chunks": [{"type": "text-delta", "delta": "a" * MAX_EVENT}]}, "agent-1",
              413, "chunk batch over the limit")
    # batches numbered by the agent (seq): a retry of the last one applies once, a gap is refused
    last = len(RICH_CHUNKS) - 1
    ans = s.write("POST", "/runs/r1/chunks", {"seq": last, "chunks": RICH_CHUNKS[last]}, "agent-1", 200, [],
                  "retry of the last chunk batch (seq %d)" % last)
    check(isinstance(ans, dict) and ans.get("seq") == last and ans.get("duplicate") is True,
          "a retried chunk batch answers duplicate: %r" % ans)
    s.refused("POST", "/runs/r1/chunks", {"seq": last + 2, "chunks": [{"type": "text-delta", "id": "t0", "delta": "x"}]},
              "agent-1", 409, "chunk batch after a gap", error="seq %d is out of order: the run expects %d" % (last + 2, last + 1))
    s.refused("POST", "/runs/r1/chunks", {"seq": last - 1, "chunks": [{"type": "text-delta", "id": "t0", "delta": "x"}]},
              "agent-1", 409, "chunk batch older than the last", error="out of order")
    s.refused("POST", "/runs/r1/chunks", {"seq": "1", "chunks": [{"type": "text-delta", "id": "t0", "delta": "x"}]},
              "agent-1", 400, "chunk batch seq not an integer", error="seq must be an integer")
    s.refused("POST", "/runs/r1/chunks", {"seq": -1, "chunks": [{"type": "text-delta", "id": "t0", "delta": "x"}]},
              "agent-1", 400, "chunk batch seq negative", error="seq must be an integer")
    s.refused("POST", "/runs/r1/chunks", {"seq": last, "chunks": [{"type": "text-delta", "id": "t0", "delta": "other"}]},
              "agent-1", 409, "a different batch with the last batch's seq", error="not a retry of its last batch")
    s.write("POST", "/runs/r1/heartbeat", None, "agent-1", 204, [], "heartbeat by the owner")
    s.refused("POST", "/runs/r1/heartbeat", None, "agent-2", 403, "heartbeat by a non-owner")
    s.refused("POST", "/runs/r1/heartbeat", None, None, 400, "heartbeat without identity")
    s.refused("POST", "/runs/nope/heartbeat", None, "agent-1", 404, "heartbeat of an unknown run")
    s.refused("POST", "/runs/r1/end", {"reason": "complete"}, "agent-2", 403, "end by a non-owner")
    for body in [{"reason": "done"}, {}, {"reason": 5}, {"reason": ""}, {"reason": None}, {"reason": "Complete"}]:
        s.refused("POST", "/runs/r1/end", body, "agent-1", 400, "end with reason %s" % json.dumps(body), error="reason")
    s.refused("POST", "/runs/r1/end", None, "agent-1", 400, "end without a body")
    s.refused("POST", "/runs/r1/end", b"[1]", "agent-1", 400, "end body an array")
    s.refused("POST", "/runs/nope/end", {"reason": "complete"}, "agent-1", 404, "end of an unknown run")
    s.refused("POST", "/runs/nope/cancel", None, "bob", 404, "cancel of an unknown run")
    s.refused("POST", "/runs/r1/cancel", None, None, 400, "cancel without identity")
    s.refused("POST", "/runs/r1/cancel", b"{x", "bob", 400, "cancel with bad JSON")

    # -- end r1: compacted --
    want_msg = assemble(sent, r1_mid)
    ans = s.write("POST", "/runs/r1/end", {"reason": "complete"}, "agent-1", 200,
                  [ev("message", r1_mid, "insert", want_msg, "agent-1"),
                   ev("chunk", "r1", "delete", None, "agent-1"),
                   ev("run", "r1", "update", ended(r1, "complete"), "agent-1")], "end r1 complete")
    check(isinstance(ans, dict) and ans.get("id") == "r1" and ans.get("status") == "complete"
          and set(ans) == {"id", "status", "offset"}, "end r1 answer: %r" % ans)
    snap = s.check_snapshot("attach after r1 ended")
    got = snap.get("state", {}).get("message", {}).get(r1_mid)
    check(got == want_msg, "r1 compacted:\n  got  %s\n  want %s" % (json.dumps(got), json.dumps(want_msg)))
    parts = (got or {}).get("parts", [])
    texts = [p.get("text") for p in parts if p.get("type") == "text"]
    check(texts == ["Día 1: Colosseo \u2014 \U0001F3DB\ufe0f, \"quotes\" \\ and\nnewline", "Day 2: Vatican."],
          "r1 text parts joined: %r" % texts)
    check([p.get("text") for p in parts if p.get("type") == "reasoning"] == ["Let me think."],
          "r1 reasoning joined: %r" % parts)
    tools = [(p.get("type"), p.get("state"), p.get("input"), p.get("output"), p.get("errorText"))
             for p in parts if "toolCallId" in p]
    check(tools == [("tool-weather", "output-available", {"city": "Rome"}, {"temp": 21, "sky": ["sun", None]}, None),
                    ("tool-book", "output-error", {"hotel": 7}, None, "sold out"),
                    ("dynamic-tool", "output-available", {"q": 1}, "ok", None)], "r1 tool parts: %r" % tools)
    check((got or {}).get("metadata") == {"model": "m-1", "tokens": 42}, "r1 metadata: %r" % (got or {}).get("metadata"))
    check("r1" not in snap.get("output", {}) and "r1" not in snap.get("state", {}).get("chunk", {}),
          "r1's chunks are gone from output and state after its end")
    for action, body in [("chunks", {"type": "text-delta", "id": "t1", "delta": "late"}), ("end", {"reason": "complete"}),
                         ("cancel", None), ("heartbeat", None)]:
        s.refused("POST", "/runs/r1/" + action, body, "agent-1", 409, "%s on r1 after it ended" % action,
                  error=r"^run already ended \(complete\)$")
    s.refused("POST", "/runs/r1/cancel", None, "bob", 409, "cancel by bob of r1 after it ended",
              error=r"\(complete\)")

    # -- r2 (agent-2): chunks, then cancelled by bob --
    r2_chunks = [{"type": "text-start", "id": "a"}, {"type": "text-delta", "id": "a", "delta": "Hel"}]
    s.write("POST", "/runs/%s/chunks" % r2id, {"chunks": r2_chunks}, "agent-2", 200,
            [ev("chunk", r2id, "insert", {"run": r2id, "seq": 0, "chunks": r2_chunks}, "agent-2")], "r2 chunks")
    ans = s.write("POST", "/runs/%s/cancel" % r2id, None, "bob", 200,
                  [ev("message", r2["message_id"], "insert", assemble(r2_chunks, r2["message_id"]), "bob"),
                   ev("chunk", r2id, "delete", None, "bob"),
                   ev("run", r2id, "update", ended(r2, "cancelled", cancelled_by="bob"), "bob")], "bob cancels r2")
    check(isinstance(ans, dict) and ans.get("status") == "cancelled" and ans.get("id") == r2id, "cancel answer: %r" % ans)
    s.refused("POST", "/runs/%s/chunks" % r2id, {"type": "text-delta", "id": "a", "delta": "lo"}, "agent-2", 409,
              "agent-2's chunk after bob's cancel", error=r"^run already ended \(cancelled\)$")
    # -- r3 (agent-1): no chunks, ends in error: no message, no chunk delete --
    s.write("POST", "/runs/r3/end", {"reason": "error", "error": "model overloaded"}, "agent-1", 200,
            [ev("run", "r3", "update", ended(r3, "error", error="model overloaded"), "agent-1")], "end r3 error")
    # -- r4: the owner ends it cancelled; r5: the owner cancels its own --
    s.write("POST", "/runs", {"id": "r4", "answers": "m1"}, "agent-1", 201,
            lambda a: [ev("run", "r4", "insert", running("r4", "agent-1", a["message_id"], "m1"), "agent-1")], "start r4")
    r4 = s.got[-1]["value"]
    s.write("POST", "/runs/r4/chunks", {"type": "message-metadata", "messageMetadata": {"k": 1}}, "agent-1", 200,
            [ev("chunk", "r4", "insert", {"run": "r4", "seq": 0,
                                          "chunks": [{"type": "message-metadata", "messageMetadata": {"k": 1}}]}, "agent-1")],
            "r4 metadata chunk")
    s.write("POST", "/runs/r4/end", {"reason": "cancelled"}, "agent-1", 200,
            [ev("message", r4["message_id"], "insert", {"id": r4["message_id"], "role": "assistant",
                                                        "metadata": {"k": 1}, "parts": []}, "agent-1"),
             ev("chunk", "r4", "delete", None, "agent-1"),
             ev("run", "r4", "update", ended(r4, "cancelled"), "agent-1")], "end r4 cancelled by its owner")
    s.write("POST", "/runs", {"id": "r5"}, "agent-1", 201,
            lambda a: [ev("run", "r5", "insert", running("r5", "agent-1", a["message_id"]), "agent-1")], "start r5")
    r5 = s.got[-1]["value"]
    s.write("POST", "/runs/r5/cancel", b"", "agent-1", 200,
            [ev("run", "r5", "update", ended(r5, "cancelled", cancelled_by="agent-1"), "agent-1")], "owner cancels r5")

    # -- the whole log from -1: exactly the events, in order, byte for byte --
    events, bodies, nxt = read_log(port, "main")
    d = match(events, s.exp)
    check(d is None and len(events) == len(s.exp), "log from -1 is not exactly the %d events logged: %s"
          % (len(s.exp), d))
    check(nxt == s.tail, "log tail %s, last answer's offset %s" % (nxt, s.tail))
    raw = b"".join(bodies)
    check(len(bodies) == 1 and raw == log_body(events),
          "log bytes are not the events framed as the server frames them ('[' + ',\\n'.join + ']')")
    check(all(set(e) == {"type", "key", "value", "headers"} for e in events), "events are not {type, key, value, headers}")
    check(all(b < 0x80 for b in raw), "log read is not ASCII (JSON_ENSURE_ASCII)")
    s.check_snapshot("attach at the end of the main flow")
    return s


# --- session lifecycle and routing ---

def lifecycle(port):
    h = Http(port)
    # Unknown session: 404 everywhere.
    for m, rest, body in [("GET", "", None), ("DELETE", "", None), ("GET", "/log?offset=-1", None),
                          ("GET", "/log?offset=-1&live=long-poll", None), ("POST", "/messages", {"role": "user", "parts": []}),
                          ("POST", "/runs", {}), ("POST", "/runs/r/chunks", {"type": "x"}), ("POST", "/runs/r/end", {}),
                          ("POST", "/runs/r/cancel", None), ("POST", "/runs/r/heartbeat", None), ("HEAD", "", None)]:
        st, ans, _ = h.json(m, SESSION + "nosuch" + rest, body, who("alice"))
        check(st == 404 and (m == "HEAD" or ans == {"error": "session not found"}),
              "%s nosuch%s: want 404 session not found, got %d %r" % (m, rest, st, ans))
    # Bad ids: 400.
    for sid in ["bad!id", "a" * 129, "sp%20ace", "%zz", "a@1", "", "%00"]:
        for m in ["PUT", "GET", "DELETE"]:
            st, ans, _ = h.json(m, SESSION + sid, None, who("alice"))
            check(st == 400 and "error" in (ans or {}), "%s %r: want 400, got %d %r" % (m, sid, st, ans))
    st, ans, _ = h.json("POST", SESSION + "bad!id/messages", {"role": "user", "parts": []}, who("alice"))
    check(st == 400, "POST to a bad session id: %d" % st)
    long_id = "L" * 128
    st, ans, _ = h.json("PUT", SESSION + long_id)
    check(st == 201 and ans == {"id": long_id}, "PUT a 128-character id: %d %r" % (st, ans))
    st, ans, _ = h.json("POST", SESSION + long_id + "/messages", {"id": "m", "role": "user", "parts": []}, who("a"))
    check(st == 201, "message to a 128-character session: %d %r" % (st, ans))
    st, ans, _ = h.json("GET", SESSION + "%4C" * 128)  # percent-encoded, the same id
    check(st == 200 and ans.get("id") == long_id and "m" in ans.get("state", {}).get("message", {}),
          "attach by a percent-encoded id: %d" % st)
    # TTL
    st, ans, _ = h.json("PUT", SESSION + "ttl", None, {"Stream-TTL": "3600"})
    check(st == 201, "PUT with Stream-TTL: %d %r" % (st, ans))
    for bad in ["abc", "-1", "1.5", "0100", ""]:
        st, ans, _ = h.json("PUT", SESSION + "ttl-bad", None, {"Stream-TTL": bad})
        check(st == 400 and "TTL" in (ans or {}).get("error", ""), "PUT with Stream-TTL %r: want 400, got %d %r"
              % (bad, st, ans))
    st, _, _ = h.json("GET", SESSION + "ttl-bad")
    check(st == 404, "a refused PUT created nothing: %d" % st)
    # Wrong methods: 405.
    h.json("PUT", SESSION + "meth")
    h.json("POST", SESSION + "meth/runs", {"id": "r"}, who("ag"))
    for m, rest in [("POST", ""), ("PATCH", ""), ("GET", "/messages"), ("PUT", "/messages"), ("DELETE", "/messages"),
                    ("GET", "/runs"), ("PUT", "/runs"), ("GET", "/runs/r/chunks"), ("DELETE", "/runs/r/end"),
                    ("PUT", "/runs/r/cancel"), ("GET", "/runs/r/heartbeat"), ("POST", "/log"), ("PUT", "/log"),
                    ("DELETE", "/log")]:
        st, ans, _ = h.json(m, SESSION + "meth" + rest, {}, who("ag"))
        check(st == 405 and "method not allowed" in (ans or {}).get("error", ""),
              "%s meth%s: want 405, got %d %r" % (m, rest, st, ans))
    for rest in ["/bogus", "/runs/r", "/runs/r/", "/runs/r/bogus", "/runs/", "/messages/x", "/runs/bad!id/chunks"]:
        st, ans, _ = h.json("POST", SESSION + "meth" + rest, {}, who("ag"))
        check(st == 404 and "not found" in (ans or {}).get("error", ""),
              "POST meth%s: want 404, got %d %r" % (rest, st, ans))
    # OPTIONS, HEAD.
    st, r, raw = h.request("OPTIONS", SESSION + "meth/messages")
    check(st == 204 and "POST" in (r.getheader("Access-Control-Allow-Methods") or "")
          and all(x in (r.getheader("Access-Control-Allow-Headers") or "") for x in ("Weft-Client", "Authorization")),
          "OPTIONS preflight: %d %s" % (st, r.getheaders()))
    st, r, raw = h.request("HEAD", SESSION + "meth")
    _, _, tail = read_log(port, "meth")
    check(st == 200 and raw == b"" and r.getheader("Stream-Next-Offset") == tail,
          "HEAD attach: %d, %d body bytes, offset %s (tail %s)" % (st, len(raw), r.getheader("Stream-Next-Offset"), tail))
    # Delete: 204; then everything is 404; a new PUT is a new, empty session.
    st, r, raw = h.request("DELETE", SESSION + "meth")
    check(st == 204 and raw == b"", "DELETE: %d %r" % (st, raw))
    for m, rest in [("GET", ""), ("GET", "/log?offset=-1"), ("DELETE", ""), ("POST", "/runs/r/chunks")]:
        st, ans, _ = h.json(m, SESSION + "meth" + rest, {"type": "x"} if m == "POST" else None, who("ag"))
        check(st == 404, "%s meth%s after DELETE: want 404, got %d" % (m, rest, st))
    st, ans, _ = h.json("PUT", SESSION + "meth")
    check(st == 201, "PUT after DELETE: want 201, got %d" % st)
    st, ans, _ = h.json("GET", SESSION + "meth")
    check(st == 200 and ans.get("state", {}).get("run") == {} and ans.get("output") == {},
          "a session created again after DELETE starts empty: %r" % ans)
    events, _, _ = read_log(port, "meth")
    check(events == [], "log of a session created again after DELETE: %r" % events[:3])
    st, ans, _ = h.json("POST", SESSION + "meth/runs/r/chunks", {"type": "x"}, who("ag"))
    check(st == 404, "the deleted session's run is gone: %d %r" % (st, ans))
    h.close()


# --- late joiner: attach, then read from the attach offset ---

def late_joiner(port):
    s = Sess(port, "late")
    s.create()
    s.write("POST", "/messages", {"id": "q", "role": "user", "parts": [{"type": "text", "text": "go"}]}, "alice", 201,
            lambda a: s_ev_any(1))
    ans = s.write("POST", "/runs", {"id": "run", "answers": "q"}, "agent", 201, lambda a: s_ev_any(1))
    mid = ans.get("message_id")
    chunks = [{"type": "text-start", "id": "t"}] + [{"type": "text-delta", "id": "t", "delta": "w%d " % i}
                                                   for i in range(20)] + [{"type": "text-end", "id": "t"}]
    for c in chunks[:8]:
        s.write("POST", "/runs/run/chunks", c, "agent", 200, lambda a: s_ev_any(1))
    snap = s.check_snapshot("late joiner's attach")
    check(snap.get("output", {}).get("run") == chunks[:8], "late joiner sees the output so far: %r"
          % snap.get("output", {}).get("run"))
    off = snap.get("offset")
    lp = LogReader(port, "late", off, sse=False, client="late")
    sse = LogReader(port, "late", off, sse=True, client="late2")
    check(wait_until(lambda: sse.ready.is_set(), 5), "late joiner's SSE connection is open")
    for c in chunks[8:]:
        s.write("POST", "/runs/run/chunks", c, "agent", 200, lambda a: s_ev_any(1))
    s.write("POST", "/runs/run/end", {"reason": "complete"}, "agent", 200, lambda a: s_ev_any(3))
    s.write("POST", "/messages", {"id": "bye", "role": "user", "parts": []}, "alice", 201, lambda a: s_ev_any(1))
    is_bye = lambda e: e.get("key") == "bye"  # noqa: E731
    check(lp.wait_for(is_bye) is not None, "long-poll late joiner got the last message")
    check(sse.wait_for(is_bye) is not None, "SSE late joiner got the last message")
    later, _, _ = read_log(port, "late", off)
    for name, rd in [("long-poll", lp), ("SSE", sse)]:
        got = rd.all_events()
        check(got == later, "%s late joiner: %d events from the attach offset, the log has %d after it (gap or "
              "duplicate): first difference at %s" % (name, len(got), len(later),
                                                      next((i for i, (a, b) in enumerate(zip(got, later)) if a != b),
                                                           min(len(got), len(later)))))
        check(not rd.errors, "%s late joiner errors: %s" % (name, rd.errors))
    final = s.check_snapshot("attach after the late joiner's run ended")
    built = materialise(later, snap.get("state"))
    check(normal_state(built) == normal_state(final.get("state", {})),
          "attach state + events after its offset != a later attach's state")
    streamed = list(snap.get("output", {}).get("run", []))
    for e in later:
        if e["type"] == "chunk" and e["headers"]["operation"] != "delete":
            streamed.extend(e["value"]["chunks"])
    check(streamed == chunks, "attach output + later chunk events = every chunk, once: %d of %d"
          % (len(streamed), len(chunks)))
    check(final.get("state", {}).get("message", {}).get(mid, {}).get("parts") ==
          [{"type": "text", "text": "".join("w%d " % i for i in range(20)), "state": "done"}],
          "late run compacted: %r" % final.get("state", {}).get("message", {}).get(mid))
    lp.close()
    sse.close()


def s_ev_any(n):
    """n events of any content (checked by the log comparisons elsewhere)."""
    return [OPTIONAL_EVENT] * n


def OPTIONAL_EVENT(e):  # noqa: N802 - a matcher
    return isinstance(e, dict) and "headers" in e


# --- attach while another client writes: each snapshot is its offset's state ---

def concurrent_attach(port):
    s = Sess(port, "conc")
    s.create()
    stop = threading.Event()
    errors = []

    def writer():
        h = Http(port)
        n = 0
        run = None
        while not stop.is_set():
            n += 1
            try:
                if run is None:
                    st, a, _ = h.json("POST", SESSION + "conc/runs", {"id": "cr%d" % n}, who("w"))
                    run, k = "cr%d" % n, 0
                elif k < 6:
                    st, a, _ = h.json("POST", SESSION + "conc/runs/%s/chunks" % run,
                                      {"chunks": [{"type": "text-delta", "id": "x", "delta": "%d-%d" % (n, k)}]}, who("w"))
                    k += 1
                else:
                    st, a, _ = h.json("POST", SESSION + "conc/runs/%s/end" % run, {"reason": "complete"}, who("w"))
                    run = None
                if st not in (200, 201):
                    errors.append("writer: %d %r" % (st, a))
                st, a, _ = h.json("POST", SESSION + "conc/messages",
                                  {"id": "cm%d" % n, "role": "user", "parts": [{"type": "text", "text": str(n)}]},
                                  who("v"))
                if st != 201:
                    errors.append("writer message: %d %r" % (st, a))
            except Exception as e:  # noqa: BLE001
                errors.append("writer: %r" % e)
                return
    t = threading.Thread(target=writer)
    t.start()
    snaps = []
    h = Http(port)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        st, a, r = h.json("GET", SESSION + "conc")
        if st == 200:
            snaps.append(a)
    stop.set()
    t.join()
    check(not errors, "concurrent writer errors: %s" % errors[:3])
    check(len(snaps) >= 10, "attaches during writes: %d" % len(snaps))
    events, _, _ = read_log(port, "conc")
    bad = []
    if len(snaps) > 40:  # a sample, evenly spread
        snaps = [snaps[i * len(snaps) // 40] for i in range(40)] + [snaps[-1]]
    for a in snaps:
        after, _, _ = read_log(port, "conc", a["offset"])
        prefix = events[:len(events) - len(after)]
        if events[len(events) - len(after):] != after:
            bad.append("%s: the log from the offset is not a suffix of the whole log" % a["offset"])
            continue
        if normal_state(materialise(prefix)) != normal_state(a["state"]):
            bad.append("%s: state differs from the log up to it" % a["offset"])
        elif a["output"] != output_of(prefix):
            bad.append("%s: output differs from the chunks up to it" % a["offset"])
    check(not bad, "%d of %d attaches during writes are not their offset's state: %s" % (len(bad), len(snaps), bad[:3]))
    s.check_snapshot("attach after concurrent writes")
    h.close()


# --- SSE delivers events live ---

def sse_live(port):
    s = Sess(port, "live")
    s.create()
    sse = LogReader(port, "live", "-1", sse=True, client="watcher")
    lp = LogReader(port, "live", "-1", sse=False, client="watcher2")
    check(wait_until(lambda: sse.ready.is_set(), 5), "SSE reader connected")
    writes = [("POST", "/messages", {"id": "hi", "role": "user", "parts": []}, "alice", 201, 1),
              ("POST", "/runs", {"id": "lr", "answers": "hi"}, "agent", 201, 1)] + \
             [("POST", "/runs/lr/chunks", {"type": "text-delta", "id": "t", "delta": "d%d" % i}, "agent", 200, 1)
              for i in range(5)] + \
             [("POST", "/runs/lr/cancel", None, "alice", 200, 3)]
    n = 0
    worst = 0.0
    for m, rest, body, client, want, k in writes:
        t = time.monotonic()
        s.write(m, rest, body, client, want, lambda a, k=k: s_ev_any(k))
        n += k
        ok = sse.wait_count(n, 5)
        check(ok, "SSE reader did not get event %d within 5 s of its write (%s %s)" % (n, m, rest))
        if ok:
            worst = max(worst, sse.events[n - 1][0] - t)
    check(lp.wait_count(n, 5), "long-poll reader got all %d events" % n)
    events, _, tail = read_log(port, "live")
    check(sse.all_events() == events, "SSE events differ from the log: %d vs %d" % (len(sse.events), len(events)))
    check(lp.all_events() == events, "long-poll events differ from the log")
    check(sse.wait_offset(tail, 5) and sse.controls and sse.controls[-1].get("streamNextOffset") == tail
          and sse.controls[-1].get("upToDate") is True,
          "SSE control after the last event: %r, tail %s" % (sse.controls[-1:], tail))
    check(not sse.errors and not lp.errors, "reader errors: %s %s" % (sse.errors, lp.errors))
    print("session_test: SSE live delivery, worst write-to-event latency %.1f ms" % (worst * 1000))
    sse.close()
    lp.close()


# --- the run lease, and --max-sessions, on a second server ---

def lease_and_limits(binary):
    w = Weft(binary, args=["--run-lease", "1s", "--max-sessions", "4"]).start()
    try:
        p = w.port
        s = Sess(p, "lease")
        s.create()
        s.write("POST", "/runs", {"id": "hb"}, "agent", 201, lambda a: s_ev_any(1))
        s.write("POST", "/runs", {"id": "ch"}, "agent", 201, lambda a: s_ev_any(1))
        s.write("POST", "/runs", {"id": "quiet"}, "agent", 201, lambda a: s_ev_any(1))
        s.write("POST", "/runs/quiet/chunks", {"chunks": [{"type": "text-start", "id": "t"},
                                                          {"type": "text-delta", "id": "t", "delta": "half"}]},
                "agent", 200, lambda a: s_ev_any(1))
        # For 2.5 s (2.5 leases): hb heartbeats, ch streams, quiet does nothing.
        until = time.monotonic() + 2.5
        i = 0
        h = Http(p)
        while time.monotonic() < until:
            st1, _, _ = h.json("POST", SESSION + "lease/runs/hb/heartbeat", None, who("agent"))
            t_last = time.monotonic()  # before the last keep-alive reached the server
            st2, _, _ = h.json("POST", SESSION + "lease/runs/ch/chunks",
                               {"type": "text-delta", "id": "t", "delta": str(i)}, who("agent"))
            check(st1 == 204 and st2 == 200, "heartbeat %d / chunk %d while alive: %d %d" % (i, i, st1, st2))
            i += 1
            time.sleep(0.3)  # the pace of an agent, not a synchronisation
        snap = s.attach()
        runs = snap.get("state", {}).get("run", {})
        check(runs.get("hb", {}).get("status") == "running", "a run kept alive by heartbeats: %r" % runs.get("hb"))
        check(runs.get("ch", {}).get("status") == "running", "a run kept alive by chunks: %r" % runs.get("ch"))
        q = runs.get("quiet", {})
        check(q.get("status") == "error" and q.get("error") == "agent lost: no chunk or heartbeat for 1000 ms",
              "a quiet run ends in error after its lease: %r" % q)
        msg = snap.get("state", {}).get("message", {}).get(q.get("message_id"))
        check(msg is not None and msg.get("parts") == [{"type": "text", "text": "half", "state": "done"}],
              "the lost run's output is compacted: %r" % msg)
        st, ans, _ = h.json("POST", SESSION + "lease/runs/quiet/chunks", {"type": "text-delta"}, who("agent"))
        check(st == 409 and ans == {"error": "run already ended (error)"}, "chunk after the lease ended the run: %d %r"
              % (st, ans))
        events, _, _ = read_log(p, "lease")
        end_ev = [e for e in events if e["type"] == "run" and e["key"] == "quiet" and e["headers"]["operation"] == "update"]
        check(len(end_ev) == 1 and "client" not in end_ev[0]["headers"], "the server's lease end has no client: %r" % end_ev)
        # Then the others go quiet too: both end a lease (+ a timer tick)
        # after the last chunk, not before.
        def both_ended():
            st, a, _ = h.json("GET", SESSION + "lease")
            return st == 200 and all(a["state"]["run"][r]["status"] == "error" for r in ("hb", "ch"))
        done = wait_until(both_ended, 5, 0.05)
        took = time.monotonic() - t_last
        check(done, "hb and ch end in error once quiet")
        check(0.95 <= took <= 3.0, "lease ended the quiet runs %.2f s after the last chunk (lease 1 s)" % took)
        s.check_snapshot("lease server: attach after the leases ended")
        # --max-sessions 4: "lease" is one.
        for i in range(3):
            st, _, _ = h.json("PUT", SESSION + "cap%d" % i)
            check(st == 201, "PUT cap%d under --max-sessions: %d" % (i, st))
        st, ans, _ = h.json("PUT", SESSION + "cap-over")
        check(st == 507 and "max-sessions" in (ans or {}).get("error", ""), "PUT over --max-sessions: %d %r" % (st, ans))
        st, ans, _ = h.json("PUT", SESSION + "cap0")
        check(st == 200, "PUT of an existing session at --max-sessions: %d %r" % (st, ans))
        st, _, _ = h.json("DELETE", SESSION + "cap0")
        st, ans, _ = h.json("PUT", SESSION + "cap-over")
        check(st == 201, "PUT after a DELETE made room: %d %r" % (st, ans))
        h.close()
    finally:
        rc = w.stop()
        check(rc == 0, "lease server exited %s on SIGTERM" % rc)
        if check.failed:
            print(w.log_tail(1500))


# --- restart: every session rebuilt from its log ---

def restart(w, sids):
    before = {}
    h = Http(w.port)
    for sid in sids:
        st, a, _ = h.json("GET", SESSION + sid)
        before[sid] = (a, b"".join(read_log(w.port, sid)[1]))
    h.close()
    rc = w.stop()
    check(rc == 0, "weft exited %s on SIGTERM" % rc)
    w.start()
    h = Http(w.port)
    for sid in sids:
        st, a, _ = h.json("GET", SESSION + sid)
        check(st == 200 and a == before[sid][0], "%s after a restart: attach differs" % sid)
        check(b"".join(read_log(w.port, sid)[1]) == before[sid][1], "%s after a restart: log bytes differ" % sid)
    h.close()


# --- server bugs found while writing this test (each check fails until fixed) ---

def bugs(port, w):
    h = Http(port)
    sid = SESSION + "bugs"
    h.json("PUT", sid)

    # 1. A run id that is not a valid path segment is accepted, and then no
    #    route can reach the run (chunks, end, heartbeat, cancel: 404).
    st, ans, _ = h.json("POST", sid + "/runs", {"id": "my run"}, who("agent"))
    st2, ans2, _ = h.json("POST", sid + "/runs/my%20run/chunks", {"type": "text-start", "id": "t"}, who("agent"))
    check(st == 400 or st2 == 200,
          "BUG run id outside the path alphabet: POST /runs {\"id\":\"my run\"} answered %d %r, then POST "
          "/runs/my%%20run/chunks answered %d %r: want 400 at start (ids are 1-128 of A-Z a-z 0-9 - _ . ~) or a "
          "reachable run" % (st, ans, st2, ans2))

    # 2. A run whose message_id names an existing message: at its end the
    #    compacted output is *inserted* over that message (the user's words
    #    are lost; the State Protocol sees an insert of a key that exists).
    h.json("POST", sid + "/messages", {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "mine"}]}, who("alice"))
    st, ans, _ = h.json("POST", sid + "/runs", {"id": "clash", "message_id": "u1"}, who("agent"))
    if st == 201:
        h.json("POST", sid + "/runs/clash/chunks", {"type": "text-delta", "id": "t", "delta": "theirs"}, who("agent"))
        h.json("POST", sid + "/runs/clash/end", {"reason": "complete"}, who("agent"))
    st2, snap, _ = h.json("GET", sid)
    u1 = snap.get("state", {}).get("message", {}).get("u1")
    check(st == 409 or (u1 or {}).get("role") == "user",
          "BUG run message_id naming an existing message: POST /runs {\"message_id\":\"u1\"} answered %d; after its "
          "end message u1 is %s: want 409 at start, or u1 left alone" % (st, json.dumps(u1)))
    # ... and two runs with the same message_id: the second end overwrites the first's output.
    st_a, _, _ = h.json("POST", sid + "/runs", {"id": "twin1", "message_id": "same"}, who("agent"))
    st_b, _, _ = h.json("POST", sid + "/runs", {"id": "twin2", "message_id": "same"}, who("agent"))
    check(st_a == 201 and st_b == 409,
          "BUG two running runs with one message_id: second POST /runs {\"message_id\":\"same\"} answered %d, want 409 "
          "(the second end would insert over the first's compacted message)" % st_b)

    # 3. Text (and reasoning) ids reused across parts (AI SDK providers number
    #    text blocks per step: "0" in step 1 and again in step 2;
    #    transformTextToUiMessageStream uses "text-1" for every part): the AI SDK
    #    opens a new part at each text-start and sends the deltas to it; the
    #    server sends them to the first part with the id.
    chunks = [{"type": "start-step"}, {"type": "text-start", "id": "0"}, {"type": "text-delta", "id": "0", "delta": "Step one."},
              {"type": "text-end", "id": "0"}, {"type": "finish-step"}, {"type": "start-step"},
              {"type": "reasoning-start", "id": "0"}, {"type": "reasoning-delta", "id": "0", "delta": "hmm"},
              {"type": "reasoning-end", "id": "0"},
              {"type": "text-start", "id": "0"}, {"type": "text-delta", "id": "0", "delta": "Step two."},
              {"type": "text-end", "id": "0"}, {"type": "finish-step"}]
    st, ans, _ = h.json("POST", sid + "/runs", {"id": "steps"}, who("agent"))
    h.json("POST", sid + "/runs/steps/chunks", {"chunks": chunks}, who("agent"))
    h.json("POST", sid + "/runs/steps/end", {"reason": "complete"}, who("agent"))
    st, snap, _ = h.json("GET", sid)
    got = snap.get("state", {}).get("message", {}).get((ans or {}).get("message_id"), {}).get("parts")
    want = assemble(chunks, "x")["parts"]
    check(got == want, "BUG text id reused by a later text-start: chunks %s compacted to parts %s, want (as the AI SDK "
          "client builds them) %s" % (json.dumps(chunks), json.dumps(got), json.dumps(want)))

    # 4. An end's error longer than 256 bytes (a stack trace) is dropped
    #    silently: 200, and the run has no error. A non-string error too.
    for err in ["E" * 300, 42]:
        rid = "err%d" % len(str(err))
        h.json("POST", sid + "/runs", {"id": rid}, who("agent"))
        st, ans, _ = h.json("POST", sid + "/runs/%s/end" % rid, {"reason": "error", "error": err}, who("agent"))
        st2, snap, _ = h.json("GET", sid)
        run = snap.get("state", {}).get("run", {}).get(rid, {})
        shown = json.dumps(err) if len(json.dumps(err)) < 20 else '"EEE...(300 bytes)"'
        check(st == 400 or run.get("error") == err,
              "BUG POST /runs/%s/end {\"reason\":\"error\",\"error\":%s}: answered %d, run error %r: want 400 "
              "or the error stored" % (rid, shown, st, run.get("error")))

    # 5. headers.client is "who caused it (absent for the server's own
    #    events)" (docs/sessions.md): chunk events and the owner's end name nobody.
    h.json("POST", sid + "/runs", {"id": "who"}, who("agent-x"))
    h.json("POST", sid + "/runs/who/chunks", {"type": "text-delta", "id": "t", "delta": "a"}, who("agent-x"))
    h.json("POST", sid + "/runs/who/end", {"reason": "complete"}, who("agent-x"))
    events, _, _ = read_log(port, "bugs")
    chunk_ev = [e for e in events if e["type"] == "chunk" and e["key"] == "who" and e["headers"]["operation"] != "delete"]
    end_ev = [e for e in events if e["type"] == "run" and e["key"] == "who" and e["headers"]["operation"] == "update"]
    check(all(e["headers"].get("client") == "agent-x" for e in chunk_ev + end_ev),
          "BUG headers.client missing on events the agent caused: chunk %s, end %s: want \"agent-x\""
          % ([e["headers"] for e in chunk_ev], [e["headers"] for e in end_ev]))

    # 6. "Any other path under a session 404" (docs/sessions.md): a GET of an
    #    unknown path answers 405.
    st, ans, _ = h.json("GET", sid + "/bogus")
    check(st == 404, "BUG GET /v1/session/bugs/bogus: want 404 (no such route), got %d %r" % (st, ans))

    # 7. Last, as it kills the server: a message with "id": null is taken as
    #    having an id (it is not absent), the id is NULL, and answering it
    #    crashes (strlen(NULL) in answer(), src/session/handler.c).
    st, ans = None, None
    try:
        st, ans, _ = h.json("POST", sid + "/messages", {"id": None, "role": "user", "parts": []}, who("alice"))
    except Exception as e:  # noqa: BLE001
        ans = repr(e)
    alive = not wait_until(lambda: w.proc.poll() is not None, 1.0)
    check(alive and st in (201, 400),
          "BUG POST /messages {\"id\":null,\"role\":\"user\",\"parts\":[]}: want 201 (a server-made id) or 400, got %s "
          "%r; server %s" % (st, ans, "alive" if alive else "crashed (exit %s)" % w.proc.poll()))
    h.close()
    return alive


def bug_recreate_after_ttl(port):
    """9. A session whose Stream-TTL ran out, created again by PUT (201),
    keeps the expired session's state in memory (until the timer's sweep,
    every 5 s): attach shows the old messages and runs over an empty log, the
    old run takes chunks, and a retry of an old message is answered 200 but
    logged nowhere (gone at the next start)."""
    h = Http(port)
    sids = ["ttl-%d" % i for i in range(3)]
    for sid in sids:
        h.json("PUT", SESSION + sid, None, {"Stream-TTL": "1"})
        h.json("POST", SESSION + sid + "/messages", {"id": "old", "role": "user", "parts": []}, who("alice"))
        h.json("POST", SESSION + sid + "/runs", {"id": "oldrun"}, who("agent"))
    time.sleep(1.6)  # the TTL (1 s, untouched) runs out: there is nothing to poll without touching it
    for sid in sids:
        st, ans, _ = h.json("PUT", SESSION + sid)
        check(st == 201, "PUT of %s after its TTL ran out: want 201 (a new session), got %d %r" % (sid, st, ans))
        st, snap, _ = h.json("GET", SESSION + sid)
        events, _, _ = read_log(port, sid)
        state = snap.get("state", {}) if isinstance(snap, dict) else {}
        st2, ans2, _ = h.json("POST", SESSION + sid + "/messages", {"id": "old", "role": "user", "parts": []}, who("alice"))
        check(normal_state(state) == normal_state(materialise(events)) and st2 == 201,
              "BUG %s re-created after its TTL ran out: the log has %d events, attach shows messages %s and runs %s; "
              "POST of message \"old\" answered %d (want 201: nothing is logged under a 200)"
              % (sid, len(events), list(state.get("message", {})), list(state.get("run", {})), st2))
    h.close()


def bug_put_after_compaction(binary):
    """8. PUT of a session whose log was compacted (its first generation,
    /v1/session/<id>, dropped) creates that stream again: 201 for a session
    that exists, and a stray empty log that outlives a DELETE and brings the
    session back, empty, at the next start."""
    w = Weft(binary, args=["--session-compact-bytes", "16KiB"]).start()
    try:
        h = Http(w.port)
        sid = SESSION + "gen"
        h.json("PUT", sid)
        h.json("POST", sid + "/runs", {"id": "r"}, who("a"))
        for _ in range(200):
            h.json("POST", sid + "/runs/r/chunks", {"type": "text-delta", "id": "t", "delta": "x" * 100}, who("a"))
        h.json("POST", sid + "/runs/r/end", {"reason": "complete"}, who("a"))
        events, _, _ = read_log(w.port, "gen")
        check(events and events[0].get("headers", {}).get("control") == "snapshot-start",
              "the log was compacted into a new generation")
        # The old generation is dropped ~2 s later: reads from offset 0 are then 410.
        gone = wait_until(lambda: h.request("GET", sid + "/log?offset=0000000000000000_0000000000000000")[0] == 410, 10, 0.1)
        check(gone, "the replaced generation was dropped (a read from offset 0 answers 410)")
        st, ans, _ = h.json("PUT", sid)
        check(st == 200, "BUG PUT /v1/session/gen of an existing session whose log was compacted: want 200, got %d %r"
              % (st, ans))
        st, _, _ = h.json("DELETE", sid)
        check(st == 204, "DELETE of the compacted session: %d" % st)
        h.close()
        rc = w.stop()
        check(rc == 0, "compaction server exited %s on SIGTERM" % rc)
        w.start()
        h = Http(w.port)
        st, ans, _ = h.json("GET", sid)
        check(st == 404, "BUG a session deleted after PUT-after-compaction comes back at restart: GET want 404, got "
              "%d %s" % (st, json.dumps(ans)[:200]))
        h.close()
    finally:
        if w.proc.poll() is None:
            w.stop()


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "build/weft"
    t0 = time.monotonic()
    w = Weft(binary, args=["--session-max-event", "64KiB"]).start()
    try:
        main_flow(w.port)
        lifecycle(w.port)
        late_joiner(w.port)
        concurrent_attach(w.port)
        sse_live(w.port)
        restart(w, ["main", "late", "conc", "live"])
        lease_and_limits(binary)
        bug_put_after_compaction(binary)
        bug_recreate_after_ttl(w.port)
        alive = bugs(w.port, w)
    except Exception:
        import traceback
        traceback.print_exc()
        check(False, "exception: see above")
        alive = w.proc.poll() is None
    if alive:
        rc = w.stop()
        check(rc == 0, "weft exited %s on SIGTERM" % rc)
    else:
        w.proc.wait()
    print("session_test: %.1f s" % (time.monotonic() - t0))
    check.finish(w)


if __name__ == "__main__":
    main()
