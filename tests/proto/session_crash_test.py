#!/usr/bin/env python3
"""Session crash test: clients post messages, agents start runs, stream chunks
and end them, while the server is SIGKILLed and restarted several times.

- A poster gives every message its own id; after a kill it sends the same
  message again (same id, same body) until answered: 201, or 200 if the first
  attempt had landed. Every acknowledged message must be in the session
  exactly once, as sent.
- An agent starts runs with ids it chose (a retry answered 409 "exists" means
  the first attempt landed), streams chunks and ends the runs (a retried end
  answered 409 "run already ended (complete)" had landed). A chunk has no
  idempotency key, so after a kill the agent does not resend blindly: it
  attaches and looks at the run's output — there, it landed; not there, it
  sends it again. Every acknowledged chunk must then be in the run's output
  (or, once the run ended, its compacted message) exactly once, in order,
  with nothing else.
- A follower reads each session's log with long-poll across the kills (from
  its last offset after each).

After the last restart: the checks above; the attach snapshot's state equals
the materialisation of the log (State Protocol) and its output the chunks of
the running runs; with no compaction (phase 1) the log holds exactly one
insert per message and every acknowledged chunk once, and the follower read
exactly the log, event for event (nothing it read before a kill was lost or
changed). Phase 2 does it again with --session-compact-bytes 48KiB, so that
kills land while the log starts new generations: the log from -1 then starts
with a snapshot, and the follower, answered 410 at times, starts over.

Usage: session_crash_test.py path/to/weft
"""
import http.client
import json
import random
import sys
import threading
import time

from sessionlib import SESSION, Http, is_control, materialise, normal_state, output_of, read_log, who
from weftproc import Checks, Weft

check = Checks("session_crash_test")
SIDS = ["crash-a", "crash-b"]
CHUNKS_PER_RUN = 30
DOWN = (OSError, http.client.HTTPException)


class Client:
    """A thread with its own identity and connection that retries across kills."""

    def __init__(self, port, sid, name):
        self.port, self.sid, self.name = port, sid, name
        self.h = Http(port, timeout=15)
        self.errors = []
        self.stop = threading.Event()
        self.retries = 0
        self.thread = threading.Thread(target=self.main, daemon=True)

    def call(self, method, rest, body=None):
        """(status, answer), or None if the server went away (then reconnect)."""
        try:
            st, ans, _ = self.h.json(method, SESSION + self.sid + rest, body, who(self.name))
            return st, ans
        except DOWN:
            self.h.close()
            self.retries += 1
            time.sleep(0.05)  # the server is restarting: try again shortly
            return None

    def call_until(self, method, rest, body=None, deadline=60):
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            r = self.call(method, rest, body)
            if r is not None:
                return r
        raise RuntimeError("%s: server unreachable for %d s" % (self.name, deadline))

    def main(self):
        try:
            self.run()
        except Exception as e:  # noqa: BLE001
            self.errors.append("%s: %r" % (self.name, e))


class Poster(Client):
    def __init__(self, port, sid, name, pace):
        super().__init__(port, sid, name)
        self.pace = pace
        self.acked = {}      # id -> body
        self.attempted = {}  # id -> body
        self.dup_acks = 0

    def run(self):
        n = 0
        while not self.stop.is_set():
            mid = "%s-m%d" % (self.name, n)
            body = {"id": mid, "role": "user", "parts": [{"type": "text", "text": "message %d of %s" % (n, self.name)}],
                    "metadata": {"n": n}}
            self.attempted[mid] = body
            while True:
                r = self.call("POST", "/messages", body)
                if r is None:
                    continue
                st, ans = r
                if st in (200, 201) and ans.get("id") == mid:
                    self.acked[mid] = body
                    self.dup_acks += st == 200
                else:
                    self.errors.append("%s: message %s: %d %r" % (self.name, mid, st, ans))
                    return
                break
            n += 1
            if self.pace:
                self.stop.wait(self.pace)  # a person's pace (so that chunks dominate the log), not a synchronisation


