"""Helpers shared by the session protocol tests (session_test.py,
session_cancel_test.py, session_crash_test.py): HTTP requests, log reads
(catch-up, long-poll, SSE), the State Protocol materialisation a client
does, and the server's byte framing of log entries.

Plain python3 stdlib only."""
import http.client
import json
import re
import socket
import threading
import time

SESSION = "/v1/session/"


def dumps(v):
    """JSON, key order kept, minified (for order-sensitive comparisons)."""
    return json.dumps(v, sort_keys=False, separators=(",", ":"))


def frame(ev):
    """One log entry as the server writes it: minified, ASCII only, \\u
    escapes with upper-case hex (jansson's JSON_COMPACT|JSON_ENSURE_ASCII)."""
    s = json.dumps(ev, separators=(",", ":"), ensure_ascii=True)
    return re.sub(r"\\u([0-9a-f]{4})", lambda m: "\\u" + m.group(1).upper(), s).encode()


def log_body(events):
    """The body of a catch-up read holding exactly these events."""
    return b"[" + b",\n".join(frame(e) for e in events) + b"]"


TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


class Http:
    """One keep-alive HTTP connection; reconnects after an error."""

    def __init__(self, port, timeout=30):
        self.port = port
        self.timeout = timeout
        self.c = None

    def request(self, method, path, body=None, headers=None):
        """(status, response, raw body). body: bytes, or anything JSON."""
        if self.c is None:
            self.c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
        try:
            self.c.request(method, path, body=data, headers=headers or {})
            r = self.c.getresponse()
            raw = r.read()
        except Exception:
            self.close()
            raise
        if (r.getheader("Connection") or "").lower() == "close":
            self.close()
        return r.status, r, raw

    def json(self, method, path, body=None, headers=None):
        """(status, parsed body or None, response)."""
        status, r, raw = self.request(method, path, body, headers)
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return status, parsed, r

    def close(self):
        if self.c is not None:
            try:
                self.c.close()
            except OSError:
                pass
            self.c = None


def who(client):
    return {"Weft-Client": client} if client else {}


def read_log(port, sid, offset="-1"):
    """Catch-up reads of a session's log from offset until up to date:
    (events, raw bodies, next offset)."""
    h = Http(port)
    events, bodies = [], []
    while True:
        status, r, raw = h.request("GET", "%s%s/log?offset=%s" % (SESSION, sid, offset))
        if status != 200:
            h.close()
            raise RuntimeError("log read of %s from %s: %d %r" % (sid, offset, status, raw[:200]))
        bodies.append(raw)
        events.extend(json.loads(raw))
        offset = r.getheader("Stream-Next-Offset")
        if r.getheader("Stream-Up-To-Date") == "true":
            h.close()
            return events, bodies, offset


def is_control(ev):
    return "type" not in ev and isinstance(ev.get("headers"), dict) and "control" in ev["headers"]


def materialise(events, state=None, anomalies=None):
    """The State Protocol, as a client applies it: insert and update set
    state[type][key] = value, delete removes it; at a snapshot-start control
    message the client starts afresh. Anomalies (insert of a key that exists,
    update or delete of one that does not) are appended to `anomalies`."""
    state = {} if state is None else json.loads(json.dumps(state))
    anomalies = [] if anomalies is None else anomalies
    in_snapshot = False
    for ev in events:
        if is_control(ev):
            c = ev["headers"]["control"]
            if c == "snapshot-start":
                state = {t: {} for t in state}
                in_snapshot = True
            elif c == "snapshot-end":
                in_snapshot = False
            continue
        t, k, op = ev["type"], ev["key"], ev["headers"]["operation"]
        table = state.setdefault(t, {})
        if op in ("insert", "update"):
            if op == "insert" and k in table and not in_snapshot:
                anomalies.append("insert of %s %r, which exists" % (t, k))
            if op == "update" and k not in table:
                anomalies.append("update of %s %r, which does not exist" % (t, k))
            table[k] = ev["value"]
        elif op == "delete":
            if k not in table:
                anomalies.append("delete of %s %r, which does not exist" % (t, k))
            table.pop(k, None)
        else:
            anomalies.append("operation %r" % op)
    return state


