// The trip planner with Weft requiring capability tokens: the demo's server
// mints each person a token for their trip; two people plan together; the
// browser never sees the secret, and Weft refuses what has no token.
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { avatars, DemoServer, launch, shot, shownMessages, until, WeftServer } from "./harness.js";

const secret = randomBytes(32).toString("hex");
let weft: WeftServer;
let demo: DemoServer;
let browser: Browser;

beforeAll(async () => {
  weft = new WeftServer(["--presence-grace", "1s"]);
  const file = join(weft.dir, "secret");
  writeFileSync(file, secret + "\n");
  weft.args.push("--auth-secret-file", file);
  await weft.start();
  demo = new DemoServer(weft, { TRIP_MODEL_DELAY_MS: "10", WEFT_AUTH_SECRET_FILE: file });
  await demo.start();
  browser = await launch();
});

afterAll(async () => {
  await browser?.close();
  demo?.stop();
  await weft?.stop();
});

describe("trip planner with capability tokens", () => {
  it("two people plan with per-person tokens; the browser never sees the secret", async () => {
    const trip = `auth-${process.pid}`;
    const bodies: string[] = [];
    const pages: Page[] = [];
    for (let i = 0; i < 2; i++) {
      const ctx = await browser.newContext();
      const page = await ctx.newPage();
      page.on("response", (r) => {
        if (r.url().startsWith(demo.url)) void r.text().then((t) => bodies.push(t), () => {});
      });
      await page.goto(`${demo.url}/?trip=${trip}`);
      await page.waitForSelector("[data-testid=prompt]");
      pages.push(page);
    }
    const [alice, bob] = pages as [Page, Page];
    await until("two avatars", async () => (await avatars(alice)).length === 2 && (await avatars(bob)).length === 2);
    await alice.fill("[data-testid=prompt]", "Plan 1 day in Paris");
    await alice.click("[data-testid=send]");
    await until("bob to see the answer", async () =>
      (await shownMessages(bob)).some((m) => m.role === "assistant" && m.text.includes("Here is a 1-day plan for Paris")), 30_000);
    // the agent wrote as "agent", each person as themselves
    const people = await avatars(alice);
    const tokenRes = await fetch(`${demo.url}/api/token?person=${people[0]}&trip=${trip}`);
    const { token } = (await tokenRes.json()) as { token: string };
    const log = (await (await fetch(`${weft.url}/v1/session/${trip}/log?offset=-1`, { headers: { Authorization: `Bearer ${token}` } })).json()) as Array<{
      type?: string;
      headers: { client?: string };
    }>;
    const authors = new Set(log.filter((e) => e.type === "message" || e.type === "run").map((e) => e.headers.client));
    expect([...authors].sort()).toEqual([people.find((p) => authors.has(p)), "agent"].sort());
    expect(bodies.length).toBeGreaterThan(3);
    expect(bodies.some((b) => b.includes(secret))).toBe(false);
    // without a token Weft refuses; with another trip's token too
    expect((await fetch(`${weft.url}/v1/session/${trip}`)).status).toBe(401);
    const other = (await (await fetch(`${demo.url}/api/token?person=${people[0]}&trip=elsewhere`)).json()) as { token: string };
    expect((await fetch(`${weft.url}/v1/session/${trip}`, { headers: { Authorization: `Bearer ${other.token}` } })).status).toBe(403);
    await shot(bob, "auth-bob");
  });
});
