/**
 * Requests to Weft's session routes: JSON in, JSON out, errors as
 * {@link WeftError} with the server's message.
 * @module
 */

/** A header value, or a function evaluated per request (a fresh token, say). */
export type HeaderValue = string | (() => string | Promise<string>);

/** A request Weft answered with an error status. */
export class WeftError extends Error {
  override name = "WeftError";
  constructor(
    /** The HTTP status (400, 404, 409, 413, ...). */
    readonly status: number,
    /** The server's message (`{"error": ...}`). */
    message: string,
    /** The request, as "METHOD path". */
    readonly request: string,
  ) {
    super(`${request}: ${status} ${message}`);
  }
}

/**
 * A capability token (docs/auth.md), or a function that fetches one. A
 * fetched token is kept until a minute before its `exp`, then fetched again;
 * a 401 fetches it again at once.
 */
export type TokenSource = string | (() => string | Promise<string>);

/** Keeps the current token of a {@link TokenSource}. */
export class Tokens {
  #source: TokenSource;
  #token: string | null = null;
  #refreshAt = 0;
  #pending: Promise<string> | null = null;

  constructor(source: TokenSource) {
    this.#source = source;
  }

  /** The token to send now. */
  async get(): Promise<string> {
    if (typeof this.#source === "string") return this.#source;
    if (this.#token && Date.now() < this.#refreshAt) return this.#token;
    if (!this.#pending) {
      const fetching = (async () => (this.#source as () => string | Promise<string>)())();
      this.#pending = fetching.then(
        (t) => {
          // fetched again a minute before exp, or halfway for a short-lived one
          const exp = expiryOf(t);
          this.#token = t;
          this.#refreshAt = exp - Math.min(60_000, Math.max(0, (exp - Date.now()) / 2));
          this.#pending = null;
          return t;
        },
        (e) => {
          this.#pending = null;
          throw e;
        },
      );
    }
    return this.#pending;
  }

  /** The server refused the token: fetch a new one next time. */
  invalidate(): void {
    this.#token = null;
  }

  /** Whether a refused token can be replaced by fetching again. */
  get refreshable(): boolean {
    return typeof this.#source === "function";
  }
}

/** A JWT's exp in ms (0 if it has none: fetched again every time). */
function expiryOf(token: string): number {
  try {
    const part = token.split(".")[1] ?? "";
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/"));
    const exp = (JSON.parse(json) as { exp?: unknown }).exp;
    return typeof exp === "number" ? exp * 1000 : 0;
  } catch {
    return 0;
  }
}

/** How a session client reaches Weft. */
export interface Transport {
  /** Weft's base URL, e.g. `http://localhost:4437`. */
  url: string;
  /** This participant's client id, sent as the `Weft-Client` header. */
  client: string;
  fetch: typeof globalThis.fetch;
  headers: Record<string, HeaderValue>;
  /** Capability tokens, when Weft requires them. */
  tokens?: Tokens;
}

export async function resolveHeaders(t: Transport): Promise<Record<string, string>> {
  const out: Record<string, string> = { "Weft-Client": t.client };
  for (const [k, v] of Object.entries(t.headers)) out[k] = typeof v === "function" ? await v() : v;
  if (t.tokens) out.Authorization = `Bearer ${await t.tokens.get()}`;
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * One request to `path` (under the base URL). Network failures and 503 are
 * retried with backoff for `retryMs` when the request is safe to repeat
 * (idempotent by its id); other errors throw {@link WeftError}.
 */
export async function request<T>(
  t: Transport,
  method: string,
  path: string,
  body?: unknown,
  opts: { retryMs?: number; signal?: AbortSignal; okStatuses?: number[] } = {},
): Promise<{ status: number; body: T }> {
  const deadline = Date.now() + (opts.retryMs ?? 0);
  let delay = 50;
  let refreshed = false;
  for (;;) {
    let res: Response;
    let text: string;
    try {
      const headers = await resolveHeaders(t);
      if (body !== undefined) headers["Content-Type"] = "application/json";
      res = await t.fetch(t.url + path, {
        method,
        headers,
        body: body === undefined ? null : JSON.stringify(body),
        signal: opts.signal ?? null,
      });
      text = await res.text(); // a connection lost while reading the answer is retried too
    } catch (e) {
      if (opts.signal?.aborted || Date.now() + delay > deadline) throw e;
      await sleep(delay);
      delay = Math.min(delay * 2, 2000);
      continue;
    }
    if (res.status === 401 && t.tokens?.refreshable && !refreshed) {
      refreshed = true; // an expired or revoked token: fetch a new one, once
      t.tokens.invalidate();
      continue;
    }
    if (res.status === 503 && Date.now() + delay <= deadline) {
      await sleep(delay);
      delay = Math.min(delay * 2, 2000);
      continue;
    }
    let parsed: unknown = undefined;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    if (!res.ok && !(opts.okStatuses ?? []).includes(res.status)) {
      const msg = (parsed as { error?: string } | undefined)?.error ?? (text.trim() || res.statusText);
      throw new WeftError(res.status, msg, `${method} ${path}`);
    }
    return { status: res.status, body: parsed as T };
  }
}