def output_of(events):
    """For each run still running after events, every chunk streamed to it
    (a snapshot-start control message carries the chunks of the running runs
    before their latest batch, which the snapshot's chunk entity holds)."""
    out, runs = {}, {}
    for e in events:
        if is_control(e):
            if e["headers"]["control"] == "snapshot-start":
                out = {r: list(c) for r, c in (e["headers"].get("output") or {}).items()}
                runs = {}
            continue
        if e.get("type") == "chunk" and e["headers"]["operation"] != "delete":
            out.setdefault(e["key"], []).extend(e["value"]["chunks"])
        elif e.get("type") == "run":
            runs[e["key"]] = e["value"]["status"]
    return {r: c for r, c in out.items() if runs.get(r) == "running"}


def normal_state(state):
    """A state with empty tables dropped (so that {"chunk": {}} equals {})."""
    return {t: v for t, v in state.items() if v}


class LogReader:
    """A live reader of a session's log in a thread, SSE or long-poll, from
    an offset: records every event with the monotonic time it arrived, and
    the latest offset. Reconnects when the server closes an SSE connection
    or answers a long-poll 204."""

    def __init__(self, port, sid, offset="-1", sse=True, client=None, timeout=60):
        self.port, self.sid, self.offset, self.sse = port, sid, offset, sse
        self.client = client
        self.timeout = timeout
        self.cv = threading.Condition()
        self.events = []  # (time, event)
        self.errors = []
        self.controls = []  # SSE control events (parsed)
        self.ready = threading.Event()  # the first answer came (connected)
        self.stop_flag = False
        self.conn = None
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def query(self, live):
        q = "offset=%s&live=%s" % (self.offset, live)
        if self.client:
            q += "&client=" + self.client
        return "%s%s/log?%s" % (SESSION, self.sid, q)

    def add(self, evs):
        now = time.monotonic()
        with self.cv:
            self.events.extend((now, e) for e in evs)
            self.cv.notify_all()

    def run(self):
        try:
            while not self.stop_flag:
                if self.sse:
                    self.run_sse()
                else:
                    self.run_long_poll()
        except Exception as e:  # noqa: BLE001 - a closed socket at stop is the end
            if not self.stop_flag:
                self.errors.append("reader: %r" % e)
        with self.cv:
            self.stop_flag = True
            self.cv.notify_all()

    def run_long_poll(self):
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        while not self.stop_flag:
            self.conn.request("GET", self.query("long-poll"))
            r = self.conn.getresponse()
            raw = r.read()
            self.ready.set()
            if r.status == 200:
                self.add(json.loads(raw))
            elif r.status != 204:
                self.errors.append("long-poll: %d %r" % (r.status, raw[:200]))
                self.stop_flag = True
                return
            self.offset = r.getheader("Stream-Next-Offset") or self.offset

    def run_sse(self):
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        self.conn.request("GET", self.query("sse"))
        r = self.conn.getresponse()
        if r.status != 200:
            self.errors.append("sse: %d %r" % (r.status, r.read()[:200]))
            self.stop_flag = True
            return
        event, data = None, []
        while not self.stop_flag:
            line = r.readline()
            if not line:
                break  # closed by the server (--sse-max-duration): reconnect
            line = line.decode().rstrip("\r\n")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:])
            elif line == "":
                if event == "data" and data:
                    self.add(json.loads("\n".join(data)))
                elif event == "control" and data:
                    ctl = json.loads("\n".join(data))
                    with self.cv:
                        self.controls.append(ctl)
                        self.offset = ctl.get("streamNextOffset", self.offset)
                        self.cv.notify_all()
                    self.ready.set()
                event, data = None, []
        self.conn.close()

    def all_events(self):
        with self.cv:
            return [e for _, e in self.events]

    def wait_for(self, pred, timeout=10):
        """The first (time, event) with pred(event), waiting up to timeout."""
        until = time.monotonic() + timeout
        with self.cv:
            while True:
                for t, e in self.events:
                    if pred(e):
                        return t, e
                left = until - time.monotonic()
                if left <= 0 or self.stop_flag:
                    return None
                self.cv.wait(left)

    def wait_count(self, n, timeout=10):
        until = time.monotonic() + timeout
        with self.cv:
            while len(self.events) < n:
                left = until - time.monotonic()
                if left <= 0 or self.stop_flag:
                    return False
                self.cv.wait(left)
            return True

    def wait_offset(self, offset, timeout=10):
        """Until the reader's offset reached `offset` (SSE control, or the
        long-poll's next offset)."""
        until = time.monotonic() + timeout
        with self.cv:
            while self.offset < offset:
                left = until - time.monotonic()
                if left <= 0 or self.stop_flag:
                    return False
                self.cv.wait(min(left, 0.05))
            return True

    def close(self):
        self.stop_flag = True
        c = self.conn
        if c is not None and c.sock is not None:
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.thread.join(10)


