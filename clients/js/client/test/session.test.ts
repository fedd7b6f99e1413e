// @weft/client against the real weft binary over real sockets.
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { ObjectOpError, RunEndedError, WeftError, WeftSession, type UIChunk } from "../src/index.js";
import { until, WeftServer } from "../../test-support/weft-server.js";

let weft: WeftServer;
const open: WeftSession[] = [];
let n = 0;

beforeAll(async () => {
  weft = new WeftServer(["--presence-grace", "1s", "--run-lease", "3s"]);
  await weft.start();
});

afterAll(async () => {
  for (const s of open) s.close();
  await weft.stop();
});

async function attach(id: string, client: string, extra: Partial<Parameters<typeof WeftSession.attach>[0]> = {}) {
  const s = await WeftSession.attach({ url: weft.url, id, client, ...extra });
  open.push(s);
  return s;
}

const sid = () => `js-${process.pid}-${++n}`;

async function collect(stream: ReadableStream<UIChunk>): Promise<UIChunk[]> {
  const out: UIChunk[] = [];
  for await (const c of stream as unknown as AsyncIterable<UIChunk>) out.push(c);
  return out;
}

const deltas = (chunks: UIChunk[]) => chunks.filter((c) => c.type === "text-delta").map((c) => c.delta as string);

