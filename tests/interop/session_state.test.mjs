// A session served by the real weft binary, materialised by the published
// State Protocol package (@durable-streams/state's MaterializedState) from
// its log as read by the published Durable Streams client
// (@durable-streams/client), must equal Weft's own attach snapshot, type by
// type (message, run, chunk, object, presence), keys in the same order.
//
// The session holds messages, a run whose chunks ended (compacted into a
// message), a cancelled run, a run still running (its latest chunk batch),
// shared objects (map, counter, list, a deleted object) and presence (a
// member, an updated member, one who left). It is read three ways: a
// catch-up read from offset -1, and live SSE and long-poll readers started
// before the first write. A second session outgrows --session-compact-bytes
// while a run is still running, so its log starts a new generation from a
// snapshot (snapshot-start ... snapshot-end) and is written to again; it is
// read from -1 and by a live SSE reader that follows it into the new
// generation. Then weft is killed (SIGKILL) and started on the same data
// directory: attach must be the same and still what the log materialises.
//
// Usage: node tests/interop/session_state.test.mjs path/to/weft
// Ends with "interop: N passed, N failed"; exit status 1 on any failure.
import { spawn } from "node:child_process";
import { mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { isDeepStrictEqual } from "node:util";

import { stream } from "@durable-streams/client";
import { MaterializedState } from "@durable-streams/state";

const TYPES = ["message", "run", "chunk", "object", "presence"];
let SID = "interop-1";
const COMPACT = "64KiB"; // --session-compact-bytes: the second session outgrows it

let passed = 0;
let failed = 0;
function check(cond, msg) {
  if (cond) passed++;
  else {
    failed++;
    console.log("FAIL: " + msg);
  }
}

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

async function until(what, cond, ms) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error("timed out waiting for " + what);
    await new Promise((r) => setTimeout(r, 25)); // polling a condition, with a deadline
  }
}

class Weft {
  constructor(binary) {
    this.binary = resolve(binary);
    this.tmp = mkdtempSync(join(tmpdir(), "weft-interop-"));
    this.data = join(this.tmp, "data");
    this.log = join(this.tmp, "server.log");
  }

  async start() {
    for (let attempt = 0; attempt < 3; attempt++) {
      this.port = this.port && attempt === 0 ? this.port : await freePort();
      const fd = openSync(this.log, "a");
      this.proc = spawn(this.binary, ["serve", "--port", String(this.port), "--data-dir", this.data,
        "--long-poll-timeout", "2s", "--session-compact-bytes", COMPACT, "--log-level", "info"], { stdio: ["ignore", fd, fd] });
      let exited = false;
      this.exit = new Promise((r) => this.proc.once("exit", (code, sig) => { exited = true; r({ code, sig }); }));
      try {
        await until("weft to listen", async () => {
          if (exited) throw new Error("weft exited at start-up: " + readFileSync(this.log, "utf8").slice(-1500));
          try {
            return (await fetch(`${this.base}/healthz`)).ok;
          } catch {
            return false;
          }
        }, 10000);
        return;
      } catch (e) {
        if (!String(e).includes("Address already in use") || attempt === 2) throw e;
      }
    }
  }

  get base() {
    return `http://127.0.0.1:${this.port}`;
  }

  async kill() {
    this.proc.kill("SIGKILL");
    await this.exit;
  }

  async stop() {
    this.proc.kill("SIGTERM");
    const r = await this.exit;
    return r.code;
  }
}