def wait_until(pred, timeout, step=0.02):
    """Poll pred until true or the deadline; returns its last value."""
    until = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= until:
            return v
        time.sleep(step)


# --- what the AI SDK's client makes of UI message chunks (the reference for
# the compacted message; see vercel/ai packages/ai/src/ui/process-ui-message-stream.ts)

def assemble(chunks, message_id):
    """The assistant UIMessage the chunks build, or None if none. Compared
    after json parsing, with the server's conventions: parts left streaming
    are "done", tool parts carry only the fields the chunks gave."""
    msg = {"id": message_id, "role": "assistant"}
    parts = []
    active_text, active_reasoning = {}, {}
    for c in chunks:
        t = c.get("type")
        if t in ("text-start", "reasoning-start"):
            p = {"type": t.split("-")[0], "text": "", "state": "streaming"}
            if "providerMetadata" in c:
                p["providerMetadata"] = c["providerMetadata"]
            (active_text if t == "text-start" else active_reasoning)[c.get("id")] = p
            parts.append(p)
        elif t in ("text-delta", "reasoning-delta", "text-end", "reasoning-end"):
            active = active_text if t.startswith("text") else active_reasoning
            p = active.get(c.get("id"))
            if p is None:  # no start: the server opens one (the SDK throws)
                p = {"type": t.split("-")[0], "text": "", "state": "streaming"}
                active[c.get("id")] = p
                parts.append(p)
            if t.endswith("-delta"):
                p["text"] += c.get("delta", "")
            else:
                p["state"] = "done"
                del active[c.get("id")]
        elif t == "start-step":
            parts.append({"type": "step-start"})
        elif t == "finish-step":
            active_text.clear()
            active_reasoning.clear()
        elif t and t.startswith("tool-"):
            call = c.get("toolCallId")
            p = next((q for q in parts if q.get("toolCallId") == call), None)
            if p is None:
                name = c.get("toolName", "unknown")
                if c.get("dynamic"):
                    p = {"type": "dynamic-tool", "toolCallId": call, "state": "input-streaming", "toolName": name}
                else:
                    p = {"type": "tool-" + name, "toolCallId": call, "state": "input-streaming"}
                parts.append(p)
            if t == "tool-input-available":
                p["input"] = c.get("input")
                p["state"] = "input-available"
            elif t == "tool-input-error":
                p["input"] = c.get("input")
                p["errorText"] = c.get("errorText", "")
                p["state"] = "output-error"
            elif t == "tool-output-available":
                p["output"] = c.get("output")
                p["state"] = "output-available"
            elif t == "tool-output-error":
                p["errorText"] = c.get("errorText", "")
                p["state"] = "output-error"
        elif t in ("source-url", "source-document", "file"):
            parts.append(dict(c))
        elif t and t.startswith("data-"):
            if c.get("transient"):
                continue
            same = next((q for q in parts if q.get("type") == t and "id" in c and q.get("id") == c["id"]), None)
            if same is not None:
                same["data"] = c.get("data")
            else:
                parts.append({k: v for k, v in c.items() if k != "transient"})
        elif t in ("start", "finish", "message-metadata"):
            md = c.get("messageMetadata")
            if isinstance(md, dict):
                msg.setdefault("metadata", {}).update(md)
    for p in parts:
        if p.get("state") == "streaming":
            p["state"] = "done"
    if not parts and "metadata" not in msg:
        return None
    msg["parts"] = parts
    return msg