class Agent(Client):
    def __init__(self, port, sid, name, leave_running=False):
        super().__init__(port, sid, name)
        self.runs = {}  # id -> {"message_id", "landed": [chunks], "ended"}
        self.leave_running = leave_running
        self.confirmed = 0  # chunks found landed after a kill

    def chunk(self, rid, k):
        if k == 0:
            return {"type": "text-start", "id": "t"}
        if k == CHUNKS_PER_RUN - 1:
            return {"type": "text-end", "id": "t"}
        return {"type": "text-delta", "id": "t", "delta": "%s:%d;" % (rid, k)}

    def output_now(self, rid):
        """After a kill: the run's output as the server has it."""
        st, snap = self.call_until("GET", "")
        if st != 200:
            raise RuntimeError("attach: %d %r" % (st, snap))
        return snap["output"].get(rid), snap["state"]["run"].get(rid)

    def run(self):
        n = 0
        while not self.stop.is_set():
            rid = "%s-r%d" % (self.name, n)
            run = self.runs[rid] = {"message_id": rid + "-msg", "landed": [], "ended": False}
            st, ans = self.call_until("POST", "/runs", {"id": rid, "message_id": run["message_id"], "answers": None})
            if st == 409:  # a retry of a start that had landed (session_test checks the error names it)
                _, value = self.output_now(rid)
                if not value or value.get("owner") != self.name:
                    self.errors.append("%s: run %s exists, not mine: %r" % (self.name, rid, value))
                    return
            elif st != 201:
                self.errors.append("%s: start %s: %d %r" % (self.name, rid, st, ans))
                return
            for k in range(CHUNKS_PER_RUN):
                c = self.chunk(rid, k)
                while True:
                    r = self.call("POST", "/runs/%s/chunks" % rid, c)
                    if r is not None:
                        st, ans = r
                        if st != 200:
                            self.errors.append("%s: chunk %d of %s: %d %r" % (self.name, k, rid, st, ans))
                            return
                        run["landed"].append(c)
                        break
                    out, _ = self.output_now(rid)  # did it land before the kill?
                    out = out or []
                    if out == run["landed"] + [c]:
                        run["landed"].append(c)
                        self.confirmed += 1
                        break
                    if out != run["landed"]:
                        self.errors.append("%s: after a kill, %s's output has %d chunks; %d had landed"
                                           % (self.name, rid, len(out), len(run["landed"])))
                        return
                if self.stop.is_set() and self.leave_running and k >= 3:
                    return  # this run stays running: its output must survive too
            st, ans = self.call_until("POST", "/runs/%s/end" % rid, {"reason": "complete"})
            if st == 200 or (st == 409 and ans.get("error") == "run already ended (complete)"):
                run["ended"] = True
            else:
                self.errors.append("%s: end %s: %d %r" % (self.name, rid, st, ans))
                return
            n += 1


class Follower(Client):
    """Long-polls the log across kills; on 410 (compacted away) starts over."""

    def __init__(self, port, sid):
        super().__init__(port, sid, "follower")
        self.events = []
        self.offset = "-1"
        self.restarts = 0

    def run(self):
        while not self.stop.is_set():
            try:
                st, r, raw = self.h.request("GET", SESSION + "%s/log?offset=%s&live=long-poll" % (self.sid, self.offset))
            except DOWN:
                self.h.close()
                time.sleep(0.05)
                continue
            if st == 410:
                self.events, self.offset = [], "-1"
                self.restarts += 1
                continue
            if st not in (200, 204):
                self.errors.append("follower %s: %d %r" % (self.sid, st, raw[:200]))
                return
            if st == 200:
                self.events.extend(json.loads(raw))
            self.offset = r.getheader("Stream-Next-Offset") or self.offset


