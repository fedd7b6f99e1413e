// WeftChatTransport and createChatHandler with the AI SDK's own Chat
// (AbstractChat, what useChat drives), a scripted model (ai/test), an app
// route on a real Node HTTP server and the real weft binary.
import { createServer, type Server } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AbstractChat, simulateReadableStream, streamText, type ChatState, type ChatStatus, type UIMessage } from "ai";
import { MockLanguageModelV4 } from "ai/test";
import { WeftSession } from "@weft/client";

import { createChatHandler, createWakeHandler, subscribeAgent, WeftChatTransport, type ChatHandler } from "../src/index.js";
import { until, WeftServer } from "../../test-support/weft-server.js";

class TestChat extends AbstractChat<UIMessage> {
  constructor(init: ConstructorParameters<typeof AbstractChat<UIMessage>>[0] extends infer T ? Omit<T, "state"> : never) {
    const state: ChatState<UIMessage> = {
      status: "ready" as ChatStatus,
      error: undefined,
      messages: [],
      pushMessage: (m) => void state.messages.push(m),
      popMessage: () => void state.messages.pop(),
      replaceMessage: (i, m) => void (state.messages[i] = m),
      snapshot: (x) => structuredClone(x),
    };
    super({ ...init, state });
  }
}

const WORDS = Array.from({ length: 40 }, (_, i) => `word${i} `);
const usage = {
  inputTokens: { total: 10, noCache: 10, cacheRead: 0, cacheWrite: 0 },
  outputTokens: { total: 40, text: 40, reasoning: 0 },
};

/** A scripted model: streams WORDS, `delay` ms apart; counts its calls. */
function scripted(delay: number) {
  return new MockLanguageModelV4({
    doStream: async () => ({
      stream: simulateReadableStream({
        chunkDelayInMs: delay,
        chunks: [
          { type: "stream-start", warnings: [] },
          { type: "text-start", id: "t" },
          ...WORDS.map((w) => ({ type: "text-delta" as const, id: "t", delta: w })),
          { type: "text-end", id: "t" },
          { type: "finish", finishReason: { unified: "stop", raw: "stop" }, usage },
        ],
      }),
    }),
  });
}

let weft: WeftServer;
let route: Server;
let api = "";
let model = scripted(0);
let handler: ChatHandler;
let n = 0;
const sid = () => `ai-${process.pid}-${++n}`;
const sessions: WeftSession[] = [];

async function attach(id: string, client: string) {
  const s = await WeftSession.attach({ url: weft.url, id, client });
  sessions.push(s);
  return s;
}

const text = (m: UIMessage | undefined) =>
  (m?.parts ?? []).map((p) => (p.type === "text" ? p.text : "")).join("");

beforeAll(async () => {
  weft = new WeftServer();
  await weft.start();
  handler = createChatHandler({
    url: weft.url,
    respond: ({ messages, abortSignal }) =>
      streamText({ model, abortSignal, messages: messages.map((m) => ({ role: m.role as "user", content: text(m) })) }),
  });
  [route, api] = await serve(handler, "/api/chat");
});

/** A route on a real Node HTTP server for a web handler; its URL. */
async function serve(h: (req: Request) => Promise<Response>, path: string): Promise<[Server, string]> {
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const answer = await h(
      new Request(`http://x${req.url}`, { method: req.method ?? "POST", headers: req.headers as HeadersInit, body: Buffer.concat(chunks) }),
    );
    res.writeHead(answer.status, { "Content-Type": "application/json" });
    res.end(await answer.text());
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const a = server.address();
  return [server, `http://127.0.0.1:${typeof a === "object" && a ? a.port : 0}${path}`];
}

afterAll(async () => {
  for (const s of sessions) s.close();
  await handler.idle();
  route.close();
  await weft.stop();
});

