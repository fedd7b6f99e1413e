// Two browsers on one trip, side by side: the README's picture.
// With Weft and the demo running (scripts/run.sh):
//   node examples/trip-planner/scripts/screenshot.mjs [demo URL] [out.png]
import { writeFileSync } from "node:fs";
import { chromium } from "playwright-core";

const demo = process.argv[2] ?? "http://127.0.0.1:3000";
const out = process.argv[3] ?? "docs/img/trip-planner.png";
const trip = `trip-${Date.now().toString(36)}`;
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: ["--no-sandbox"] });

async function personPage(name) {
  const ctx = await browser.newContext({ viewport: { width: 1000, height: 760 } });
  const page = await ctx.newPage();
  await page.goto(`${demo}/?trip=${trip}`);
  await page.fill("[data-testid=name]", name);
  await page.press("[data-testid=name]", "Enter");
  await page.waitForSelector("[data-testid=prompt]");
  return page;
}

const alice = await personPage("Alice");
const bob = await personPage("Bob");
await alice.fill("[data-testid=prompt]", "Plan 3 days in Rome");
await alice.click("[data-testid=send]");
await alice.waitForFunction(() => document.body.innerText.includes("I set the budget"), null, { timeout: 60_000 });
await bob.fill("[data-testid=day-1] [data-testid=add-stop]", "Gelato at Giolitti");
await bob.press("[data-testid=day-1] [data-testid=add-stop]", "Enter");
await alice.waitForFunction(() => [...document.querySelectorAll("[data-testid=stop-name]")].some((i) => i.value.includes("Giolitti")));
await bob.fill("[data-testid=prompt]", "Make day 2 slower, please");
const shots = [await alice.screenshot(), await bob.screenshot()].map((b) => `data:image/png;base64,${b.toString("base64")}`);
const page = await (await browser.newContext({ viewport: { width: 2024, height: 800 } })).newPage();
await page.setContent(
  `<body style="margin:0;background:#d0d4da;display:flex;gap:12px;padding:12px;font:14px system-ui">` +
    shots.map((s, i) => `<figure style="margin:0"><img src="${s}" width="1000"><figcaption>${i ? "Bob" : "Alice"}'s browser</figcaption></figure>`).join("") +
    `</body>`,
);
writeFileSync(out, await page.screenshot({ fullPage: true }));
console.log(`wrote ${out} (trip ${trip})`);
await browser.close();
