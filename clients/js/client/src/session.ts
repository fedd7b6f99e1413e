/**
 * A client of one Weft session: attach (its state and the log offset it
 * reflects, in one request), then follow its log live over one SSE
 * connection (through `@durable-streams/client`), resuming from the last
 * offset after a network failure and attaching again when the log was
 * compacted past it. Writes: messages, runs, object batches (applied
 * locally at once and reconciled by the log), presence.
 * @module
 */
import { FetchError, stream } from "@durable-streams/client";

import { request, Tokens, WeftError, type HeaderValue, type TokenSource, type Transport } from "./http.js";
import { applyOps, ObjectOpError } from "./objects.js";
import { RunWriter, type RunWriterOptions } from "./run.js";
import type {
  AttachSnapshot,
  ChangeEvent,
  Json,
  LogEvent,
  ObjectOp,
  PresenceMember,
  RunEndReason,
  RunInfo,
  SessionMessage,
  SessionState,
  UIChunk,
} from "./types.js";

/** Options of {@link WeftSession.attach}. */
export interface SessionOptions {
  /** Weft's base URL, e.g. `http://localhost:4437`. */
  url: string;
  /** The session id: 1-128 of `A-Z a-z 0-9 - _ . ~`. */
  id: string;
  /** Who this participant is (a person's or an agent's client id). */
  client: string;
  /** Create the session if it does not exist (default true). */
  create?: boolean;
  /** When creating: delete the session after this many seconds unused. */
  ttlSeconds?: number;
  /** Follow the log live (default true). An agent that only writes may pass false. */
  live?: boolean;
  /** A fetch to use instead of the global one. */
  fetch?: typeof globalThis.fetch;
  /** Extra headers for every request; a function is called per request. */
  headers?: Record<string, HeaderValue>;
  /**
   * A capability token, or a function that fetches one (called again a
   * minute before the token's `exp`, and after a 401): when Weft runs with
   * tokens, the session's identity is the token's subject.
   */
  token?: TokenSource;
  /** Called when following the log fails in a way it cannot recover from by itself. */
  onError?: (error: Error) => void;
}

/** What {@link WeftSession.watchRun} calls. */
export interface RunWatcher {
  /** New chunks of the run, in order (first: everything so far). */
  onChunks?: (chunks: UIChunk[]) => void;
  /** The run ended (also called at once if it already had). */
  onEnd?: (run: RunInfo) => void;
}

type Tables = { [K in keyof SessionState]: Map<string, SessionState[K][string]> };

const TYPES: Array<keyof SessionState> = ["message", "run", "chunk", "object", "presence"];

function tablesOf(state: SessionState): Tables {
  const t = {} as Record<string, Map<string, unknown>>;
  for (const type of TYPES) t[type] = new Map(Object.entries(state[type] ?? {}));
  return t as Tables;
}

function emptyTables(): Tables {
  return tablesOf({ message: {}, run: {}, chunk: {}, object: {}, presence: {} });
}