describe("WeftChatTransport + createChatHandler", () => {
  it("sends a message, streams the run from the session, and the session keeps the same message", async () => {
    model = scripted(0);
    const id = sid();
    const s = await attach(id, "alice");
    const chat = new TestChat({ id, transport: new WeftChatTransport({ session: s, api }) });
    await chat.sendMessage({ text: "Plan 3 days in Rome" });
    await until("the chat to be ready", () => chat.status === "ready");
    expect(chat.messages.map((m) => m.role)).toEqual(["user", "assistant"]);
    const answer = chat.messages[1];
    expect(text(answer)).toBe(WORDS.join(""));
    expect(model.doStreamCalls.length).toBe(1);
    await handler.idle();
    await until("the session's copy", () => s.messages.length === 2);
    expect(s.messages.map((m) => m.id)).toEqual(chat.messages.map((m) => m.id));
    expect(text(s.messages[1] as UIMessage)).toBe(WORDS.join(""));
    expect(s.runs[0]?.status).toBe("complete");
    expect(s.runs[0]?.answers).toBe(chat.messages[0]?.id);
  });

  it("stop() cancels the run on the server: the model sees its abort signal and nothing is streamed after", async () => {
    model = scripted(40);
    const id = sid();
    const s = await attach(id, "alice");
    const other = await attach(id, "bob");
    const chat = new TestChat({ id, transport: new WeftChatTransport({ session: s, api }) });
    const sent = chat.sendMessage({ text: "go" });
    await until("a few words", () => text(chat.messages[1]).length > 20);
    await chat.stop();
    await sent;
    await until("bob to see the run cancelled", () => other.runs[0]?.status === "cancelled");
    expect(other.runs[0]?.cancelled_by).toBe("alice");
    await handler.idle();
    expect(model.doStreamCalls[0]?.abortSignal?.aborted).toBe(true);
    const kept = text(other.messages[1] as UIMessage);
    expect(kept.length).toBeGreaterThan(0);
    expect(kept.length).toBeLessThan(WORDS.join("").length);
    expect(WORDS.join("").startsWith(kept)).toBe(true);
  });

  it("a second tab resumes the run in progress from its first chunk; with nothing running it gets null", async () => {
    model = scripted(15);
    const id = sid();
    const tab1 = await attach(id, "alice");
    const tab2 = await attach(id, "alice");
    const t1 = new WeftChatTransport({ session: tab1, api });
    const t2 = new WeftChatTransport({ session: tab2, api });
    expect(await t2.reconnectToStream({ chatId: id })).toBeNull();
    const chat1 = new TestChat({ id, transport: t1 });
    const sent = chat1.sendMessage({ text: "go" });
    await until("the run to start", () => tab2.activeRuns.length === 1);
    const chat2 = new TestChat({ id, transport: t2 });
    chat2.messages = tab2.messages as unknown as UIMessage[];
    await chat2.resumeStream();
    await sent;
    await until("both tabs ready", () => chat1.status === "ready" && chat2.status === "ready");
    expect(text(chat2.messages.at(-1))).toBe(WORDS.join(""));
    expect(chat2.messages.at(-1)?.id).toBe(chat1.messages.at(-1)?.id);
    expect(model.doStreamCalls.length).toBe(1);
  });

  it("closing the transport (a closed tab) never cancels the run", async () => {
    model = scripted(10);
    const id = sid();
    const s = await WeftSession.attach({ url: weft.url, id, client: "alice" });
    const watcher = await attach(id, "bob");
    const t = new WeftChatTransport({ session: () => Promise.resolve(s), api });
    const chat = new TestChat({ id, transport: t });
    void chat.sendMessage({ text: "go" });
    await until("the run to start", () => watcher.activeRuns.length === 1);
    s.close();
    t.close();
    await until("the run to complete", () => watcher.runs[0]?.status === "complete", 15_000);
    expect(text(watcher.messages[1] as UIMessage)).toBe(WORDS.join(""));
  });

  it("the route answers 404 for a message the session lacks, 400 for a bad body", async () => {
    const id = sid();
    await attach(id, "alice");
    const r1 = await fetch(api, { method: "POST", body: JSON.stringify({ id, answers: "nope" }) });
    expect(r1.status).toBe(404);
    expect(await r1.text()).toContain("has no message 'nope'");
    const r2 = await fetch(api, { method: "POST", body: "{" });
    expect(r2.status).toBe(400);
  });
});

