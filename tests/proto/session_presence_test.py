#!/usr/bin/env python3
"""Presence: a member is a person, kept while any live read of the log names
them, and gone a grace period after the last one ends.

Over real sockets, with --presence-grace 2s, each case on its own session,
watched by an SSE reader of the log that names no client (so it is no
member's connection) and timestamps every event as it arrives:

- two SSE connections with ?client=bob are one member; closing one keeps
  him; closing both removes him after the grace: not before it, and within
  grace + 2 s;
- a reconnect within the grace logs nothing (no leave, no enter);
- an explicit leave is immediate (in the log at the offset it answers), and
  the connections still open then add nothing later; a leave of someone who
  is not a member logs nothing;
- enter and update with the data the member has log nothing; other data
  logs one update; a member who entered without any connection leaves after
  the grace;
- one who leaves and enters again (without a connection) gets a whole
  grace again;
- a long-poll loop keeps its member, catch-up reads do not;
- after kill -9 and a start on the same data directory, the members are
  still there; who reconnects within the grace stays, who does not leaves
  after it.

Usage: session_presence_test.py path/to/weft
"""
import http.client
import json
import socket
import sys
import threading
import time

from weftproc import Checks, Weft

GRACE = 2.0
LATE = 2.0  # what "within grace + 2 s" allows


def request(w, method, path, body=None, client=None):
    c = http.client.HTTPConnection("127.0.0.1", w.port, timeout=10)
    headers = {"Weft-Client": client} if client else {}
    c.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    r = c.getresponse()
    data = r.read()
    c.close()
    try:
        parsed = json.loads(data) if data else None
    except ValueError:
        parsed = None
    return r.status, parsed


def presence(w, sid, client, action, data=None, with_data=True):
    body = {"action": action}
    if with_data and action != "leave":
        body["data"] = data
    return request(w, "POST", "/v1/session/%s/presence" % sid, body, client)


def attach(w, sid):
    status, body = request(w, "GET", "/v1/session/" + sid)
    return body


def log_events(w, sid):
    """The whole log, by catch-up reads."""
    c = http.client.HTTPConnection("127.0.0.1", w.port, timeout=10)
    offset, events = "-1", []
    while True:
        c.request("GET", "/v1/session/%s/log?offset=%s" % (sid, offset))
        r = c.getresponse()
        events.extend(json.loads(r.read()))
        offset = r.getheader("Stream-Next-Offset")
        if r.getheader("Stream-Up-To-Date") == "true":
            c.close()
            return events


def presence_ops(events, client):
    return [e["headers"]["operation"] for e in events if e["type"] == "presence" and e["key"] == client]


class Sse:
    """A live SSE read of a session's log (as client, if given): records
    every event with the time it arrived."""

    def __init__(self, w, sid, client=None, offset="-1"):
        self.cv = threading.Condition()
        self.events = []      # (monotonic time, event)
        self.ready = threading.Event()  # the first control event came: the server counts us
        self.ended = threading.Event()
        self.conn = http.client.HTTPConnection("127.0.0.1", w.port, timeout=120)
        q = "offset=%s&live=sse" % offset + ("&client=" + client if client else "")
        self.conn.request("GET", "/v1/session/%s/log?%s" % (sid, q))
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        event, data = None, []
        try:
            while True:
                line = self.resp.readline()
                if not line:
                    break
                line = line.decode().rstrip("\r\n")
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:])
                elif line == "":
                    now = time.monotonic()
                    if event == "data" and data:
                        with self.cv:
                            self.events.extend((now, e) for e in json.loads("\n".join(data)))
                            self.cv.notify_all()
                    elif event == "control":
                        self.ready.set()
                    event, data = None, []
        except Exception:  # noqa: BLE001 - closed under it (close(), a kill): the end
            pass
        self.ended.set()
        with self.cv:
            self.cv.notify_all()

    def wait_ready(self, timeout=5):
        return self.status == 200 and self.ready.wait(timeout)

    def wait_for(self, pred, until, skip=0):
        """The first (time, event) with pred(event) (after `skip` such),
        waiting until the monotonic time `until`; None if none came."""
        with self.cv:
            while True:
                matches = [(t, e) for t, e in self.events if pred(e)]
                if len(matches) > skip:
                    return matches[skip]
                left = until - time.monotonic()
                if left <= 0 or self.ended.is_set():
                    return None
                self.cv.wait(left)

    def close(self):
        try:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError):
            pass
        self.conn.close()
        self.ended.wait(5)


def is_presence(client, op):
    return lambda e: e["type"] == "presence" and e["key"] == client and e["headers"]["operation"] == op


