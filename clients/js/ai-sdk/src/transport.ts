/**
 * The browser's side: a `ChatTransport` for AI SDK 7's `useChat` whose
 * chats are Weft sessions. A message is appended to the session (every
 * participant sees it), the agent's run starts (the app's route starts it,
 * or Weft wakes the agent), and the run's chunks are read from the session
 * — so a refresh, a second tab or a friend joining resume it, and `stop()`
 * cancels the run on the server.
 * @module
 */
import type { ChatRequestOptions, ChatTransport, UIMessage, UIMessageChunk } from "ai";
import { WeftSession, type SessionMessage } from "@weft/client";

/** What the transport posts to the app's route (see `createChatHandler`). */
export interface ChatRouteRequest {
  /** The chat id: the Weft session id. */
  id: string;
  trigger: "submit-message" | "regenerate-message";
  /** The message the run answers (a user message already in the session). */
  answers: string;
  /** For a regeneration: the assistant message to replace. */
  messageId?: string;
  /** Who asked (the participant's client id). */
  client: string;
  /** `ChatRequestOptions.metadata`, if given. */
  metadata?: unknown;
  [key: string]: unknown;
}

/** What the app's route answers. */
export interface ChatRouteResponse {
  runId: string;
  messageId: string;
}

/** Options of {@link WeftChatTransport}. */
export interface WeftChatTransportOptions {
  /**
   * The attached session of the chat, or a function that attaches the
   * session of a chat id (called once per chat id; the transport closes
   * what it attached on {@link WeftChatTransport.close}).
   */
  session: WeftSession | ((chatId: string) => Promise<WeftSession>);
  /**
   * The app's route that starts the agent's run (default `/api/chat`), or
   * `null` when the agent is woken by Weft (a subscription, see
   * `createWakeHandler`): then a message is only appended to the session
   * and the transport streams the run that answers it once it starts.
   */
  api?: string | null;
  /** Headers for the route (a function is called per request). */
  headers?: Record<string, string> | (() => Record<string, string> | Promise<Record<string, string>>);
  /** Extra JSON members for the route's body. */
  body?: Record<string, unknown>;
  /** A fetch for the route instead of the global one. */
  fetch?: typeof globalThis.fetch;
}

/**
 * `new WeftChatTransport({ session })` as `useChat({ id: session.id, transport })`.
 */
export class WeftChatTransport<UI_MESSAGE extends UIMessage = UIMessage> implements ChatTransport<UI_MESSAGE> {
  /** A resumed run is streamed again from its first chunk. */
  readonly resumeStreamIsReplay = true;
  readonly #opts: WeftChatTransportOptions;
  readonly #attached = new Map<string, Promise<WeftSession>>();

  constructor(opts: WeftChatTransportOptions) {
    this.#opts = opts;
  }