describe("WeftSession", () => {
  it("attaches, and every participant sees a message live", async () => {
    const id = sid();
    const alice = await attach(id, "alice");
    const bob = await attach(id, "bob");
    const { id: mid, offset } = await alice.sendMessage({ role: "user", parts: [{ type: "text", text: "Plan 3 days in Rome" }] });
    expect(mid).toMatch(/^msg_/);
    await bob.whenOffset(offset);
    expect(bob.messages.map((m) => m.id)).toEqual([mid]);
    expect(bob.messages[0]?.parts[0]).toEqual({ type: "text", text: "Plan 3 days in Rome" });
    const carol = await attach(id, "carol", { live: false });
    expect(carol.messages).toEqual(bob.messages);
    expect(carol.offset >= offset).toBe(true);
  });

  it("streams a run's chunks to readers in order, batching while a request is in flight", async () => {
    const id = sid();
    let chunkPosts = 0;
    const counting: typeof fetch = (input, init) => {
      if (String(input).endsWith("/chunks")) chunkPosts++;
      return fetch(input, init);
    };
    const agent = await attach(id, "agent", { fetch: counting, live: false });
    const reader = await attach(id, "alice");
    const { id: mid } = await reader.sendMessage({ role: "user", parts: [{ type: "text", text: "hi" }] });
    const run = await agent.startRun({ answers: mid });
    await until("the reader to see the run", () => reader.run(run.id));
    const got = collect(reader.runChunks(run.id));
    const words = Array.from({ length: 200 }, (_, i) => `w${i} `);
    run.write({ type: "start" }, { type: "text-start", id: "t" });
    for (const w of words) run.write({ type: "text-delta", id: "t", delta: w });
    run.write({ type: "text-end", id: "t" }, { type: "finish" });
    expect(await run.end()).toBe("complete");
    const chunks = await got;
    expect(deltas(chunks)).toEqual(words);
    expect(chunkPosts).toBeGreaterThan(0);
    expect(chunkPosts).toBeLessThan(words.length); // one request in flight, the rest batched
    await until("the run's message", () => reader.messages.find((m) => m.id === run.messageId));
    const msg = reader.messages.find((m) => m.id === run.messageId);
    expect(msg?.role).toBe("assistant");
    expect(JSON.stringify(msg?.parts)).toContain(JSON.stringify(words.join("")));
    expect(reader.run(run.id)?.status).toBe("complete");
  });

  it("a late joiner gets the output so far, then live chunks, no gap and no duplicate", async () => {
    const id = sid();
    const agent = await attach(id, "agent", { live: false });
    const run = await agent.startRun();
    run.write({ type: "text-start", id: "t" });
    for (let i = 0; i < 50; i++) run.write({ type: "text-delta", id: "t", delta: `a${i}` });
    await run.flush();
    const late = await attach(id, "bob");
    const got = collect(late.runChunks(run.id));
    for (let i = 0; i < 50; i++) run.write({ type: "text-delta", id: "t", delta: `b${i}` });
    await run.end();
    const all = deltas(await got);
    expect(all).toEqual([...Array.from({ length: 50 }, (_, i) => `a${i}`), ...Array.from({ length: 50 }, (_, i) => `b${i}`)]);
  });

  it("anyone can cancel a run: the agent's signal aborts and its writes stop", async () => {
    const id = sid();
    const agent = await attach(id, "agent");
    const bob = await attach(id, "bob");
    const run = await agent.startRun();
    run.write({ type: "text-start", id: "t" }, { type: "text-delta", id: "t", delta: "Day 1" });
    await run.flush();
    const aborted = new Promise<number>((r) => run.signal.addEventListener("abort", () => r(Date.now())));
    const t0 = Date.now();
    expect(await bob.cancelRun(run.id)).toBe("cancelled");
    const at = await aborted;
    expect(at - t0).toBeLessThan(2000);
    expect(run.signal.reason).toBeInstanceOf(RunEndedError);
    expect((run.signal.reason as RunEndedError).status).toBe("cancelled");
    run.write({ type: "text-delta", id: "t", delta: "never" });
    expect(await run.end()).toBe("cancelled");
    await until("bob to see it cancelled", () => bob.run(run.id)?.status === "cancelled");
    expect(bob.run(run.id)?.cancelled_by).toBe("bob");
    expect(await bob.cancelRun(run.id)).toBe("cancelled"); // already ended: says how
  });

  it("an agent that does not read the log learns of a cancel from its next write", async () => {
    const id = sid();
    const agent = await attach(id, "agent", { live: false });
    const bob = await attach(id, "bob", { live: false });
    const run = await agent.startRun();
    await bob.cancelRun(run.id);
    run.write({ type: "text-delta", id: "t", delta: "x" });
    await until("the signal", () => run.stopped);
    expect((run.signal.reason as RunEndedError).status).toBe("cancelled");
  });

  it("applies object batches at once locally, and every client converges", async () => {
    const id = sid();
    const alice = await attach(id, "alice");
    const bob = await attach(id, "bob");
    const p = alice.applyOps([
      { object: "stops", op: "insert", id: "s1", value: { name: "Colosseum" } },
      { object: "budget", op: "increment", by: 500 },
    ]);
    // optimistic: visible before the server answered
    expect(alice.object("budget")).toBe(500);
    const { offset } = await p;
    await Promise.all([alice.whenOffset(offset), bob.whenOffset(offset)]);
    const writes: Array<Promise<unknown>> = [];
    for (let i = 0; i < 20; i++) {
      writes.push(alice.applyOps([{ object: "stops", op: "insert", id: `a${i}`, value: i, after: "s1" }]));
      writes.push(bob.applyOps([{ object: "stops", op: "move", id: "s1" }, { object: "budget", op: "increment", by: -1 }]));
    }
    const answers = (await Promise.all(writes)) as Array<{ offset: string }>;
    const last = answers.map((a) => a.offset).sort().pop() as string;
    await Promise.all([alice.whenOffset(last), bob.whenOffset(last)]);
    expect(alice.objects).toEqual(bob.objects);
    expect(alice.object("budget")).toBe(480);
    expect((alice.object("stops") as unknown[]).length).toBe(21);
    const fresh = await attach(id, "carol", { live: false });
    expect(fresh.objects).toEqual(alice.objects);
  });

  it("refuses a bad batch locally (nothing sent) and reports the server's refusals", async () => {
    const id = sid();
    const alice = await attach(id, "alice");
    const { offset } = await alice.applyOps([{ object: "budget", op: "increment", by: 1 }]);
    await alice.whenOffset(offset);
    await expect(alice.applyOps([{ object: "budget", op: "set", path: "x", value: 1 }])).rejects.toThrow(ObjectOpError);
    expect(alice.object("budget")).toBe(1);
    const unknown = await WeftSession.attach({ url: weft.url, id: sid(), client: "x", create: false }).catch((e) => e);
    expect(unknown).toBeInstanceOf(WeftError);
    expect((unknown as WeftError).status).toBe(404);
  });

  it("shows presence by person, and a leave to everyone", async () => {
    const id = sid();
    const alice = await attach(id, "alice");
    const tab2 = await attach(id, "alice");
    const bob = await attach(id, "bob");
    await alice.enter({ name: "Alice" });
    await tab2.enter({ name: "Alice" });
    await bob.enter({ name: "Bob" });
    await until("bob to see two members", () => bob.presence.length === 2);
    expect(bob.presence.map((m) => m.client).sort()).toEqual(["alice", "bob"]);
    await bob.leave();
    await until("alice to see bob leave", () => alice.presence.length === 1);
    expect(alice.presence[0]?.data).toEqual({ name: "Alice" });
  });

  it("an agent's chunk batches survive a SIGKILL restart of weft, each applied once", async () => {
    const id = sid();
    const agent = await attach(id, "agent", { live: false });
    const run = await agent.startRun();
    const a = Array.from({ length: 20 }, (_, i) => `a${i} `);
    const b = Array.from({ length: 20 }, (_, i) => `b${i} `);
    run.write({ type: "text-start", id: "t" });
    for (const d of a) run.write({ type: "text-delta", id: "t", delta: d });
    await run.flush();
    await weft.kill();
    for (const d of b) run.write({ type: "text-delta", id: "t", delta: d }); // fails, then is sent again
    await weft.start();
    await run.flush();
    run.write({ type: "text-end", id: "t" });
    expect(await run.end()).toBe("complete");
    const after = await attach(id, "bob", { live: false });
    const msg = after.messages.find((m) => m.id === run.messageId);
    expect(msg?.parts).toEqual([{ type: "text", text: [...a, ...b].join(""), state: "done" }]);
  });

  it("follows the log across a SIGKILL restart of weft, losing nothing acknowledged", async () => {
    const id = sid();
    const alice = await attach(id, "alice");
    const bob = await attach(id, "bob");
    const first = await alice.sendMessage({ role: "user", parts: [{ type: "text", text: "before" }] });
    await bob.whenOffset(first.offset);
    await weft.kill();
    await weft.start();
    const second = await alice.sendMessage({ role: "user", parts: [{ type: "text", text: "after" }] });
    await until("bob to reconnect and see the message", () => bob.messages.length === 2, 20_000);
    expect(bob.messages.map((m) => m.id)).toEqual([first.id, second.id]);
  });
});