def new_session(check, w, sid):
    status, _ = request(w, "PUT", "/v1/session/" + sid)
    check(status == 201, "PUT %s: %d" % (sid, status))
    watch = Sse(w, sid)
    check(watch.wait_ready(), "%s: watcher connected" % sid)
    return watch


def leave_timing(check, what, watch, client, since, not_before, grace=GRACE):
    """The leave of client arrives at least `grace` after not_before and at
    most grace + LATE after since."""
    got = watch.wait_for(is_presence(client, "delete"), since + grace + LATE + 0.5)
    if got is None:
        check(False, "%s: %s left within grace + %gs (no leave event)" % (what, client, LATE))
        return None
    t, _ = got
    check(t - not_before >= grace - 0.01,
          "%s: %s did not leave before the grace: %.2f s < %.2f s" % (what, client, t - not_before, grace))
    check(t - since <= grace + LATE,
          "%s: %s left within grace + %gs: %.2f s" % (what, client, LATE, t - since))
    return t - since


def two_connections(check, w):
    sid = "p-two"
    watch = new_session(check, w, sid)
    a, b = Sse(w, sid, "bob"), Sse(w, sid, "bob")
    check(a.wait_ready() and b.wait_ready(), "bob's two SSE connections are open")
    status, body = presence(w, sid, "bob", "enter", {"name": "Bob"})
    check(status == 200 and body["changed"] is True, "bob enters: %d %s" % (status, body))
    check(watch.wait_for(is_presence("bob", "insert"), time.monotonic() + 5) is not None,
          "the watcher sees bob's enter")
    members = attach(w, sid)["state"]["presence"]
    check(list(members) == ["bob"] and members["bob"]["client"] == "bob"
          and members["bob"]["data"] == {"name": "Bob"} and "entered_at" in members["bob"],
          "two connections, one member: %s" % members)
    zed = Sse(w, sid, "zed")  # a connection alone makes no member
    check(zed.wait_ready(), "zed's connection is open")
    check(list(attach(w, sid)["state"]["presence"]) == ["bob"], "a connection without enter is no member")
    zed.close()

    t_one = time.monotonic()
    a.close()
    gone = watch.wait_for(is_presence("bob", "delete"), t_one + GRACE + LATE)
    check(gone is None, "bob stays while one of his connections is open (left after %.2f s)"
          % ((gone[0] - t_one) if gone else 0))
    t_close = time.monotonic()
    b.close()
    dt = leave_timing(check, "both closed", watch, "bob", t_close, t_close)
    print("session_presence_test: bob left %.2f s after his last connection closed (grace %g s)"
          % (dt or -1, GRACE))
    check(presence_ops(log_events(w, sid), "bob") == ["insert", "delete"],
          "the log has bob's enter and one leave: %s" % presence_ops(log_events(w, sid), "bob"))
    check(attach(w, sid)["state"]["presence"] == {}, "no members after bob left")
    watch.close()


def reconnect(check, w):
    sid = "p-reconnect"
    watch = new_session(check, w, sid)
    a = Sse(w, sid, "bob")
    check(a.wait_ready(), "bob connected")
    status, body = presence(w, sid, "bob", "enter", {"tab": 1})
    check(status == 200, "bob enters: %d" % status)
    t_close = time.monotonic()
    a.close()
    # a refresh: back half-way through the grace (a leave before then fails too)
    early = watch.wait_for(is_presence("bob", "delete"), t_close + GRACE / 2)
    check(early is None, "no leave before bob reconnects")
    b = Sse(w, sid, "bob")
    check(b.wait_ready(), "bob reconnected within the grace")
    gone = watch.wait_for(is_presence("bob", "delete"), t_close + GRACE + LATE)
    check(gone is None, "a reconnect within the grace: bob never leaves")
    ops = presence_ops(log_events(w, sid), "bob")
    check(ops == ["insert"], "a reconnect within the grace logs nothing: bob's events %s" % ops)
    check("bob" in attach(w, sid)["state"]["presence"], "bob is still a member")
    # and a reconnect after the first connection's grace started does not
    # carry the old idle time: closing again gives a whole grace again
    t_close = time.monotonic()
    b.close()
    leave_timing(check, "after the reconnect", watch, "bob", t_close, t_close)
    watch.close()