async function call(w, method, path, body, client) {
  const headers = {};
  if (client) headers["Weft-Client"] = client;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(`${w.base}/v1/session/${SID}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    /* not JSON */
  }
  return { status: r.status, json, text };
}

async function expect(w, status, method, path, body, client) {
  const r = await call(w, method, path, body, client);
  check(r.status === status, `${method} ${path}: ${r.status} (want ${status}) ${r.text.slice(0, 200)}`);
  return r.json;
}

// Everything a session holds.
async function populate(w) {
  await expect(w, 201, "POST", "/messages", {
    id: "m1", role: "user", parts: [{ type: "text", text: "Plan 3 days in Rome — «ciao» 🍕" }],
    metadata: { lang: "en", z: 1, a: 2 },
  }, "alice");
  await expect(w, 201, "POST", "/messages", { role: "system", parts: [] }, "alice");
  await expect(w, 201, "POST", "/messages", {
    id: "m2", role: "user", parts: [{ type: "text", text: "and a museum" }, { type: "file", mediaType: "image/png", url: "data:," }],
  }, "bob");

  // r1: streams everything, ends complete (compacted into message msg-r1)
  await expect(w, 201, "POST", "/runs", { id: "r1", answers: "m1", message_id: "msg-r1", metadata: { model: "m" } }, "agent");
  await expect(w, 200, "POST", "/runs/r1/chunks", { type: "start", messageMetadata: { created: 1 } }, "agent");
  await expect(w, 200, "POST", "/runs/r1/chunks", {
    chunks: [
      { type: "start-step" },
      { type: "reasoning-start", id: "r" },
      { type: "reasoning-delta", id: "r", delta: "thinking…" },
      { type: "reasoning-end", id: "r" },
      { type: "text-start", id: "t1" },
      { type: "text-delta", id: "t1", delta: "Day 1: " },
      { type: "text-delta", id: "t1", delta: "Colosseum" },
      { type: "text-end", id: "t1" },
      { type: "tool-input-start", toolCallId: "call1", toolName: "weather" },
      { type: "tool-input-delta", toolCallId: "call1", inputTextDelta: "{\"city\":" },
      { type: "tool-input-available", toolCallId: "call1", toolName: "weather", input: { city: "Rome" } },
      { type: "tool-output-available", toolCallId: "call1", output: { temp: 21 } },
      { type: "source-url", sourceId: "s1", url: "https://example.com/rome", title: "Rome" },
      { type: "data-plan", id: "p1", data: { days: 1 } },
      { type: "data-plan", id: "p1", data: { days: 3 } },
      { type: "data-note", data: "transient", transient: true },
      { type: "finish-step" },
      { type: "finish", messageMetadata: { tokens: 42 } },
    ],
  }, "agent");
  await expect(w, 200, "POST", "/runs/r1/end", { reason: "complete" }, "agent");

  // r2: cancelled by someone else after one chunk
  await expect(w, 201, "POST", "/runs", { id: "r2", answers: "m2" }, "agent");
  await expect(w, 200, "POST", "/runs/r2/chunks", { type: "text-start", id: "t" }, "agent");
  await expect(w, 200, "POST", "/runs/r2/chunks", { type: "text-delta", id: "t", delta: "Vatican " }, "agent");
  await expect(w, 200, "POST", "/runs/r2/cancel", undefined, "bob");

  // r3: an error end that streamed nothing (no message), r4: still running
  await expect(w, 201, "POST", "/runs", { id: "r3" }, "agent2");
  await expect(w, 200, "POST", "/runs/r3/end", { reason: "error", error: "model overloaded" }, "agent2");
  await expect(w, 201, "POST", "/runs", { id: "r4", answers: "m2", message_id: "msg-r4" }, "agent");
  await expect(w, 200, "POST", "/runs/r4/chunks", { chunks: [{ type: "text-start", id: "a" }, { type: "text-delta", id: "a", delta: "Day 2" }] }, "agent");
  await expect(w, 200, "POST", "/runs/r4/chunks", { type: "text-delta", id: "a", delta: ": Pantheon" }, "agent");

  // objects
  await expect(w, 200, "POST", "/objects", {
    batch: "o1",
    ops: [
      { object: "trip", op: "set", path: "title", value: "Rome" },
      { object: "trip", op: "set", path: ["dates", "start"], value: "2027-05-01" },
      { object: "trip", op: "set", path: "draft", value: true },
      { object: "budget", op: "increment", by: 250 },
      { object: "stops:d1", op: "insert", id: "s1", value: { name: "Colosseum" } },
      { object: "stops:d1", op: "insert", id: "s2", value: { name: "Forum" } },
      { object: "scratch", op: "set", path: "x", value: 1 },
    ],
  }, "alice");
  await expect(w, 200, "POST", "/objects", {
    batch: "o2",
    ops: [
      { object: "trip", op: "remove", path: "draft" },
      { object: "budget", op: "increment", by: -40.5 },
      { object: "stops:d1", op: "insert", id: "s3", value: { name: "Pantheon" }, after: "s1" },
      { object: "stops:d1", op: "move", id: "s2", after: null },
      { object: "stops:d1", op: "update", id: "s3", value: { name: "Pantheon", time: "10:00" } },
      { object: "stops:d1", op: "remove", id: "s1" },
      { object: "scratch", op: "delete" },
    ],
  }, "bob");
  const dup = await expect(w, 200, "POST", "/objects", { batch: "o2", ops: [{ object: "budget", op: "increment" }] }, "bob");
  check(dup && dup.duplicate === true, "a resent batch is a duplicate");

  // presence
  await expect(w, 200, "POST", "/presence", { action: "enter", data: { name: "Alice", color: "red" } }, "alice");
  await expect(w, 200, "POST", "/presence", { action: "enter", data: { name: "Bob" } }, "bob");
  await expect(w, 200, "POST", "/presence", { action: "update", data: { name: "Bob", typing: true } }, "bob");
  await expect(w, 200, "POST", "/presence", { action: "enter" }, "carol");
  await expect(w, 200, "POST", "/presence", { action: "leave" }, "carol");
}

// A live reader with the published client: its own MaterializedState.
function liveReader(w, live, client) {
  const ms = new MaterializedState();
  const seen = { offset: null, events: 0, error: null };
  const ctl = new AbortController();
  const started = stream({
    url: `${w.base}/v1/session/${SID}/log`,
    offset: "-1",
    live,
    params: { client },
    signal: ctl.signal,
    warnOnHttp: false,
    onError: (e) => {
      seen.error = e;
    },
  }).then((res) => {
    res.subscribeJson((batch) => {
      ms.applyBatch(batch.items);
      seen.events += batch.items.length;
      seen.offset = batch.offset;
    });
    return res;
  });
  started.catch((e) => {
    seen.error = e;
  });
  return { ms, seen, started, stop: () => ctl.abort() };
}

async function catchUp(w) {
  const res = await stream({ url: `${w.base}/v1/session/${SID}/log`, offset: "-1", live: false, warnOnHttp: false });
  const events = await res.json();
  return { events, offset: res.offset };
}

function compare(label, ms, snap) {
  for (const t of TYPES) {
    const mine = [...ms.getType(t).entries()];
    const theirs = Object.entries(snap.state[t]);
    check(JSON.stringify(mine) === JSON.stringify(theirs),
      `${label}: ${t}: MaterializedState equals the attach state, keys in order\n  state ${JSON.stringify(mine).slice(0, 400)}\n  weft  ${JSON.stringify(theirs).slice(0, 400)}`);
    check(isDeepStrictEqual(Object.fromEntries(ms.getType(t)), snap.state[t]), `${label}: ${t}: deep equal`);
  }
}

async function attach(w) {
  const r = await call(w, "GET", "");
  check(r.status === 200, `attach: ${r.status}`);
  return r.json;
}

// A session whose log is compacted (a new generation starting from a
// snapshot) while a run is still running, then written to again.
async function compacted(w) {
  SID = "interop-2";
  await expect(w, 201, "PUT", "");
  const sse = liveReader(w, "sse", "watcher-sse2");
  await sse.started;
  await expect(w, 201, "POST", "/messages", { id: "q", role: "user", parts: [{ type: "text", text: "go" }] }, "alice");
  await expect(w, 201, "POST", "/runs", { id: "run", answers: "q", message_id: "a" }, "agent");
  await expect(w, 200, "POST", "/runs/run/chunks", { chunks: [{ type: "text-start", id: "t" }, { type: "text-delta", id: "t", delta: "one " }] }, "agent");
  await expect(w, 200, "POST", "/runs/run/chunks", { type: "text-delta", id: "t", delta: "two " }, "agent");
  await expect(w, 200, "POST", "/presence", { action: "enter", data: { n: 0 } }, "alice");
  // churn past --session-compact-bytes: a 20 KB object rewritten
  for (let i = 0; i < 8; i++) {
    await expect(w, 200, "POST", "/objects", { batch: `blob-${i}`, ops: [{ object: "blob", op: "set", path: "v", value: String(i).repeat(20000) }] }, "alice");
    await expect(w, 200, "POST", "/presence", { action: "update", data: { n: i + 1 } }, "alice");
  }
  const first = await until("the log to be compacted", async () => {
    const { events } = await catchUp(w);
    return events.length && events[0].headers && events[0].headers.control === "snapshot-start" ? events : null;
  }, 10000).catch(() => null);
  check(first !== null, "the log was compacted: a read from -1 starts with snapshot-start");
  // and events after the new generation began
  await expect(w, 201, "POST", "/messages", { id: "q2", role: "user", parts: [] }, "bob");
  await expect(w, 200, "POST", "/objects", { ops: [{ object: "count", op: "increment" }] }, "bob");

  const snap = await attach(w);
  const { events, offset } = await catchUp(w);
  check(offset === snap.offset, `compacted: the catch-up read ends at the attach offset (${offset} vs ${snap.offset})`);
  check(events.some((e) => e.headers?.control === "snapshot-end"), "compacted: the snapshot ends with snapshot-end");
  const ms = new MaterializedState();
  ms.applyBatch(events);
  compare("compacted, catch-up from -1", ms, snap);
  try {
    await until("live SSE reader to reach the tail", () => sse.seen.offset === snap.offset || sse.seen.error, 15000);
  } catch {
    /* counted below */
  }
  check(!sse.seen.error && sse.seen.offset === snap.offset,
    `compacted: the live SSE reader followed into the new generation: ${sse.seen.offset} (${sse.seen.error})`);
  compare("compacted, live SSE", sse.ms, snap);
  sse.stop();
  check((await call(w, "POST", "/objects", { batch: "blob-3", ops: [{ object: "count", op: "increment" }] }, "alice")).json?.duplicate === true,
    "compacted: a batch id from before the new generation is still a duplicate");
  return snap;
}

async function main() {
  const binary = process.argv[2];
  if (!binary) {
    console.log("usage: session_state.test.mjs path/to/weft");
    process.exit(2);
  }
  const t0 = Date.now();
  const w = new Weft(binary);
  await w.start();
  try {
    await expect(w, 201, "PUT", "");
    const sse = liveReader(w, "sse", "watcher-sse");
    const lp = liveReader(w, "long-poll", "watcher-lp");
    await Promise.all([sse.started, lp.started]);
    await populate(w);

    const snap = await attach(w);
    const { events, offset } = await catchUp(w);
    check(offset === snap.offset, `the catch-up read ends at the attach offset (${offset} vs ${snap.offset})`);
    const ms = new MaterializedState();
    ms.applyBatch(events);
    compare("catch-up from -1", ms, snap);

    // what the session must hold, so that the comparison means something
    const st = snap.state;
    check(Object.keys(st.message).length === 5 && st.message["msg-r1"] && st.message.m1,
      `messages: m1, a generated id, m2, r1's and r2's compacted output: ${Object.keys(st.message)}`);
    const r1msg = st.message["msg-r1"] || {};
    check(r1msg.role === "assistant" && Array.isArray(r1msg.parts) &&
      r1msg.parts.some((p) => p.type === "text" && p.text === "Day 1: Colosseum") &&
      r1msg.parts.some((p) => p.type === "tool-weather" && p.state === "output-available"),
    `r1 is compacted into one assistant message: ${JSON.stringify(r1msg).slice(0, 300)}`);
    check(st.run.r1?.status === "complete" && st.run.r2?.status === "cancelled" && st.run.r2?.cancelled_by === "bob" &&
      st.run.r3?.status === "error" && st.run.r4?.status === "running",
    `runs: complete, cancelled, error, running: ${JSON.stringify(Object.values(st.run).map((r) => r.status))}`);
    check(JSON.stringify(Object.keys(st.chunk)) === JSON.stringify(["r4"]) && st.chunk.r4.seq === 1,
      `chunk: only the running run's latest batch: ${JSON.stringify(st.chunk)}`);
    check(JSON.stringify(st.object) === JSON.stringify({
      trip: { title: "Rome", dates: { start: "2027-05-01" } },
      budget: 209.5,
      "stops:d1": [{ id: "s2", value: { name: "Forum" } }, { id: "s3", value: { name: "Pantheon", time: "10:00" } }],
    }), `objects: ${JSON.stringify(st.object)}`);
    check(JSON.stringify(Object.keys(st.presence)) === JSON.stringify(["alice", "bob"]) &&
      isDeepStrictEqual(st.presence.bob.data, { name: "Bob", typing: true }),
    `presence: alice and bob: ${JSON.stringify(st.presence)}`);
    check(events.every((e) => e.headers && typeof e.headers.operation === "string" && typeof e.type === "string" && typeof e.key === "string"),
      "every log entry is a State Protocol change event");
    check(JSON.stringify(Object.keys(snap.output)) === JSON.stringify(["r4"]) && snap.output.r4.length === 3,
      `output: the running run's chunks so far: ${JSON.stringify(snap.output)}`);

    for (const [label, r] of [["live SSE", sse], ["live long-poll", lp]]) {
      try {
        await until(`${label} to reach ${snap.offset}`, () => r.seen.offset === snap.offset || r.seen.error, 15000);
      } catch (e) {
        /* counted below */
      }
      check(!r.seen.error && r.seen.offset === snap.offset,
        `${label} reader reached the attach offset: ${r.seen.offset} (${r.seen.error})`);
      check(r.seen.events === events.length, `${label} reader got every event once: ${r.seen.events} of ${events.length}`);
      compare(label, r.ms, snap);
      r.stop();
    }

    const csnap = await compacted(w);

    // replay after a crash: the same state, from the same log
    await w.kill();
    await w.start();
    for (const [sid, before] of [["interop-1", snap], ["interop-2", csnap]]) {
      SID = sid;
      const snap2 = await attach(w);
      for (const t of TYPES) {
        check(JSON.stringify(snap2.state[t]) === JSON.stringify(before.state[t]),
          `${sid}: after kill -9 and a start, attach's ${t} is the same\n  before ${JSON.stringify(before.state[t]).slice(0, 300)}\n  after  ${JSON.stringify(snap2.state[t]).slice(0, 300)}`);
      }
      check(JSON.stringify(snap2.output) === JSON.stringify(before.output) && snap2.offset === before.offset,
        `${sid}: after kill -9 and a start, attach's output and offset are the same`);
      const again = await catchUp(w);
      const ms2 = new MaterializedState();
      ms2.applyBatch(again.events);
      compare(`${sid} after restart`, ms2, snap2);
    }
    check((await w.stop()) === 0, "weft stopped cleanly");
  } catch (e) {
    check(false, "test raised: " + (e && e.stack ? e.stack : e));
    try {
      await w.kill();
    } catch {
      /* gone already */
    }
  }
  console.log(`interop: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  if (failed) console.log(readFileSync(w.log, "utf8").slice(-2000));
  else rmSync(w.tmp, { recursive: true, force: true });
  console.log(`interop: ${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

main();
