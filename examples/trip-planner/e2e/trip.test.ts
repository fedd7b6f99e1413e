// The trip planner in a real browser (Debian's chromium via playwright-core)
// against the real weft binary and the demo's server with the scripted
// model. Every wait is on a condition; each test saves screenshots.
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";

import { attach, avatars, DemoServer, itinerary, launch, shot, shownMessages, textOf, until, WeftServer } from "./harness.js";

let weft: WeftServer;
let demo: DemoServer;
let browser: Browser;
const contexts: BrowserContext[] = [];
let n = 0;

beforeAll(async () => {
  weft = new WeftServer(["--presence-grace", "1s"]);
  await weft.start();
  demo = new DemoServer(weft, { TRIP_MODEL_DELAY_MS: "25" });
  await demo.start();
  browser = await launch();
});

afterEach(async () => {
  while (contexts.length) await contexts.pop()?.close();
});

afterAll(async () => {
  await browser?.close();
  demo?.stop();
  await weft?.stop();
});

async function person(): Promise<BrowserContext> {
  const c = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  contexts.push(c);
  return c;
}

async function open(ctx: BrowserContext, trip: string): Promise<Page> {
  const page = await ctx.newPage();
  await page.goto(`${demo.url}/?trip=${trip}`);
  await page.waitForSelector("[data-testid=prompt]");
  return page;
}

async function ask(page: Page, text: string): Promise<void> {
  await page.fill("[data-testid=prompt]", text);
  await page.click("[data-testid=send]");
}

const trip = () => `e2e-${process.pid}-${++n}`;

/** The agent's finished answer, as Weft keeps it. */
async function finalAnswer(id: string): Promise<string> {
  return until("the run to end", async () => {
    const s = await attach(weft, id);
    const runs = Object.values(s.state.run);
    if (!runs.length || runs.some((r) => r.status === "running")) return "";
    const a = Object.values(s.state.message).filter((m) => m.role === "assistant").at(-1);
    return a ? textOf(a) : "";
  }, 30_000);
}

const assistantText = async (page: Page) => (await shownMessages(page)).filter((m) => m.role === "assistant").at(-1)?.text ?? "";

