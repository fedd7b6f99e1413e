// Capability tokens for Weft (docs/auth.md), minted here so that the
// browser never sees the secret: HS256 JWTs, short-lived, one person each.
import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");

export class TokenMinter {
  readonly #secret: Buffer;

  /** The secret Weft runs with (`--auth-secret-file`); a final newline is ignored, as Weft does. */
  constructor(secretFile: string) {
    this.#secret = Buffer.from(readFileSync(secretFile, "utf8").replace(/[\r\n]+$/, ""), "utf8");
  }

  mint(sub: string, caps: Record<string, string[]>, ttlSeconds = 300): string {
    const input = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub, exp: Math.floor(Date.now() / 1000) + ttlSeconds, caps })}`;
    return `${input}.${createHmac("sha256", this.#secret).update(input).digest("base64url")}`;
  }

  /** A person's token: their trip, and nothing else. */
  person(personId: string, tripId: string): string {
    return this.mint(personId, { [`/v1/session/${tripId}`]: ["read", "write", "create", "presence", "objects", "cancel"] });
  }

  /** The agent's token: read and write every trip, and be woken by them (its subscription). */
  agent(): string {
    return this.mint("agent", {
      "/v1/session/**": ["read", "write", "objects", "subscribe"],
      "/v1/stream/__ds/subscriptions/trip-planner-agent": ["subscribe"],
    });
  }
}
