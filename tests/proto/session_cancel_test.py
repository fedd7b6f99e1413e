#!/usr/bin/env python3
"""Session cancel test: an agent in its own process starts a run and streams
chunks into it at about 50 a second while it holds a live connection on the
session's log; another client cancels the run; the agent learns it — from the
run's update on its log connection, or from the 409 its next chunk gets — and
stops. Three rounds: the agent reads the log with SSE, with a long-poll loop,
and not at all (then only the 409 tells it).

Checks, each round: the agent stops and says how it learnt (printing the
cancel-to-agent latency, which must be under 2 s — a generous bound, not a
performance test); a chunk it sends afterwards is 409 "run already ended
(cancelled)"; every reader (two observers, SSE and long-poll, and the agent's
own) sees the run end cancelled, by the canceller, exactly once, and sees the
same events as the log; the run's compacted message holds every chunk the
agent had acknowledged, once, in order, and nothing else.

Usage: session_cancel_test.py path/to/weft
  (the agent: session_cancel_test.py --agent PORT SESSION RUN MODE)
"""
import json
import os
import queue
import subprocess
import sys
import threading
import time

from sessionlib import SESSION, Http, LogReader, read_log, wait_until, who
from weftproc import Checks, Weft

LATENCY_BOUND_MS = 2000
RATE = 50            # chunks a second
BEFORE_CANCEL = 25   # chunks the observers see before the cancel


def say(**kv):
    print(json.dumps(kv), flush=True)


def agent(port, sid, run, mode):
    """Start run, stream until cancelled, report on stdout (JSON lines)."""
    h = Http(port)
    st, ans, _ = h.json("POST", SESSION + sid + "/runs", {"id": run}, who("agent"))
    if st != 201:
        say(event="error", what="start: %d %r" % (st, ans))
        return 1
    cancelled = threading.Event()
    seen = {}
    reader = None
    if mode in ("sse", "long-poll"):
        reader = LogReader(port, sid, ans["offset"], sse=mode == "sse", client="agent")

        def watch():
            hit = reader.wait_for(lambda e: e.get("type") == "run" and e.get("key") == run
                                  and e["value"].get("status") != "running", 60)
            if hit:
                seen["t"], seen["event"] = hit
                cancelled.set()
        threading.Thread(target=watch, daemon=True).start()
    say(event="started", offset=ans["offset"], message_id=ans["message_id"])
    acked, how, t_seen, answer409 = 0, None, None, None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if cancelled.is_set():
            how, t_seen = "log (%s)" % mode, seen["t"]
            break
        chunk = ({"type": "text-start", "id": "t"} if acked == 0 else
                 {"type": "text-delta", "id": "t", "delta": "d%d " % acked})
        st, ans, _ = h.json("POST", SESSION + sid + "/runs/%s/chunks" % run, chunk, who("agent"))
        if st == 409:
            t_409 = time.monotonic()
            if cancelled.is_set():  # both: the log was first
                how, t_seen = "log (%s)" % mode, seen["t"]
            else:
                how, t_seen = "409 on a chunk", t_409
            answer409 = ans
            break
        if st != 200:
            say(event="error", what="chunk %d: %d %r" % (acked, st, ans))
            return 1
        acked += 1
        cancelled.wait(1.0 / RATE)  # the agent's pace; wakes at once on a cancel
    if how is None:
        say(event="error", what="no cancel seen in 30 s")
        return 1
    # Stopped. One more chunk must be refused.
    st, ans, _ = h.json("POST", SESSION + sid + "/runs/%s/chunks" % run,
                        {"type": "text-delta", "id": "t", "delta": "after"}, who("agent"))
    after = (st, ans)
    own = None
    if reader is not None:
        # The agent's own reader saw the update (now or soon).
        hit = reader.wait_for(lambda e: e.get("type") == "run" and e.get("key") == run
                              and e["value"].get("status") != "running", 10)
        own = hit[1] if hit else None
        reader.close()
    say(event="stopped", how=how, t_seen=t_seen, acked=acked, answer409=answer409, after=list(after),
        own_event=own, reader_errors=reader.errors if reader else [])
    return 0


class Agent:
    """The agent's process and its report lines."""

    def __init__(self, port, sid, run, mode):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--agent", str(port), sid, run, mode],
                                     stdout=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        threading.Thread(target=self.pump, daemon=True).start()

    def pump(self):
        for line in self.proc.stdout:
            try:
                self.lines.put(json.loads(line))
            except ValueError:
                self.lines.put({"event": "junk", "line": line})
        self.lines.put({"event": "exit"})

    def next(self, timeout):
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            return {"event": "timeout"}