describe("trip planner", () => {
  it("refresh mid-stream: the answer continues where it was, nothing twice or lost, the model called once", async () => {
    const id = trip();
    const before = (await demo.stats()).turns;
    const page = await open(await person(), id);
    await ask(page, "Plan 3 days in Rome");
    await until("the answer to start streaming", async () => (await page.locator(".reasoning").count()) > 0);
    await shot(page, "refresh-before");
    await page.reload();
    await page.waitForSelector("[data-testid=prompt]");
    const final = await finalAnswer(id);
    expect(final).toContain("Here is a 3-day plan for Rome.");
    await until("the page to show the whole answer", async () => (await assistantText(page)) === final, 15_000);
    const shown = await shownMessages(page);
    expect(shown.map((m) => m.role)).toEqual(["user", "assistant"]);
    expect(shown[1]?.text).toBe(final);
    expect((await demo.stats()).turns - before).toBe(1);
    await until("the plan", async () => (await itinerary(page)).flat().length === 6);
    await shot(page, "refresh-after");
  });

  it("two tabs of one person: the same answer token by token, the same state, one avatar", async () => {
    const id = trip();
    const ctx = await person();
    const a = await open(ctx, id);
    const b = await open(ctx, id);
    await until("one avatar in each tab", async () => (await avatars(a)).length === 1 && (await avatars(b)).length === 1);
    await ask(a, "Plan 2 days in Paris");
    // tab b sees the answer grow, not only its end
    const partial = await until("tab b to show part of the answer", async () => {
      const t = await assistantText(b);
      return t.length > 0 && !t.includes("euros") ? t : "";
    }, 20_000);
    // someone else's message, posted while the answer streams, shows in the session's order
    // (and wakes the agent, which answers it too)
    const note = await fetch(`${weft.url}/v1/session/${id}/messages`, {
      method: "POST",
      headers: { "Weft-Client": "carol" },
      body: JSON.stringify({ id: "carol-1", role: "user", parts: [{ type: "text", text: "Carol here" }] }),
    });
    expect(note.status).toBe(201);
    await until("tab a to show carol's message", async () => (await shownMessages(a)).some((m) => m.id === "carol-1"));
    await until("both answers to end", async () => {
      const runs = Object.values((await attach(weft, id)).state.run);
      return runs.length === 2 && runs.every((r) => r.status !== "running");
    }, 30_000);
    const kept = (await attach(weft, id)).state;
    const runs = Object.values(kept.run);
    const first = runs.find((r) => r.answers !== "carol-1");
    expect(runs.some((r) => r.answers === "carol-1")).toBe(true);
    const firstAnswer = textOf(kept.message[first?.message_id ?? ""] ?? { parts: [] });
    expect(firstAnswer).toContain("Here is a 2-day plan for Paris.");
    expect(firstAnswer.startsWith(partial)).toBe(true);
    // Both tabs end up showing exactly what Weft kept, in its order.
    const want = JSON.stringify(Object.entries(kept.message).map(([mid, m]) => ({ role: m.role, id: mid, text: textOf(m) })));
    expect(Object.keys(kept.message).length).toBe(4);
    for (const p of [a, b]) await until("every kept message, in order", async () => JSON.stringify(await shownMessages(p)) === want, 15_000);
    const stops = Object.entries(kept.object).filter(([k]) => k.startsWith("day:")).reduce((n, [, v]) => n + (v as unknown[]).length, 0);
    await until("the same plan", async () => JSON.stringify(await itinerary(a)) === JSON.stringify(await itinerary(b)) && (await itinerary(a)).flat().length === stops);
    expect(await avatars(a)).toEqual(await avatars(b));
    expect((await avatars(a)).length).toBe(1);
    await shot(a, "two-tabs-a");
    await shot(b, "two-tabs-b");
  });

  it("two people see each other's messages and edits live; one leaves after the grace period", async () => {
    const id = trip();
    const alice = await open(await person(), id);
    const bob = await open(await person(), id);
    await until("two avatars", async () => (await avatars(alice)).length === 2 && (await avatars(bob)).length === 2, 20_000);
    await ask(bob, "Plan 1 day in Lisbon");
    await finalAnswer(id);
    await until("alice to see bob's message and the answer", async () => (await shownMessages(alice)).length === 2);
    expect((await shownMessages(alice))[0]?.text).toBe("Plan 1 day in Lisbon");
    await alice.fill("[data-testid=day-1] [data-testid=add-stop]", "Time Out Market");
    await alice.press("[data-testid=day-1] [data-testid=add-stop]", "Enter");
    await bob.click("[data-testid=budget-up]");
    await until("bob to see alice's stop", async () => (await itinerary(bob))[0]?.includes("Time Out Market"));
    const budget = (await attach(weft, id)).state.object.budget as number;
    await until("alice to see bob's budget", async () => Number(await alice.textContent("[data-testid=budget]")) === budget);
    await shot(alice, "two-people-alice");
    await bob.context().close();
    await until("bob's avatar to leave", async () => (await avatars(alice)).length === 1, 10_000);
    await shot(alice, "two-people-after-bob-left");
  });

  it("a message posted outside the page (as curl would) wakes the agent; the page shows its answer live", async () => {
    const id = trip();
    const page = await open(await person(), id);
    const before = (await demo.stats()).turns;
    const posted = await fetch(`${weft.url}/v1/session/${id}/messages`, {
      method: "POST",
      headers: { "Weft-Client": "curl-user" },
      body: JSON.stringify({ id: "from-curl", role: "user", parts: [{ type: "text", text: "Plan 1 day in Lisbon" }] }),
    });
    expect(posted.status).toBe(201);
    const final = await finalAnswer(id);
    expect(final).toContain("Here is a 1-day plan for Lisbon.");
    await until("the page to show the question and the answer", async () => {
      const shown = await shownMessages(page);
      return shown.length === 2 && shown[0]?.text === "Plan 1 day in Lisbon" && shown[1]?.text === final;
    }, 15_000);
    expect((await demo.stats()).turns - before).toBe(1);
    const run = Object.values((await attach(weft, id)).state.run)[0];
    expect(run?.answers).toBe("from-curl");
    expect(run?.owner).toBe("agent");
  });

  it("Stop in one tab cancels the run in every tab and stops the model", async () => {
    const id = trip();
    const alice = await open(await person(), id);
    const bob = await open(await person(), id);
    const before = await demo.stats();
    await ask(alice, "Plan 5 days in Tokyo");
    await until("bob to see the answer streaming", async () => (await bob.locator(".reasoning").count()) > 0, 20_000);
    await bob.click("[data-testid=stop]");
    await until("the run cancelled", async () => Object.values((await attach(weft, id)).state.run)[0]?.status === "cancelled");
    for (const p of [alice, bob]) await until("Send to come back", async () => (await p.locator("[data-testid=send]").count()) === 1);
    const after = await demo.stats();
    expect(after.aborted - before.aborted).toBeGreaterThanOrEqual(1);
    expect(after.partsAfterAbort).toBe(0);
    const run = Object.values((await attach(weft, id)).state.run)[0];
    expect(run?.cancelled_by).toBeTruthy();
    await shot(alice, "stop-alice");
    await shot(bob, "stop-bob");
  });

  it("concurrent edits: a person edits and reorders by hand while the agent adds stops; every edit survives", async () => {
    const id = trip();
    const alice = await open(await person(), id);
    const bob = await open(await person(), id);
    const day1 = "[data-testid=day-1]";
    await alice.fill(`${day1} [data-testid=add-stop]`, "My hotel");
    await alice.press(`${day1} [data-testid=add-stop]`, "Enter");
    await until("bob to see the hotel", async () => (await itinerary(bob))[0]?.includes("My hotel"));
    await ask(alice, "Plan 2 days in Rome");
    await until("the agent to be thinking", async () => (await alice.locator(".reasoning").count()) > 0);
    // by hand, while the agent works: add a stop, rename one
    await bob.fill(`${day1} [data-testid=add-stop]`, "Gelato");
    await bob.press(`${day1} [data-testid=add-stop]`, "Enter");
    const hotel = bob.locator(`${day1} [data-testid=stop-name]`).first();
    await hotel.fill("Hotel Artemide");
    await hotel.blur();
    await until("the agent's stops", async () => (await itinerary(alice))[0]?.includes("Colosseum"), 30_000);
    // and reorder: the last stop of day 1 to the top, twice over
    for (let k = 0; k < 2; k++) {
      const last = alice.locator(`${day1} [data-testid=stop-up]`).last();
      await last.click();
    }
    await finalAnswer(id);
    const want = async () => {
      const a = await itinerary(alice);
      const b = await itinerary(bob);
      return JSON.stringify(a) === JSON.stringify(b) && a.length === 2 && a[0]?.length === 4 ? a : null;
    };
    const days = (await until("both browsers to show the same itinerary", want, 15_000)) as string[][];
    expect([...(days[0] ?? [])].sort()).toEqual(["Colosseum", "Gelato", "Hotel Artemide", "Roman Forum"]);
    expect(days[1]).toEqual(["Pantheon", "Trevi Fountain"]);
    const server = (await attach(weft, id)).state.object["day:1"] as Array<{ value: { name: string } }>;
    expect(server.map((x) => x.value.name)).toEqual(days[0]);
    await shot(alice, "concurrent-alice");
    await shot(bob, "concurrent-bob");
  });

  it("Weft killed (SIGKILL) and restarted during a run: the page reconnects and shows everything acknowledged", async () => {
    const id = trip();
    const page = await open(await person(), id);
    await ask(page, "Plan 3 days in Lisbon");
    await until("the answer to start streaming", async () => (await page.locator(".reasoning").count()) > 0);
    await weft.kill();
    await weft.start();
    const final = await finalAnswer(id);
    const kept = await attach(weft, id);
    await until("the page to show what Weft kept", async () => (await assistantText(page)) === final, 20_000);
    const shown = await shownMessages(page);
    expect(shown.map((m) => m.role)).toEqual(["user", "assistant"]);
    expect(shown[0]?.text).toBe("Plan 3 days in Lisbon");
    const stops = Object.entries(kept.state.object)
      .filter(([k]) => k.startsWith("day:"))
      .map(([, v]) => (v as unknown[]).length)
      .reduce((a, b) => a + b, 0);
    await until("the plan Weft kept", async () => (await itinerary(page)).flat().length === stops);
    await shot(page, "restart-after");
  });

  it("a new device rebuilds the whole conversation, plan and budget", async () => {
    const id = trip();
    const a = await open(await person(), id);
    await ask(a, "Plan 2 days in Rome");
    const final = await finalAnswer(id);
    await until("the plan on the first device", async () => (await itinerary(a)).flat().length === 4);
    // its last chunks may still be on their way to the first device's page
    await until("the whole answer on the first device", async () => (await assistantText(a)) === final);
    const fresh = await open(await person(), id);
    await until("the conversation on the new device", async () => (await assistantText(fresh)) === final);
    expect(await shownMessages(fresh)).toEqual(await shownMessages(a));
    await until("the plan on the new device", async () => JSON.stringify(await itinerary(fresh)) === JSON.stringify(await itinerary(a)));
    expect(await fresh.textContent("[data-testid=budget]")).toBe(await a.textContent("[data-testid=budget]"));
    expect(await fresh.textContent("[data-testid=trip-title]")).toBe("2 days in Rome");
    expect(await fresh.locator("[data-testid=pin]").count()).toBe(4);
    await shot(fresh, "new-device");
  });
});
