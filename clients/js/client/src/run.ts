/**
 * The agent's side of a run: stream UI message chunks into the session with
 * one request in flight (what the model produces meanwhile goes in the
 * next one), learn of a cancel, end it with a reason.
 * @module
 */
import { request, WeftError, type Transport } from "./http.js";
import type { RunEndReason, RunInfo, UIChunk } from "./types.js";

/** Why a run's signal aborted. */
export class RunEndedError extends Error {
  override name = "RunEndedError";
  constructor(
    /** How it ended: `cancelled` (by someone) or `error` (the lease ran out, say). */
    readonly status: RunEndReason,
    message: string,
  ) {
    super(message);
  }
}

/** Options of {@link RunWriter}. */
export interface RunWriterOptions {
  /** Send a heartbeat when no chunk was sent for this long (default 10 s; the server's lease is 30 s). */
  heartbeatMs?: number;
}

/**
 * A run this client owns. Made by `WeftSession.startRun`; chunks are written
 * with {@link RunWriter.write}, and {@link RunWriter.end} ends it.
 */
export class RunWriter {
  /** The run's id. */
  readonly id: string;
  /** The id its output will have as a message once it ends. */
  readonly messageId: string;
  readonly #t: Transport;
  readonly #path: string;
  readonly #abort = new AbortController();
  #queue: UIChunk[] = [];
  #inFlight: Promise<void> | null = null;
  #error: unknown = null;
  #ended = false;
  #heartbeat: ReturnType<typeof setInterval> | null = null;
  #lastSend = Date.now();
  #seq = 0;

  /** @internal */
  constructor(t: Transport, sessionPath: string, info: RunInfo, opts: RunWriterOptions = {}) {
    this.#t = t;
    this.id = info.id;
    this.messageId = info.message_id;
    this.#path = `${sessionPath}/runs/${encodeURIComponent(info.id)}`;
    const every = opts.heartbeatMs ?? 10_000;
    this.#heartbeat = setInterval(() => {
      if (Date.now() - this.#lastSend >= every && !this.#inFlight) void this.#beat();
    }, Math.max(250, every / 2));
    (this.#heartbeat as { unref?: () => void }).unref?.();
  }

  /**
   * Aborted when the run ends other than by {@link RunWriter.end}: someone
   * cancelled it (seen on the session's log, or answered 409 to a chunk), or
   * the server ended it. Hand it to the model call (`streamText({abortSignal})`)
   * so that a Stop really stops the model. Its reason is a {@link RunEndedError}.
   */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /** Whether the run was ended by someone else (the signal aborted). */
  get stopped(): boolean {
    return this.#abort.signal.aborted;
  }

  /**
   * Queue chunks for the session. Returns at once: if no request is in
   * flight they are sent now, else with everything queued when it returns.
   * A batch that fails on the network is sent again (for up to 30 s) and
   * applied once. Chunks written after the run was stopped are dropped.
   */
  write(...chunks: UIChunk[]): void {
    if (this.#ended || this.stopped) return;
    this.#queue.push(...chunks);
    if (!this.#inFlight) {
      this.#error = null;
      this.#inFlight = this.#pump();
    }
  }

  /**
   * Resolves once every chunk written so far is durable in the session.
   * After a failed write it sends the failed batch again (same number: the
   * server applies it once); rejects if that fails too.
   */
  async flush(): Promise<void> {
    if (this.#queue.length && !this.#inFlight && !this.stopped) {
      this.#error = null;
      this.#inFlight = this.#pump();
    }
    while (this.#inFlight) await this.#inFlight;
    if (this.#error && !this.stopped) throw this.#error;
  }

  /**
   * Flush, then end the run with `reason` (default `complete`). If it was
   * already ended by someone else, resolves with that status instead.
   */
  async end(reason: RunEndReason = "complete", error?: string): Promise<RunEndReason> {
    try {
      await this.flush();
    } catch (e) {
      // chunks the session never got: the run did not complete
      if (reason === "complete") {
        reason = "error";
        error = `chunks were not stored: ${(e as Error).message}`.slice(0, 4096);
      }
    }
    this.#stopHeartbeat();
    if (this.stopped) return (this.#abort.signal.reason as RunEndedError).status;
    this.#ended = true;
    try {
      const body: { reason: RunEndReason; error?: string } = { reason };
      if (error !== undefined) body.error = error;
      await request(this.#t, "POST", `${this.#path}/end`, body, { retryMs: 10_000 });
      return reason;
    } catch (e) {
      if (e instanceof WeftError && e.status === 409) return this.#endedBySomeone(e.message);
      throw e;
    }
  }

  /** @internal The session's log shows the run ended. */
  notifyEnded(info: RunInfo): void {
    if (this.#ended || this.stopped || info.status === "running") return;
    const why = info.status === "cancelled" ? `cancelled by ${info.cancelled_by ?? "someone"}` : (info.error ?? info.status);
    this.#abort.abort(new RunEndedError(info.status, `run ${this.id} ended: ${why}`));
    this.#stopHeartbeat();
  }

  #endedBySomeone(message: string): RunEndReason {
    const status: RunEndReason = /\(error\)/.test(message) ? "error" : /\(complete\)/.test(message) ? "complete" : "cancelled";
    if (!this.stopped) this.#abort.abort(new RunEndedError(status, message));
    this.#stopHeartbeat();
    return status;
  }

  #stopHeartbeat(): void {
    if (this.#heartbeat) clearInterval(this.#heartbeat);
    this.#heartbeat = null;
  }

  async #pump(): Promise<void> {
    try {
      while (this.#queue.length && !this.stopped) {
        const chunks = this.#queue;
        this.#queue = [];
        this.#lastSend = Date.now();
        try {
          // Numbered, so that a retry after a lost answer (or a restart of
          // Weft) applies once.
          await request(this.#t, "POST", `${this.#path}/chunks`, { seq: this.#seq, chunks }, { retryMs: 30_000 });
          this.#seq++;
        } catch (e) {
          if (e instanceof WeftError && e.status === 409 && /run already ended/.test(e.message)) {
            this.#endedBySomeone(e.message);
          } else {
            // Unknown whether it was stored: keep the batch (same number)
            // ahead of anything newer; flush() or the next write sends it again.
            this.#error = e;
            this.#queue = [...chunks, ...this.#queue];
            break;
          }
        }
      }
    } finally {
      this.#inFlight = null;
    }
  }

  async #beat(): Promise<void> {
    this.#lastSend = Date.now();
    try {
      await request(this.#t, "POST", `${this.#path}/heartbeat`);
    } catch (e) {
      if (e instanceof WeftError && e.status === 409) this.#endedBySomeone(e.message);
    }
  }
}
