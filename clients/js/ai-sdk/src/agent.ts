/**
 * The agent's side: a route handler that starts a run for a chat request
 * and pipes the model's UI message stream into it, with the run's abort
 * signal handed to the model (a Stop in any tab stops the model), and the
 * conversation rebuilt from the session (no database).
 * @module
 */
import type { UIMessage, UIMessageChunk } from "ai";
import { WeftSession, type RunEndReason, type RunWriter, type SessionOptions } from "@weft/client";

import type { ChatRouteRequest, ChatRouteResponse } from "./transport.js";

/** Something that streams UI message chunks: `streamText(...)`'s result, or the stream itself. */
export type UIMessageSource = ReadableStream<UIMessageChunk> | { toUIMessageStream(): ReadableStream<UIMessageChunk> };

/**
 * Pipe a model's UI message stream into a run and end it: `complete`,
 * `error` (an `error` chunk or a failed stream, with its text), or — if
 * someone cancelled it — as it was ended. The `start` chunk gets the run's
 * message id, so the streamed message and the one the session keeps are
 * one. Stops reading as soon as the run is cancelled. Resolves with how it
 * ended.
 */
export async function pipeToRun(run: RunWriter, source: UIMessageSource): Promise<RunEndReason> {
  const stream = "toUIMessageStream" in source ? source.toUIMessageStream() : source;
  const reader = stream.getReader();
  const onAbort = () => void reader.cancel(run.signal.reason).catch(() => {});
  run.signal.addEventListener("abort", onAbort, { once: true });
  let errorText: string | undefined;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done || run.stopped) break;
      let chunk = value;
      if (chunk.type === "start") chunk = { ...chunk, messageId: run.messageId };
      if (chunk.type === "error") errorText = chunk.errorText;
      run.write(chunk as unknown as { type: string });
    }
  } catch (e) {
    if (!run.stopped) errorText = e instanceof Error ? e.message : String(e);
  } finally {
    run.signal.removeEventListener("abort", onAbort);
  }
  if (run.stopped) return run.end();
  return errorText === undefined ? run.end("complete") : run.end("error", errorText.slice(0, 4096));
}

/**
 * The conversation a run answers, from the session: every message up to
 * and including `answers`, without `replace` (a message being regenerated).
 */
export function sessionConversation(session: WeftSession, answers: string, replace?: string): UIMessage[] {
  const out: UIMessage[] = [];
  for (const m of session.messages) {
    if (m.id !== replace) out.push(m as unknown as UIMessage);
    if (m.id === answers) break;
  }
  return out;
}

/** What {@link ChatHandlerOptions.respond} gets. */
export interface RespondContext {
  /** The conversation, ending with the message to answer. */
  messages: UIMessage[];
  /** Aborted when the run is cancelled: hand it to `streamText({ abortSignal })`. */
  abortSignal: AbortSignal;
  /** The session (attached without following its log). */
  session: WeftSession;
  run: RunWriter;
  /** The request's body (the chat id, `answers`, and what the app's transport added); for a
   * run started by a wake-up, the same shape with `trigger: "submit-message"`. */
  request: ChatRouteRequest;
}

/** Options of {@link createChatHandler}. */
export interface ChatHandlerOptions {
  /** Weft's base URL. */
  url: string;
  /** The agent's client id (default `agent`). */
  client?: string;
  /** Headers for Weft (a token, later). */
  headers?: SessionOptions["headers"];
  fetch?: typeof globalThis.fetch;
  /** Run the model: return `streamText(...)` (or a UI message chunk stream). */
  respond: (ctx: RespondContext) => UIMessageSource | Promise<UIMessageSource>;
  /** Called with a run's failure (the run itself ends `error`). */
  onError?: (error: unknown, runId: string) => void;
}

/** A route handler (web `Request` in, `Response` out), plus a way to wait for its runs. */
export interface ChatHandler {
  (req: Request): Promise<Response>;
  /** Resolves when every run started so far has ended. */
  idle(): Promise<void>;
}

const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });

/**
 * A handler for the app's chat route (`POST /api/chat`, what
 * `WeftChatTransport` calls): it starts a run answering the request's
 * message, answers `{runId, messageId}` at once, and streams the model into
 * the run in the background.
 */
export function createChatHandler(opts: ChatHandlerOptions): ChatHandler {
  const runs = new RunSet();
  const handler = async (req: Request): Promise<Response> => {
    let body: ChatRouteRequest;
    try {
      body = (await req.json()) as ChatRouteRequest;
    } catch {
      return json(400, { error: "the body must be JSON" });
    }
    if (typeof body?.id !== "string" || typeof body.answers !== "string")
      return json(400, { error: "id (the session) and answers (the message id) must be strings" });
    let session: WeftSession;
    try {
      session = await attachForAgent(opts, body.id);
    } catch (e) {
      const status = (e as { status?: number }).status === 404 ? 404 : 502;
      return json(status, { error: `session '${body.id}': ${(e as Error).message}` });
    }
    if (!session.messages.some((m) => m.id === body.answers))
      return json(404, { error: `session '${body.id}' has no message '${body.answers}'` });
    const run = await runs.answer(opts, session, body);
    const answer: ChatRouteResponse = { runId: run.id, messageId: run.messageId };
    return json(200, answer);
  };
  return Object.assign(handler, { idle: () => runs.idle() });
}

/** The session as an agent sees it: attached once, not followed. */
export function attachForAgent(opts: Pick<ChatHandlerOptions, "url" | "client" | "headers" | "fetch">, id: string): Promise<WeftSession> {
  const sopts: SessionOptions = { url: opts.url, id, client: opts.client ?? "agent", live: false, create: false };
  if (opts.headers) sopts.headers = opts.headers;
  if (opts.fetch) sopts.fetch = opts.fetch;
  return WeftSession.attach(sopts);
}

/** The runs an agent has going: start one answering a request, wait for all. */
export class RunSet {
  readonly #running = new Set<Promise<unknown>>();

  /** Start a run answering `request.answers` and stream the model into it in the background. */
  async answer(opts: Pick<ChatHandlerOptions, "respond" | "onError">, session: WeftSession, request: ChatRouteRequest): Promise<RunWriter> {
    const messages = sessionConversation(session, request.answers, request.messageId);
    const run = await session.startRun(
      request.messageId ? { answers: request.answers, messageId: request.messageId } : { answers: request.answers },
    );
    const work = (async () => {
      try {
        const source = await opts.respond({ messages, abortSignal: run.signal, session, run, request });
        await pipeToRun(run, source);
      } catch (e) {
        opts.onError?.(e, run.id);
        await run.end("error", e instanceof Error ? e.message : String(e)).catch(() => {});
      }
    })();
    this.#running.add(work);
    void work.finally(() => this.#running.delete(work));
    return run;
  }

  /** Resolves when every run started so far has ended. */
  async idle(): Promise<void> {
    while (this.#running.size) await Promise.all([...this.#running]);
  }
}