/** A random id with a prefix (messages, runs, batches). */
export function newId(prefix: string): string {
  const bytes = new Uint8Array(12);
  globalThis.crypto.getRandomValues(bytes);
  return prefix + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const isControl = (ev: LogEvent): ev is Extract<LogEvent, { headers: { control: string } }> =>
  !("type" in ev) && typeof (ev.headers as { control?: unknown }).control === "string";

/**
 * One session, attached. Read its state with the getters; {@link subscribe}
 * to hear of every change.
 */
export class WeftSession {
  /** The session id. */
  readonly id: string;
  /** This participant's client id. */
  readonly client: string;
  readonly #t: Transport;
  readonly #path: string;
  readonly #opts: SessionOptions;
  #tables: Tables = emptyTables();
  #output = new Map<string, UIChunk[]>();
  #offset = "-1";
  #pending: Array<{ batch: string; ops: ObjectOp[] }> = [];
  #objectsView: Record<string, Json> | null = null;
  #snapshot: Tables | null = null;
  #listeners = new Set<() => void>();
  #eventListeners = new Set<(ev: ChangeEvent) => void>();
  #runWatchers = new Map<string, Set<RunWatcher>>();
  #writers = new Map<string, RunWriter>();
  #offsetWaiters: Array<{ offset: string; resolve: () => void }> = [];
  #abort = new AbortController();
  #following: Promise<void> | null = null;
  #connected = false;
  #version = 0;

  private constructor(opts: SessionOptions) {
    this.id = opts.id;
    this.client = opts.client;
    this.#opts = opts;
    this.#path = `/v1/session/${encodeURIComponent(opts.id)}`;
    this.#t = {
      url: opts.url.replace(/\/+$/, ""),
      client: opts.client,
      fetch: opts.fetch ?? ((...a: Parameters<typeof fetch>) => globalThis.fetch(...a)),
      headers: opts.headers ?? {},
    };
    if (opts.token !== undefined) this.#t.tokens = new Tokens(opts.token);
  }

  /**
   * Attach to a session (creating it unless `create: false`): one request
   * for its state, then (unless `live: false`) its log followed live from
   * that state's offset — no gap, no duplicate.
   */
  static async attach(opts: SessionOptions): Promise<WeftSession> {
    const s = new WeftSession(opts);
    if (opts.create !== false) {
      const headers: Record<string, HeaderValue> = {};
      if (opts.ttlSeconds !== undefined) headers["Stream-TTL"] = String(opts.ttlSeconds);
      await request({ ...s.#t, headers: { ...s.#t.headers, ...headers } }, "PUT", s.#path, undefined, { retryMs: 5000 });
    }
    await s.#attach();
    if (opts.live !== false) s.#following = s.#follow();
    return s;
  }

  // --- reading ---

  /** The log offset the state reflects. */
  get offset(): string {
    return this.#offset;
  }

  /** Counts changes of the state: a cheap snapshot for `useSyncExternalStore`. */
  get version(): number {
    return this.#version;
  }

  /** Whether the live log connection is up (false while reconnecting). */
  get connected(): boolean {
    return this.#connected;
  }

  /** The conversation, in log order. */
  get messages(): SessionMessage[] {
    return [...this.#tables.message.values()];
  }

  /** Every run, in the order they started. */
  get runs(): RunInfo[] {
    return [...this.#tables.run.values()];
  }

  /** A run by id. */
  run(id: string): RunInfo | undefined {
    return this.#tables.run.get(id);
  }

  /** The runs still going. */
  get activeRuns(): RunInfo[] {
    return this.runs.filter((r) => r.status === "running");
  }

  /** Every chunk so far of a run still going (empty once it ended: its message holds it). */
  output(runId: string): UIChunk[] {
    return [...(this.#output.get(runId) ?? [])];
  }

  /** The shared objects: the log's values with this client's unconfirmed batches applied on top. */
  get objects(): Readonly<Record<string, Json>> {
    if (!this.#objectsView) {
      let view: Record<string, Json> = Object.fromEntries(this.#tables.object);
      for (const p of this.#pending) {
        try {
          view = applyOps(view, structuredClone(p.ops));
        } catch {
          // the log moved under it; the server's answer will settle it
        }
      }
      this.#objectsView = view;
    }
    return this.#objectsView;
  }

  /** One shared object, or undefined. */
  object<T extends Json = Json>(name: string): T | undefined {
    return this.objects[name] as T | undefined;
  }

  /** Who is here: one member per person. */
  get presence(): PresenceMember[] {
    return [...this.#tables.presence.values()];
  }

  /** The whole state, as the log materialises it (objects without pending batches). */
  get state(): SessionState {
    const out = {} as Record<string, unknown>;
    for (const type of TYPES) out[type] = Object.fromEntries(this.#tables[type]);
    return out as unknown as SessionState;
  }

  /** Call `listener` after every change of the state (a batch of log events, a local batch). Returns an unsubscribe. */
  subscribe(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Call `listener` with every change event the log brings. Returns an unsubscribe. */
  onEvent(listener: (ev: ChangeEvent) => void): () => void {
    this.#eventListeners.add(listener);
    return () => this.#eventListeners.delete(listener);
  }

  /**
   * Follow a run's output: `onChunks` gets everything so far at once, then
   * each new batch; `onEnd` when it ends. Returns an unsubscribe.
   */
  watchRun(runId: string, watcher: RunWatcher): () => void {
    const run = this.#tables.run.get(runId);
    const sofar = this.#output.get(runId);
    if (sofar?.length) watcher.onChunks?.([...sofar]);
    if (run && run.status !== "running") {
      watcher.onEnd?.(run);
      return () => {};
    }
    let set = this.#runWatchers.get(runId);
    if (!set) this.#runWatchers.set(runId, (set = new Set()));
    set.add(watcher);
    return () => {
      set.delete(watcher);
      if (!set.size) this.#runWatchers.delete(runId);
    };
  }

  /**
   * A run's output as a stream of chunks: everything so far, then live,
   * closing when the run ends. Aborting `signal` only stops this reader.
   */
  runChunks(runId: string, signal?: AbortSignal): ReadableStream<UIChunk> {
    let stop = () => {};
    return new ReadableStream<UIChunk>({
      start: (controller) => {
        let closed = false;
        const close = () => {
          if (closed) return;
          closed = true;
          stop();
          controller.close();
        };
        stop = this.watchRun(runId, {
          onChunks: (chunks) => {
            if (!closed) for (const c of chunks) controller.enqueue(c);
          },
          onEnd: () => queueMicrotask(close),
        });
        if (signal?.aborted) close();
        signal?.addEventListener("abort", close, { once: true });
      },
      cancel: () => stop(),
    });
  }

  /** Resolves once the state reflects the log up to `offset` (an offset a write answered). */
  async whenOffset(offset: string): Promise<void> {
    if (this.#offset >= offset || this.#opts.live === false) return;
    await new Promise<void>((resolve) => this.#offsetWaiters.push({ offset, resolve }));
  }

  // --- writing ---

  /** Append a message (its id is made if absent). A retry of the same id and body applies once. */
  async sendMessage(message: Omit<SessionMessage, "id"> & { id?: string }): Promise<{ id: string; offset: string }> {
    const m = { ...message, id: message.id ?? newId("msg_") };
    const { body } = await request<{ id: string; offset: string }>(this.#t, "POST", `${this.#path}/messages`, m, {
      retryMs: 10_000,
    });
    return body;
  }

  /**
   * Start a run that this client owns and return its writer. `answers` is the
   * message it answers; `messageId` the id its output will have.
   */
  async startRun(
    opts: { id?: string; answers?: string; messageId?: string; metadata?: Json } & RunWriterOptions = {},
  ): Promise<RunWriter> {
    const body: Record<string, Json> = { id: opts.id ?? newId("run_") };
    if (opts.answers !== undefined) body.answers = opts.answers;
    if (opts.messageId !== undefined) body.message_id = opts.messageId;
    if (opts.metadata !== undefined) body.metadata = opts.metadata;
    const { body: answer } = await request<{ id: string; message_id: string }>(this.#t, "POST", `${this.#path}/runs`, body);
    const info: RunInfo = this.#tables.run.get(answer.id) ?? {
      id: answer.id,
      owner: this.client,
      status: "running",
      answers: opts.answers ?? null,
      message_id: answer.message_id,
      started_at: new Date().toISOString(),
    };
    const w = new RunWriter(this.#t, this.#path, { ...info, message_id: answer.message_id }, opts);
    this.#writers.set(answer.id, w);
    w.signal.addEventListener("abort", () => this.#writers.delete(answer.id), { once: true });
    const seen = this.#tables.run.get(answer.id);
    if (seen) w.notifyEnded(seen);
    return w;
  }

  /** Stop a run (anyone may). Resolves with its status; an already ended run resolves with how it ended. */
  async cancelRun(runId: string): Promise<RunEndReason> {
    try {
      await request(this.#t, "POST", `${this.#path}/runs/${encodeURIComponent(runId)}/cancel`);
      return "cancelled";
    } catch (e) {
      if (e instanceof WeftError && e.status === 409) {
        const m = /\((complete|cancelled|error)\)/.exec(e.message);
        return (m?.[1] as RunEndReason | undefined) ?? "cancelled";
      }
      throw e;
    }
  }

  /**
   * Apply a batch of object ops: at once to this client's view (so the UI
   * shows it), and by the server in log order (where it is the truth). The
   * view reconciles when the log carries the batch. Throws
   * {@link ObjectOpError} (nothing sent) for a batch the server would
   * refuse, {@link WeftError} if the server refused it.
   */
  async applyOps(ops: ObjectOp[], opts: { batch?: string } = {}): Promise<{ batch: string; offset: string }> {
    const batch = opts.batch ?? newId(`${this.client}-`.slice(0, 64));
    const mine = structuredClone(ops);
    applyOps(this.objects, mine); // throws ObjectOpError; fills in list item ids
    const entry = { batch, ops: mine };
    this.#pending.push(entry);
    this.#changed();
    try {
      const { body } = await request<{ offset: string }>(this.#t, "POST", `${this.#path}/objects`, { batch, ops: mine }, {
        retryMs: 10_000,
      });
      if (this.#opts.live === false) this.#settle(batch);
      return { batch, offset: body.offset };
    } catch (e) {
      this.#settle(batch);
      throw e;
    }
  }

  /** Enter the session's presence with `data` (a name, a color, a cursor...). */
  async enter(data: Json = {}): Promise<void> {
    await this.#presence("enter", data);
  }

  /** Change this member's presence data. */
  async updatePresence(data: Json): Promise<void> {
    await this.#presence("update", data);
  }

  /** Leave at once (otherwise a member leaves a grace period after their last connection closed). */
  async leave(): Promise<void> {
    await this.#presence("leave");
  }

  /** Stop following the log and release the connection. Writes in flight finish. */
  close(): void {
    this.#abort.abort();
    this.#connected = false;
    for (const w of this.#offsetWaiters) w.resolve();
    this.#offsetWaiters = [];
  }

  /** Resolves when the follower stopped (after {@link close}). */
  get closed(): Promise<void> {
    return this.#following ?? Promise.resolve();
  }

  // --- internals ---

  async #presence(action: string, data?: Json): Promise<void> {
    const body: Record<string, Json> = { action };
    if (data !== undefined) body.data = data;
    await request(this.#t, "POST", `${this.#path}/presence`, body, { retryMs: 10_000 });
  }

  #settle(batch: string): void {
    const before = this.#pending.length;
    this.#pending = this.#pending.filter((p) => p.batch !== batch);
    if (this.#pending.length !== before) this.#changed();
  }

  #changed(): void {
    this.#version++;
    this.#objectsView = null;
    for (const l of this.#listeners) l();
  }

  async #attach(): Promise<void> {
    const { body } = await request<AttachSnapshot>(this.#t, "GET", this.#path, undefined, { retryMs: 10_000 });
    const oldOutput = this.#output;
    this.#tables = tablesOf(body.state);
    this.#output = new Map(Object.entries(body.output ?? {}));
    this.#offset = body.offset;
    this.#snapshot = null;
    // Watchers of runs hear what they missed.
    for (const [runId, set] of this.#runWatchers) {
      const had = oldOutput.get(runId)?.length ?? 0;
      const now = this.#output.get(runId) ?? [];
      if (now.length > had) for (const w of set) w.onChunks?.(now.slice(had));
      const run = this.#tables.run.get(runId);
      if (run && run.status !== "running") this.#runEnded(run);
    }
    for (const w of this.#writers.values()) {
      const run = this.#tables.run.get(w.id);
      if (run) w.notifyEnded(run);
    }
    this.#reached();
    this.#changed();
  }

  async #follow(): Promise<void> {
    const signal = this.#abort.signal;
    let backoff = 0; // after consecutive failures: 0.25 s doubling to 30 s
    const pause = async () => {
      backoff = Math.min(backoff ? backoff * 2 : 250, 30_000);
      await new Promise((r) => setTimeout(r, backoff));
    };
    while (!signal.aborted) {
      try {
        const res = await stream<LogEvent>({
          url: `${this.#t.url}${this.#path}/log`,
          offset: this.#offset,
          live: "sse",
          json: true,
          params: { client: this.client },
          headers: this.#logHeaders(),
          fetch: this.#t.fetch,
          signal,
          backoffOptions: { initialDelay: 100, maxDelay: 3000, multiplier: 1.5, maxRetries: Infinity },
          warnOnHttp: false,
        });
        this.#connected = true;
        res.subscribeJson((batch) => {
          backoff = 0;
          for (const ev of batch.items) this.#take(ev);
          this.#offset = batch.offset;
          this.#reached();
          this.#changed();
        });
        await res.closed;
      } catch (e) {
        this.#connected = false;
        if (signal.aborted) return;
        if (e instanceof FetchError && e.status === 410) {
          // compacted past our offset: attach again
          try {
            await this.#attach();
          } catch (err) {
            this.#opts.onError?.(err as Error);
            await pause();
          }
          continue;
        }
        if (e instanceof FetchError && e.status === 401 && this.#t.tokens?.refreshable) {
          this.#t.tokens.invalidate(); // expired or revoked: the next connection fetches a new one
          this.#opts.onError?.(e);
          await pause();
          continue;
        }
        if (e instanceof FetchError && (e.status === 404 || e.status === 403 || e.status === 401)) {
          // gone, or not ours to read: retrying would not change that
          const why = e.status === 404 ? "session not found (deleted?)" : `not allowed to read the session (${e.status})`;
          this.#connected = false;
          this.#opts.onError?.(new WeftError(e.status, why, `GET ${this.#path}/log`));
          return;
        }
        this.#opts.onError?.(e as Error);
        await pause();
      }
    }
  }

  /** Headers of the log's requests: a fresh token for each (re)connection. */
  #logHeaders(): Record<string, HeaderValue> {
    const tokens = this.#t.tokens;
    if (!tokens) return this.#t.headers;
    return { ...this.#t.headers, Authorization: async () => `Bearer ${await tokens.get()}` };
  }

  #reached(): void {
    const keep = [];
    for (const w of this.#offsetWaiters) {
      if (this.#offset >= w.offset) w.resolve();
      else keep.push(w);
    }
    this.#offsetWaiters = keep;
  }

  #take(ev: LogEvent): void {
    if (isControl(ev)) {
      // A new generation of the log starts with the whole state; we were
      // caught up, so what follows until snapshot-end is what we have.
      if (ev.headers.control === "snapshot-start") this.#snapshot = emptyTables();
      else if (ev.headers.control === "snapshot-end" && this.#snapshot) {
        this.#tables = this.#snapshot;
        this.#snapshot = null;
      }
      return;
    }
    const target = this.#snapshot ?? this.#tables;
    const table = target[ev.type] as Map<string, unknown> | undefined;
    if (!table) return;
    if (ev.headers.operation === "delete") table.delete(ev.key);
    else table.set(ev.key, ev.value);
    if (this.#snapshot) return;
    if (ev.type === "object" && ev.headers.txid) {
      // batch ids are random: ours settle whoever the server says wrote them (a token's subject)
      this.#pending = this.#pending.filter((p) => p.batch !== ev.headers.txid);
    } else if (ev.type === "chunk" && ev.headers.operation !== "delete") {
      const batch = ev.value as { chunks: UIChunk[] };
      const out = this.#output.get(ev.key) ?? [];
      out.push(...batch.chunks);
      this.#output.set(ev.key, out);
      for (const w of this.#runWatchers.get(ev.key) ?? []) w.onChunks?.(batch.chunks);
    } else if (ev.type === "run") {
      const run = ev.value as RunInfo;
      if (run.status !== "running") {
        this.#output.delete(run.id);
        this.#runEnded(run);
        this.#writers.get(run.id)?.notifyEnded(run);
      }
    }
    for (const l of this.#eventListeners) l(ev as ChangeEvent);
  }

  #runEnded(run: RunInfo): void {
    const set = this.#runWatchers.get(run.id);
    if (!set) return;
    this.#runWatchers.delete(run.id);
    for (const w of set) w.onEnd?.(run);
  }
}

export { ObjectOpError };
