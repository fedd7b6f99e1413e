/**
 * Agents woken by Weft: a subscription (Durable Streams webhooks) tells the
 * agent's server that a person posted a message in a session, and the
 * agent answers it — whichever client posted it (a browser, `curl`,
 * another agent), with no route for the browser to call. Weft signs every
 * webhook (Ed25519, keys at its JWKS); the handler verifies the signature,
 * starts a run for each session whose last message is a person's and has no
 * run answering it, and answers `{"done": true}` so Weft acks the wake. A
 * wake that fails (the handler throws, the server is down) is retried by
 * Weft, and a message answered already is not answered twice.
 * @module
 */
import { WeftError, type SessionOptions, type WeftSession } from "@weft/client";

import { attachForAgent, RunSet, type ChatHandler, type ChatHandlerOptions } from "./agent.js";
import type { ChatRouteRequest } from "./transport.js";

/** One stream (here: a session) of a wake-up, as Weft sends it. */
export interface WakeStream {
  /** `/v1/session/<id>` for a session's messages. */
  path: string;
  link_type: "glob" | "explicit";
  acked_offset: string;
  tail_offset: string;
  has_pending: boolean;
}

/** A webhook's body (PROTOCOL.md section 7.1). */
export interface Wake {
  subscription_id: string;
  wake_id: string;
  generation: number;
  streams: WakeStream[];
  callback_url: string;
  callback_token: string;
}

/** Options of {@link createWakeHandler}: those of a chat handler, and whether to verify signatures. */
export interface WakeHandlerOptions extends ChatHandlerOptions {
  /** Check each webhook's `Webhook-Signature` against Weft's JWKS (default true). */
  verify?: boolean;
  /** Largest age of a signature, in seconds (default 300). */
  maxAgeSeconds?: number;
}

const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });

const SESSION_PATH = /^\/v1\/session\/([A-Za-z0-9_.~-]{1,128})$/;

function fromB64url(s: string): Uint8Array<ArrayBuffer> {
  const bin = atob(s.replace(/-/g, "+").replace(/_/g, "/"));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** Verifies webhook signatures with the keys of Weft's JWKS (fetched once per unknown key id). */
export class WebhookVerifier {
  readonly #jwksUrl: string;
  readonly #fetch: typeof globalThis.fetch;
  readonly #keys = new Map<string, CryptoKey>();

  constructor(weftUrl: string, fetchFn: typeof globalThis.fetch = globalThis.fetch) {
    this.#jwksUrl = `${weftUrl.replace(/\/+$/, "")}/v1/stream/__ds/jwks.json`;
    this.#fetch = fetchFn;
  }

  async #key(kid: string): Promise<CryptoKey | undefined> {
    if (!this.#keys.has(kid)) {
      const res = await this.#fetch(this.#jwksUrl);
      if (!res.ok) throw new Error(`${this.#jwksUrl}: ${res.status}`);
      const { keys } = (await res.json()) as { keys: (JsonWebKey & { kid: string })[] };
      for (const k of keys)
        if (k.kty === "OKP" && k.crv === "Ed25519")
          this.#keys.set(k.kid, await crypto.subtle.importKey("jwk", k, { name: "Ed25519" }, false, ["verify"]));
    }
    return this.#keys.get(kid);
  }

  /** Whether `header` (`t=<unix>,kid=<id>,ed25519=<sig>`) signs `body` and is at most maxAge seconds old. */
  async verify(body: string, header: string | null, maxAgeSeconds = 300): Promise<boolean> {
    const m = header?.match(/^t=(\d+),kid=([^,]+),ed25519=([A-Za-z0-9_-]+)$/);
    if (!m) return false;
    const [, t, kid, sig] = m as unknown as [string, string, string, string];
    if (Math.abs(Date.now() / 1000 - Number(t)) > maxAgeSeconds) return false;
    const key = await this.#key(kid);
    if (!key) return false;
    return crypto.subtle.verify({ name: "Ed25519" }, key, fromB64url(sig), new TextEncoder().encode(`${t}.${body}`));
  }
}

/**
 * A handler for the agent's webhook route (web `Request` in, `Response`
 * out): answers the sessions of each wake whose last message is a
 * person's and has no run yet, then `{"done": true}`.
 */
export function createWakeHandler(opts: WakeHandlerOptions): ChatHandler {
  const runs = new RunSet();
  const verifier = new WebhookVerifier(opts.url, opts.fetch);
  const handler = async (req: Request): Promise<Response> => {
    const raw = await req.text();
    if (opts.verify !== false && !(await verifier.verify(raw, req.headers.get("webhook-signature"), opts.maxAgeSeconds)))
      return json(401, { error: "the Webhook-Signature does not verify with Weft's keys" });
    let wake: Wake;
    try {
      wake = JSON.parse(raw) as Wake;
    } catch {
      return json(400, { error: "the body must be JSON" });
    }
    for (const s of wake.streams ?? []) {
      const id = s.has_pending ? SESSION_PATH.exec(s.path)?.[1] : undefined;
      if (!id) continue;
      let session: WeftSession;
      try {
        session = await attachForAgent(opts, id);
      } catch (e) {
        if (e instanceof WeftError && e.status === 404) continue; /* deleted since */
        throw e; /* Weft retries the wake */
      }
      const last = session.messages.at(-1);
      if (last?.role !== "user" || session.runs.some((r) => r.answers === last.id)) continue;
      const request: ChatRouteRequest = { id, trigger: "submit-message", answers: last.id, client: session.client };
      await runs.answer(opts, session, request);
    }
    return json(200, { done: true });
  };
  return Object.assign(handler, { idle: () => runs.idle() });
}

/** Options of {@link subscribeAgent}. */
export interface SubscribeAgentOptions {
  /** Weft's base URL. */
  url: string;
  /** The subscription's id (1-128 of `A-Z a-z 0-9 - _ . ~`). */
  id: string;
  /** Which sessions wake the agent: a glob over paths (default every session, `/v1/session/*`). */
  pattern?: string;
  /** The agent's webhook route (https, or http on loopback). */
  webhook: string;
  /** How long a wake may go unanswered before Weft wakes again (ms, default 30 s). */
  leaseTtlMs?: number;
  /** Headers for Weft (a token with `subscribe`). */
  headers?: SessionOptions["headers"];
  fetch?: typeof globalThis.fetch;
}

/**
 * Create the agent's subscription, or confirm it (idempotent: call it at
 * every start). A subscription of that id with another configuration is
 * replaced.
 */
export async function subscribeAgent(opts: SubscribeAgentOptions): Promise<void> {
  const f = opts.fetch ?? globalThis.fetch;
  const url = `${opts.url.replace(/\/+$/, "")}/v1/stream/__ds/subscriptions/${encodeURIComponent(opts.id)}`;
  const headers: Record<string, string> = { "Content-Type": "application/json" };
  for (const [k, v] of Object.entries(opts.headers ?? {})) headers[k] = typeof v === "function" ? await v() : v;
  const body = JSON.stringify({
    type: "webhook",
    pattern: opts.pattern ?? "/v1/session/*",
    webhook: { url: opts.webhook },
    lease_ttl_ms: opts.leaseTtlMs ?? 30_000,
    description: "agent wake-ups",
  });
  let res = await f(url, { method: "PUT", headers, body });
  if (res.status === 409) {
    await f(url, { method: "DELETE", headers });
    res = await f(url, { method: "PUT", headers, body });
  }
  if (!res.ok) throw new Error(`subscribe ${opts.id}: ${res.status} ${(await res.text()).slice(0, 300)}`);
}