def explicit_leave(check, w):
    sid = "p-leave"
    watch = new_session(check, w, sid)
    a = Sse(w, sid, "bob")
    check(a.wait_ready(), "bob connected")
    presence(w, sid, "bob", "enter", {"x": 1})
    t0 = time.monotonic()
    status, body = presence(w, sid, "bob", "leave")
    check(status == 200 and body["action"] == "leave", "bob leaves: %d %s" % (status, body))
    snap = attach(w, sid)
    check("bob" not in snap["state"]["presence"], "right after the leave's answer, bob is no member")
    events = log_events(w, sid)
    check(events and events[-1]["type"] == "presence" and events[-1]["key"] == "bob"
          and events[-1]["headers"]["operation"] == "delete" and snap["offset"] == body["offset"],
          "the leave is the last event, at the offset its answer gave")
    got = watch.wait_for(is_presence("bob", "delete"), time.monotonic() + 1)
    check(got is not None and got[0] - t0 < 1, "the leave is seen live at once (%.2f s)"
          % ((got[0] - t0) if got else -1))
    # his connection, still open, and its end add nothing
    t_close = time.monotonic()
    a.close()
    n = len(presence_ops(log_events(w, sid), "bob"))
    more = watch.wait_for(is_presence("bob", "delete"), t_close + GRACE + LATE, skip=1)
    check(more is None and n == 2, "no second leave when his connection ends (%d events)" % n)
    # leaving again: no member, nothing logged
    before = attach(w, sid)["offset"]
    status, body = presence(w, sid, "bob", "leave")
    check(status == 200 and body["offset"] == before, "a leave of a non-member logs nothing: %s" % body)
    check(status == 200 and body.get("changed") is False,
          "a leave of a non-member answers changed false: %s" % body)
    watch.close()


def same_data(check, w):
    sid = "p-same"
    watch = new_session(check, w, sid)
    t_enter = time.monotonic()
    status, body = presence(w, sid, "carol", "enter", {"a": 1, "b": [1, 2]})
    check(status == 200 and body["changed"] is True, "carol enters (no connection): %s" % body)
    off = body["offset"]
    entered_at = attach(w, sid)["state"]["presence"]["carol"]["entered_at"]
    for action in ("enter", "update"):
        status, body = presence(w, sid, "carol", action, {"a": 1, "b": [1, 2]})
        check(status == 200 and body["changed"] is False and body["offset"] == off,
              "%s with the same data: changed false, nothing logged: %s" % (action, body))
    status, body = presence(w, sid, "carol", "update", {"a": 2})
    check(status == 200 and body["changed"] is True and body["offset"] > off, "update with new data: %s" % body)
    off = body["offset"]
    status, body = presence(w, sid, "carol", "update", {"a": 2})
    check(status == 200 and body["changed"] is False and body["offset"] == off, "the same again: %s" % body)
    status, body = presence(w, sid, "carol", "enter", with_data=False)
    check(status == 200 and body["changed"] is True, "enter without data (null): %s" % body)
    off = body["offset"]
    status, body = presence(w, sid, "carol", "update", None)
    check(status == 200 and body["changed"] is False and body["offset"] == off, "data null again: %s" % body)
    events = log_events(w, sid)
    check(presence_ops(events, "carol") == ["insert", "update", "update"],
          "carol's events: insert, update, update: %s" % presence_ops(events, "carol"))
    member = attach(w, sid)["state"]["presence"]["carol"]
    check(member == {"client": "carol", "entered_at": entered_at, "data": None},
          "an update keeps entered_at and replaces data: %s" % member)
    status, body = presence(w, sid, "carol", "wave")
    check(status == 400, "an unknown action is 400: %d" % status)
    status, body = request(w, "POST", "/v1/session/%s/presence" % sid, {"action": "enter"})
    check(status == 400, "presence without identity is 400: %d" % status)
    # she never had a connection: she leaves the grace after entering
    leave_timing(check, "entered without a connection", watch, "carol", t_enter, t_enter)
    watch.close()


def reenter(check, w):
    """Leaving and entering again is a new membership: one who enters again
    without a connection gets a whole grace, whatever the idle time before
    the leave. (Found: the old idle time is kept if no timer tick falls
    between the leave and the enter, so the member is dropped at the next
    tick, within 0.25 s.)"""
    sid = "p-reenter"
    watch = new_session(check, w, sid)
    t0 = time.monotonic()
    presence(w, sid, "gus", "enter", 1)
    # nearly a grace without a connection (leaving before that fails too)
    early = watch.wait_for(is_presence("gus", "delete"), t0 + GRACE - 0.3)
    check(early is None, "gus did not leave before the grace")
    status, body = presence(w, sid, "gus", "leave")
    t_enter = time.monotonic()
    status2, body2 = presence(w, sid, "gus", "enter", 2)
    check(status == 200 and status2 == 200 and body2["changed"] is True, "gus left and entered again")
    got = watch.wait_for(is_presence("gus", "delete"), t_enter + GRACE + LATE, skip=1)
    if got is None:
        check(False, "gus, entered again, left within grace + %gs" % LATE)
    else:
        check(got[0] - t_enter >= GRACE - 0.01,
              "gus, who entered again without a connection, stays a whole grace: left after %.2f s"
              % (got[0] - t_enter))
    watch.close()