describe("an agent woken by Weft (subscribeAgent + createWakeHandler, api: null)", () => {
  let waker: ChatHandler;
  let hook: Server;
  let hookUrl = "";
  const respond = ({ messages, abortSignal }: { messages: UIMessage[]; abortSignal: AbortSignal }) =>
    streamText({ model, abortSignal, messages: messages.map((m) => ({ role: m.role as "user", content: text(m) })) });

  beforeAll(async () => {
    waker = createWakeHandler({ url: weft.url, respond });
    [hook, hookUrl] = await serve(waker, "/api/wake");
    await subscribeAgent({ url: weft.url, id: `agent-${process.pid}`, pattern: "/v1/session/wake-*", webhook: hookUrl });
    await subscribeAgent({ url: weft.url, id: `agent-${process.pid}`, pattern: "/v1/session/wake-*", webhook: hookUrl });
  });

  afterAll(async () => {
    await waker.idle();
    hook.close();
  });

  it("a message posted by any client (here: a plain session, as curl would) starts the agent's run", async () => {
    model = scripted(0);
    const id = `wake-${process.pid}-1`;
    const poster = await attach(id, "carol");
    const calls = model.doStreamCalls.length;
    await poster.sendMessage({ id: "q1", role: "user", parts: [{ type: "text", text: "hello" }] });
    await until("the agent's answer", () => poster.runs[0]?.status === "complete", 15_000);
    expect(poster.runs[0]?.answers).toBe("q1");
    expect(poster.runs[0]?.owner).toBe("agent");
    expect(text(poster.messages[1] as UIMessage)).toBe(WORDS.join(""));
    expect(model.doStreamCalls.length - calls).toBe(1);
  });

  it("useChat with api: null streams the run the wake started; stop() cancels it", async () => {
    model = scripted(0);
    const id = `wake-${process.pid}-2`;
    const s = await attach(id, "alice");
    const chat = new TestChat({ id, transport: new WeftChatTransport({ session: s, api: null }) });
    await chat.sendMessage({ text: "Plan 2 days in Paris" });
    await until("the chat to be ready", () => chat.status === "ready");
    expect(chat.messages.map((m) => m.role)).toEqual(["user", "assistant"]);
    expect(text(chat.messages[1])).toBe(WORDS.join(""));
    model = scripted(40);
    const sent = chat.sendMessage({ text: "again" });
    await until("a few words", () => text(chat.messages[3]).length > 20, 15_000);
    await chat.stop();
    await sent;
    await until("the run cancelled", () => s.runs[1]?.status === "cancelled");
    await expect(chat.regenerate()).resolves.toBeUndefined();
    expect(chat.error?.message).toContain("needs the app's route");
  });

  it("a wake without a valid signature is refused; one redelivered does not answer twice", async () => {
    const bad = await fetch(hookUrl, { method: "POST", body: "{}", headers: { "Webhook-Signature": "t=1,kid=ds_x,ed25519=AAAA" } });
    expect(bad.status).toBe(401);
    const unsigned = await fetch(hookUrl, { method: "POST", body: "{}" });
    expect(unsigned.status).toBe(401);
    const lax = createWakeHandler({ url: weft.url, respond, verify: false });
    const id = `wake-${process.pid}-1`;
    const wake = { streams: [{ path: `/v1/session/${id}`, has_pending: true }] };
    const again = await lax(new Request("http://x/", { method: "POST", body: JSON.stringify(wake) }));
    expect(await again.json()).toEqual({ done: true });
    await lax.idle();
    const s = await attach(id, "carol");
    expect(s.runs.length).toBe(1);
  });
});