def round_(check, port, mode, n):
    sid, run = "cancel-%d" % n, "run-%d" % n
    h = Http(port)
    st, _, _ = h.json("PUT", SESSION + sid)
    check(st == 201, "%s: PUT session: %d" % (mode, st))
    obs_sse = LogReader(port, sid, "-1", sse=True, client="bob")
    obs_lp = LogReader(port, sid, "-1", sse=False, client="carol")
    ag = Agent(port, sid, run, mode)
    started = ag.next(15)
    check(started.get("event") == "started", "%s: agent did not start: %r" % (mode, started))
    if started.get("event") != "started":
        ag.proc.kill()
        return None
    # Let it stream a while: the observers see BEFORE_CANCEL chunk events.
    is_chunk = lambda e: e.get("type") == "chunk"  # noqa: E731
    streamed = wait_until(lambda: sum(1 for e in obs_sse.all_events() if is_chunk(e)) >= BEFORE_CANCEL, 15)
    check(streamed, "%s: the agent's chunks did not reach the SSE observer" % mode)
    t_cancel = time.monotonic()
    st, ans, _ = h.json("POST", SESSION + sid + "/runs/%s/cancel" % run, None, who("bob"))
    t_answered = time.monotonic()
    check(st == 200 and ans.get("status") == "cancelled", "%s: cancel: %d %r" % (mode, st, ans))
    report = ag.next(15)
    check(report.get("event") == "stopped", "%s: agent did not stop: %r" % (mode, report))
    try:
        rc = ag.proc.wait(15)
    except subprocess.TimeoutExpired:
        ag.proc.kill()
        rc = "hung"
    check(rc == 0, "%s: agent exited %s" % (mode, rc))
    latency = None
    if report.get("event") == "stopped":
        latency = (report["t_seen"] - t_cancel) * 1000
        print("session_cancel_test: cancel-to-agent latency %.1f ms (agent reading the log: %s; learnt from: %s; "
              "cancel answered in %.1f ms; %d chunks acknowledged)"
              % (latency, mode, report["how"], (t_answered - t_cancel) * 1000, report["acked"]))
        check(latency < LATENCY_BOUND_MS, "%s: the agent learnt of the cancel after %.0f ms (bound %d ms)"
              % (mode, latency, LATENCY_BOUND_MS))
        # With a log connection either may come first (a chunk in flight
        # at the cancel gets the 409); without one, only the 409 tells.
        if mode == "none":
            check(report["answer409"] == {"error": "run already ended (cancelled)"},
                  "%s: the 409 that told the agent: %r" % (mode, report["answer409"]))
        check(report["after"] == [409, {"error": "run already ended (cancelled)"}],
              "%s: a chunk after the agent stopped: %r" % (mode, report["after"]))
        if mode != "none":
            own = report.get("own_event") or {}
            check(own.get("value", {}).get("status") == "cancelled" and own["value"].get("cancelled_by") == "bob",
                  "%s: the agent's own reader saw %r" % (mode, own))
            check(not report.get("reader_errors"), "%s: agent reader errors %s" % (mode, report.get("reader_errors")))
    # Every reader sees the run end cancelled, once.
    is_end = lambda e: e.get("type") == "run" and e["headers"]["operation"] == "update"  # noqa: E731
    for name, rd in [("SSE observer", obs_sse), ("long-poll observer", obs_lp)]:
        hit = rd.wait_for(is_end, 10)
        check(hit is not None and hit[1]["value"].get("status") == "cancelled"
              and hit[1]["value"].get("cancelled_by") == "bob" and hit[1]["headers"].get("client") == "bob",
              "%s: %s saw the run end %r" % (mode, name, hit and hit[1]))
    events, _, tail = read_log(port, sid)
    for name, rd in [("SSE observer", obs_sse), ("long-poll observer", obs_lp)]:
        check(rd.wait_offset(tail, 10), "%s: %s did not reach the log's tail" % (mode, name))
        got = rd.all_events()
        check(got == events, "%s: %s saw %d events, the log has %d" % (mode, name, len(got), len(events)))
        check(not rd.errors, "%s: %s errors: %s" % (mode, name, rd.errors))
        rd.close()
    ends = [e for e in events if is_end(e)]
    check(len(ends) == 1, "%s: the run ended %d times in the log" % (mode, len(ends)))
    # The compacted message: every acknowledged chunk, once, in order.
    st, snap, _ = h.json("GET", SESSION + sid)
    runv = snap.get("state", {}).get("run", {}).get(run, {})
    check(runv.get("status") == "cancelled" and runv.get("cancelled_by") == "bob" and snap.get("output") == {}
          and snap.get("state", {}).get("chunk") == {}, "%s: attach after the cancel: run %r, output %r"
          % (mode, runv, snap.get("output")))
    if report.get("event") == "stopped":
        acked = report["acked"]
        chunk_events = [e for e in events if e["type"] == "chunk" and e["headers"]["operation"] != "delete"]
        check(len(chunk_events) == acked, "%s: %d chunk events logged, the agent had %d acknowledged"
              % (mode, len(chunk_events), acked))
        msg = snap.get("state", {}).get("message", {}).get(started.get("message_id"), {})
        want = "".join("d%d " % i for i in range(1, acked))
        check(msg.get("parts") == [{"type": "text", "text": want, "state": "done"}],
              "%s: compacted message %r, want the %d acknowledged deltas" % (mode, msg, acked - 1))
    h.close()
    return latency


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--agent":
        sys.exit(agent(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]))
    binary = sys.argv[1] if len(sys.argv) > 1 else "build/weft"
    check = Checks("session_cancel_test")
    t0 = time.monotonic()
    w = Weft(binary).start()
    lat = {}
    try:
        for n, mode in enumerate(["sse", "long-poll", "none"]):
            lat[mode] = round_(check, w.port, mode, n)
    except Exception:
        import traceback
        traceback.print_exc()
        check(False, "exception: see above")
    rc = w.stop()
    check(rc == 0, "weft exited %s on SIGTERM" % rc)
    print("session_cancel_test: latencies %s; %.1f s" % (
        ", ".join("%s %.1f ms" % (m, v) for m, v in lat.items() if v is not None), time.monotonic() - t0))
    check.finish(w)


if __name__ == "__main__":
    main()