def long_poll(check, w):
    sid = "p-longpoll"
    watch = new_session(check, w, sid)
    stop = threading.Event()
    polls = [0]

    def poller():
        c = http.client.HTTPConnection("127.0.0.1", w.port, timeout=30)
        offset = "now"
        while not stop.is_set():
            c.request("GET", "/v1/session/%s/log?offset=%s&live=long-poll&client=erin" % (sid, offset))
            r = c.getresponse()
            r.read()
            offset = r.getheader("Stream-Next-Offset") or offset
            polls[0] += 1
        c.close()

    def catch_up():
        c = http.client.HTTPConnection("127.0.0.1", w.port, timeout=30)
        while not stop.is_set():
            c.request("GET", "/v1/session/%s/log?offset=-1&client=frank" % sid)
            c.getresponse().read()
            stop.wait(0.05)  # a reader re-reading now and then
        c.close()

    tp = threading.Thread(target=poller, daemon=True)
    tc = threading.Thread(target=catch_up, daemon=True)
    tp.start()
    tc.start()
    t_enter = time.monotonic()
    presence(w, sid, "erin", "enter", {"reads": "long-poll"})
    presence(w, sid, "frank", "enter", {"reads": "catch-up"})
    leave_timing(check, "catch-up reads only", watch, "frank", t_enter, t_enter)
    gone = watch.wait_for(is_presence("erin", "delete"), t_enter + GRACE + LATE)
    check(gone is None, "a long-poll loop keeps erin (%d polls, each up to --long-poll-timeout 1s)" % polls[0])
    check(polls[0] >= 3, "erin's polls went round: %d" % polls[0])
    stop.set()
    tp.join(5)
    t_stop = time.monotonic()
    leave_timing(check, "long-poll stopped", watch, "erin", t_stop, t_stop - 1.1)
    tc.join(5)
    watch.close()


def restart(check, w):
    sid = "p-restart"
    watch = new_session(check, w, sid)
    a, c = Sse(w, sid, "alice"), Sse(w, sid, "carol")
    check(a.wait_ready() and c.wait_ready(), "alice and carol connected")
    presence(w, sid, "alice", "enter", {"n": "A"})
    status, body = presence(w, sid, "carol", "enter", {"n": "C"})
    check(status == 200, "both entered")
    w.kill()
    for s in (a, c, watch):
        s.close()
    t_start = time.monotonic()
    w.start()
    t_up = time.monotonic()
    snap = attach(w, sid)
    check(sorted(snap["state"]["presence"]) == ["alice", "carol"],
          "after kill -9 and a start, both are members: %s" % list(snap["state"]["presence"]))
    c2 = Sse(w, sid, "carol")
    check(c2.wait_ready(), "carol reconnects within the grace (%.2f s after the start)"
          % (time.monotonic() - t_up))
    watch = Sse(w, sid, offset=snap["offset"])
    check(watch.wait_ready(), "watcher reconnected")
    dt = leave_timing(check, "after a restart", watch, "alice", t_up, t_start)
    print("session_presence_test: alice left %.2f s after the restart" % (dt or -1))
    gone = watch.wait_for(is_presence("carol", "delete"), t_up + GRACE + LATE)
    check(gone is None, "carol, who reconnected, stays")
    ops = {who: presence_ops(log_events(w, sid), who) for who in ("alice", "carol")}
    check(ops == {"alice": ["insert", "delete"], "carol": ["insert"]}, "the log after the restart: %s" % ops)
    c2.close()
    watch.close()


def main():
    check = Checks("session_presence_test")
    w = Weft(sys.argv[1], args=["--presence-grace", "%gs" % GRACE, "--long-poll-timeout", "1s"]).start()
    t0 = time.time()
    try:
        two_connections(check, w)
        reconnect(check, w)
        explicit_leave(check, w)
        same_data(check, w)
        reenter(check, w)
        long_poll(check, w)
        restart(check, w)
        check(w.stop() == 0, "server stopped cleanly")
    except Exception as e:  # noqa: BLE001 - counted, then the closing line
        import traceback
        traceback.print_exc()
        check(False, "test raised %r" % e)
        if w.proc.poll() is None:
            w.kill()
    print("session_presence_test: %.1f s" % (time.time() - t0))
    check.finish(w)


if __name__ == "__main__":
    main()