def phase(binary, args, kills, compacting):
    label = "compacting" if compacting else "plain"
    w = Weft(binary, args=["--long-poll-timeout", "1s"] + args).start()
    h = Http(w.port)
    for sid in SIDS:
        st, _, _ = h.json("PUT", SESSION + sid)
        check(st == 201, "%s: PUT %s: %d" % (label, sid, st))
    h.close()
    # Flat out without compaction (more kills land between a message's
    # durability and its answer); at a person's pace with it, so that chunks
    # make most of the log and it starts new generations.
    posters = [Poster(w.port, sid, "p-%s" % sid[-1], 0.01 if compacting else 0) for sid in SIDS]
    agents = [Agent(w.port, sid, "a%d-%s" % (i, sid[-1]), leave_running=i == 0) for sid in SIDS for i in range(2)]
    followers = [Follower(w.port, sid) for sid in SIDS]
    everyone = posters + agents + followers
    for c in everyone:
        c.thread.start()
    rnd = random.Random()
    for _ in range(kills):
        time.sleep(rnd.uniform(0.4, 1.2))  # let them work a while: the kill lands anywhere
        w.kill()
        time.sleep(rnd.uniform(0.0, 0.2))
        w.start()
    time.sleep(0.3)
    for c in posters + agents:
        c.stop.set()
    for c in posters + agents:
        c.thread.join(60)
        check(not c.thread.is_alive(), "%s: %s did not stop" % (label, c.name))
    # One more kill with nothing in flight: recovery alone must give it all back.
    w.kill()
    w.start()
    for sid, f in zip(SIDS, followers):
        _, _, tail = read_log(w.port, sid)
        end = time.monotonic() + 15
        while f.offset < tail and time.monotonic() < end and f.thread.is_alive():
            time.sleep(0.02)  # polling the follower's progress against a deadline
        f.stop.set()
    for f in followers:
        f.thread.join(10)
    for c in everyone:
        check(not c.errors, "%s: %s errors: %s" % (label, c.name, c.errors[:3]))

    total_msgs = total_chunks = total_runs = dup = confirmed = retries = 0
    h = Http(w.port)
    for sid, f in zip(SIDS, followers):
        st, snap, _ = h.json("GET", SESSION + sid)
        check(st == 200, "%s: attach %s: %d" % (label, sid, st))
        state, output = snap["state"], snap["output"]
        events, _, tail = read_log(w.port, sid)
        check(snap["offset"] == tail, "%s: %s attach offset %s, log tail %s" % (label, sid, snap["offset"], tail))
        anomalies = []
        replay = materialise(events, anomalies=anomalies)
        check(normal_state(replay) == normal_state(state),
              "%s: %s: attach state differs from the materialised log" % (label, sid))
        check(not anomalies, "%s: %s: State Protocol anomalies: %s" % (label, sid, anomalies[:5]))
        check(output == output_of(events), "%s: %s: attach output differs from the log's chunks" % (label, sid))
        if compacting:
            check(events and is_control(events[0]) and events[0]["headers"]["control"] == "snapshot-start",
                  "%s: %s: the log from -1 does not start with a snapshot (no compaction happened)" % (label, sid))
            check(normal_state(materialise(f.events)) == normal_state(state),
                  "%s: %s: the follower's materialised state differs from attach (%d events, %d restarts)"
                  % (label, sid, len(f.events), f.restarts))
        else:
            check(f.events == events, "%s: %s: the follower read %d events across the kills, the log has %d (first "
                  "difference at %s)" % (label, sid, len(f.events), len(events),
                                        next((i for i, (a, b) in enumerate(zip(f.events, events)) if a != b),
                                             min(len(f.events), len(events)))))
        msgs = state["message"]
        # Messages: every acknowledged one once, as sent; nothing nobody sent.
        p = next(p for p in posters if p.sid == sid)
        lost = [m for m in p.acked if msgs.get(m) != p.acked[m]]
        check(not lost, "%s: %s: %d acknowledged messages missing or changed: %s" % (label, sid, len(lost), lost[:3]))
        mine = {m for m in msgs if m.startswith(p.name + "-m")}
        check(mine <= set(p.attempted), "%s: %s: messages nobody sent: %s" % (label, sid, sorted(mine - set(p.attempted))[:3]))
        check(all(msgs[m] == p.attempted[m] for m in mine), "%s: %s: an unacknowledged message differs" % (label, sid))
        if not compacting:
            inserts = {}
            for e in events:
                if e.get("type") == "message" and e["headers"]["operation"] == "insert":
                    inserts[e["key"]] = inserts.get(e["key"], 0) + 1
            twice = [m for m, k in inserts.items() if k != 1]
            check(not twice, "%s: %s: messages logged more than once: %s" % (label, sid, twice[:3]))
        total_msgs += len(p.acked)
        dup += p.dup_acks
        retries += p.retries
        # Runs: every acknowledged chunk once, in order, nothing else.
        for a in (a for a in agents if a.sid == sid):
            confirmed += a.confirmed
            retries += a.retries
            for rid, run in a.runs.items():
                value = state["run"].get(rid)
                if not run["landed"] and not run["ended"] and value is None:
                    continue  # its start never landed (the agent stopped)
                total_runs += 1
                total_chunks += len(run["landed"])
                deltas = "".join(c.get("delta", "") for c in run["landed"])
                if run["ended"]:
                    m = msgs.get(run["message_id"])
                    check(value and value.get("status") == "complete" and rid not in output,
                          "%s: %s: run %s: %r" % (label, sid, rid, value))
                    check(m is not None and m.get("parts") == [{"type": "text", "text": deltas, "state": "done"}],
                          "%s: %s: run %s's message is not its %d acknowledged chunks once each: %r"
                          % (label, sid, rid, len(run["landed"]), m and json.dumps(m)[:300]))
                else:
                    check(value and value.get("status") == "running" and output.get(rid) == run["landed"],
                          "%s: %s: running run %s: output %d chunks, %d acknowledged"
                          % (label, sid, rid, len(output.get(rid) or []), len(run["landed"])))
                if not compacting:
                    logged = [c for e in events if e.get("type") == "chunk" and e["key"] == rid
                              and e["headers"]["operation"] != "delete" for c in e["value"]["chunks"]]
                    check(logged == run["landed"], "%s: %s: run %s: the log has %d chunks, %d were acknowledged"
                          % (label, sid, rid, len(logged), len(run["landed"])))
    h.close()
    check(total_msgs > 50 and total_chunks > 300, "%s: too little acknowledged (%d messages, %d chunks)"
          % (label, total_msgs, total_chunks))
    print("session_crash_test (%s): %d kills; %d messages (%d retries answered 200), %d runs, %d chunks acknowledged "
          "(%d found landed after a kill); %d requests failed by kills; follower restarts after 410: %s"
          % (label, kills + 1, total_msgs, dup, total_runs, total_chunks, confirmed, retries,
             [f.restarts for f in followers]))
    rc = w.stop()
    check(rc == 0, "%s: weft exited %s on SIGTERM" % (label, rc))
    return w


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "build/weft"
    t0 = time.monotonic()
    w = None
    try:
        w = phase(binary, [], 6, compacting=False)
        w = phase(binary, ["--session-compact-bytes", "48KiB"], 6, compacting=True)
    except Exception:
        import traceback
        traceback.print_exc()
        check(False, "exception: see above")
    print("session_crash_test: %.1f s" % (time.monotonic() - t0))
    check.finish(w)


if __name__ == "__main__":
    main()
