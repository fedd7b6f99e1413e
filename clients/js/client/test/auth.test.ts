// @weft/client with capability tokens, against the real weft binary run
// with --auth-secret-file: tokens from a function, refreshed before expiry
// and after a 401, across live reconnections.
import { createHmac, randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { WeftError, WeftSession } from "../src/index.js";
import { until, WeftServer } from "../../test-support/weft-server.js";

const secret = randomBytes(32).toString("hex");
let weft: WeftServer;
const open: WeftSession[] = [];

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
function token(sub: string, ttlSeconds: number, caps: Record<string, string[]>): string {
  const input = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub, exp: Math.floor(Date.now() / 1000) + ttlSeconds, caps })}`;
  return `${input}.${createHmac("sha256", secret).update(input).digest("base64url")}`;
}
const ALL = { "/v1/session/**": ["read", "write", "create", "presence", "objects", "cancel"] };

beforeAll(async () => {
  weft = new WeftServer();
  const file = join(weft.dir, "secret");
  writeFileSync(file, secret);
  weft.args.push("--auth-secret-file", file, "--auth-leeway", "0s", "--sse-max-duration", "1s");
  await weft.start();
});

afterAll(async () => {
  for (const s of open) s.close();
  await weft.stop();
});

describe("capability tokens", () => {
  it("refuses a session without a token (401)", async () => {
    const e = await WeftSession.attach({ url: weft.url, id: "t0", client: "x" }).catch((err) => err);
    expect(e).toBeInstanceOf(WeftError);
    expect((e as WeftError).status).toBe(401);
  });

  it("the identity is the token's subject; a refused token is fetched again", async () => {
    let calls = 0;
    const s = await WeftSession.attach({
      url: weft.url,
      id: "t1",
      client: "whoever",
      token: () => (++calls === 1 ? token("alice", -30, ALL) : token("alice", 600, ALL)),
    });
    open.push(s);
    expect(calls).toBe(2); // the expired one was refused, then refreshed
    const { offset } = await s.sendMessage({ role: "user", parts: [{ type: "text", text: "hi" }] });
    await s.whenOffset(offset);
    const seen: string[] = [];
    s.onEvent((ev) => seen.push(ev.headers.client ?? ""));
    await s.enter({ name: "A" });
    await until("the presence event", () => seen.length > 0);
    expect(seen[0]).toBe("alice");
    expect(s.presence.map((m) => m.client)).toEqual(["alice"]);
  });

  it("a live follower keeps following across reconnections with short-lived tokens", async () => {
    let fetched = 0;
    const reader = await WeftSession.attach({
      url: weft.url,
      id: "t2",
      client: "bob",
      token: () => (fetched++, token("bob", 3, ALL)),
    });
    open.push(reader);
    const writer = await WeftSession.attach({ url: weft.url, id: "t2", client: "w", live: false, token: token("w", 600, ALL) });
    const ids: string[] = [];
    const t0 = Date.now();
    while (Date.now() - t0 < 4000) {
      ids.push((await writer.sendMessage({ role: "user", parts: [] })).id);
      await until("the reader to see it", () => reader.messages.some((m) => m.id === ids.at(-1)), 5000);
    }
    expect(reader.messages.map((m) => m.id)).toEqual(ids);
    // the first token expired after 3 s: reconnections (the server closes SSE
    // after 1 s) went on with tokens fetched again halfway through their life
    expect(fetched).toBeGreaterThanOrEqual(2);
  });

  it("a token for another session is refused with 403", async () => {
    const e = await WeftSession.attach({
      url: weft.url,
      id: "t3",
      client: "c",
      token: token("c", 600, { "/v1/session/t1": ["read", "create"] }),
    }).catch((err) => err);
    expect((e as WeftError).status).toBe(403);
    expect((e as WeftError).message).toContain("lacks the 'create' capability on /v1/session/t3");
  });
});