  /** The session of a chat id. */
  session(chatId: string): Promise<WeftSession> {
    const s = this.#opts.session;
    if (s instanceof WeftSession) {
      if (s.id !== chatId) return Promise.reject(new Error(`this transport is for session '${s.id}', not '${chatId}'`));
      return Promise.resolve(s);
    }
    let p = this.#attached.get(chatId);
    if (!p) {
      p = s(chatId);
      this.#attached.set(chatId, p);
      p.catch(() => this.#attached.delete(chatId));
    }
    return p;
  }

  /**
   * Append the user's message to the session, have the app's route start a
   * run that answers it, and stream the run's chunks from the session.
   * Aborting (`useChat`'s `stop()`) cancels the run on the server.
   */
  async sendMessages(
    options: {
      trigger: "submit-message" | "regenerate-message";
      chatId: string;
      messageId: string | undefined;
      messages: UI_MESSAGE[];
      abortSignal: AbortSignal | undefined;
    } & ChatRequestOptions,
  ): Promise<ReadableStream<UIMessageChunk>> {
    const session = await this.session(options.chatId);
    if (this.#opts.api === null && options.trigger === "regenerate-message")
      throw new Error("regenerating a message needs the app's route: set WeftChatTransport's api");
    const answers = await this.#question(session, options);
    if (this.#opts.api === null) return this.#follow(session, await answeringRun(session, answers, options.abortSignal), options.abortSignal);
    const routeBody: ChatRouteRequest = {
      ...this.#opts.body,
      ...(options.body as Record<string, unknown> | undefined),
      id: options.chatId,
      trigger: options.trigger,
      answers,
      client: session.client,
    };
    if (options.trigger === "regenerate-message" && options.messageId) routeBody.messageId = options.messageId;
    if (options.metadata !== undefined) routeBody.metadata = options.metadata;
    const headers = new Headers(options.headers as HeadersInit | undefined);
    const extra = typeof this.#opts.headers === "function" ? await this.#opts.headers() : (this.#opts.headers ?? {});
    for (const [k, v] of Object.entries(extra)) headers.set(k, v);
    headers.set("Content-Type", "application/json");
    const f = this.#opts.fetch ?? globalThis.fetch;
    const res = await f(this.#opts.api ?? "/api/chat", {
      method: "POST",
      headers,
      body: JSON.stringify(routeBody),
      signal: options.abortSignal ?? null,
    });
    if (!res.ok) throw new Error(`${this.#opts.api ?? "/api/chat"}: ${res.status} ${(await res.text()).slice(0, 300)}`);
    const { runId } = (await res.json()) as ChatRouteResponse;
    return this.#follow(session, runId, options.abortSignal);
  }

  /** The run's chunks; aborting cancels the run on the server. */
  #follow(session: WeftSession, runId: string, signal: AbortSignal | undefined): ReadableStream<UIMessageChunk> {
    const stop = () => void session.cancelRun(runId).catch(() => {});
    if (signal?.aborted) stop();
    else signal?.addEventListener("abort", stop, { once: true });
    return session.runChunks(runId, signal) as unknown as ReadableStream<UIMessageChunk>;
  }

  /**
   * Resume the chat's run in progress (after a refresh, or one another
   * participant started): all its chunks from the first, then live; `null`
   * when nothing is running. Never cancels anything.
   */
  async reconnectToStream(options: { chatId: string; abortSignal?: AbortSignal } & ChatRequestOptions): Promise<ReadableStream<UIMessageChunk> | null> {
    const session = await this.session(options.chatId);
    const run = session.activeRuns.at(-1);
    if (!run) return null;
    return session.runChunks(run.id, options.abortSignal) as unknown as ReadableStream<UIMessageChunk>;
  }

  /** Close the sessions this transport attached (not one it was given). */
  close(): void {
    for (const p of this.#attached.values()) void p.then((s) => s.close()).catch(() => {});
    this.#attached.clear();
  }

  /** The id of the user message the run answers, appending it if the session lacks it. */
  async #question(session: WeftSession, options: { trigger: string; messageId: string | undefined; messages: UI_MESSAGE[] }): Promise<string> {
    const msgs = options.messages;
    let i = msgs.length - 1;
    if (options.trigger === "regenerate-message" && options.messageId) {
      const at = msgs.findIndex((m) => m.id === options.messageId);
      if (at >= 0) i = at - 1;
    }
    while (i >= 0 && msgs[i]?.role !== "user") i--;
    const q = msgs[i];
    if (!q) throw new Error("no user message to answer");
    if (!session.messages.some((m) => m.id === q.id)) {
      const m: SessionMessage = { id: q.id, role: "user", parts: q.parts as SessionMessage["parts"] };
      if (q.metadata !== undefined) m.metadata = q.metadata;
      await session.sendMessage(m);
    }
    return q.id;
  }
}

/**
 * The id of the run answering message `answers`, once the agent (woken by
 * Weft) has started it. Aborted first: rejects at once, and the run is
 * cancelled when it starts.
 */
function answeringRun(session: WeftSession, answers: string, signal: AbortSignal | undefined): Promise<string> {
  return new Promise((resolve, reject) => {
    const find = () => session.runs.find((r) => r.answers === answers)?.id;
    const settle = (id: string) => {
      off();
      if (signal?.aborted) void session.cancelRun(id).catch(() => {});
      else resolve(id);
    };
    const off = session.subscribe(() => {
      const id = find();
      if (id) settle(id);
    });
    signal?.addEventListener("abort", () => reject(new DOMException("stopped before the agent started", "AbortError")), {
      once: true,
    });
    const now = find();
    if (now) settle(now);
  });
}
