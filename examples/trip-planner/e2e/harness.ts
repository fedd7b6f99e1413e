// The end-to-end harness: the real weft binary, the demo's server (built:
// dist/ and dist-server/) and Debian's chromium driven by playwright-core.
// Screenshots go to $TRIP_ARTIFACTS (default: e2e/artifacts).
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, openSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium, type Browser, type Page } from "playwright-core";

import { freePort, until, WeftServer } from "../../../clients/js/test-support/weft-server.js";

export { until, WeftServer };

const here = dirname(fileURLToPath(import.meta.url));
export const ARTIFACTS = resolve(process.env.TRIP_ARTIFACTS ?? join(here, "artifacts"));
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

/** The demo's server (node dist-server/server/index.js) on a free port. */
export class DemoServer {
  port = 0;
  #proc: ChildProcess | null = null;
  readonly log: string;

  constructor(readonly weft: WeftServer, readonly env: Record<string, string> = {}) {
    this.log = join(weft.dir, "demo.log");
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.port = await freePort();
    const fd = openSync(this.log, "a");
    this.#proc = spawn(process.execPath, [join(here, "../dist-server/server/index.js")], {
      stdio: ["ignore", fd, fd],
      env: { ...process.env, WEFT_URL: this.weft.url, TRIP_PORT: String(this.port), ...this.env },
    });
    await until("the demo server", async () => {
      if (this.#proc?.exitCode !== null) throw new Error(`demo server exited: ${readFileSync(this.log, "utf8").slice(-800)}`);
      try {
        return (await fetch(`${this.url}/api/config`)).ok;
      } catch {
        return false;
      }
    });
  }

  async stats(): Promise<{ turns: number; steps: number; aborted: number; partsAfterAbort: number }> {
    return (await fetch(`${this.url}/api/model-stats`)).json() as never;
  }

  stop(): void {
    this.#proc?.kill("SIGTERM");
  }
}

export async function launch(): Promise<Browser> {
  mkdirSync(ARTIFACTS, { recursive: true });
  return chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
}

export async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/** The text of every message shown, role first. */
export async function shownMessages(page: Page): Promise<Array<{ role: string; id: string; text: string }>> {
  return page.$$eval("[data-testid=message]", (els) =>
    els.map((e) => ({
      role: e.getAttribute("data-role") ?? "",
      id: e.getAttribute("data-id") ?? "",
      text: Array.from(e.querySelectorAll(".text"))
        .map((p) => p.textContent ?? "")
        .join(""),
    })),
  );
}

export async function avatars(page: Page): Promise<string[]> {
  return page.$$eval("[data-testid=avatar]", (els) => els.map((e) => e.getAttribute("data-client") ?? ""));
}

/** The itinerary as shown: day -> stop names. */
export async function itinerary(page: Page): Promise<string[][]> {
  return page.$$eval("[data-testid=itinerary] .day", (days) =>
    days.map((d) => Array.from(d.querySelectorAll("[data-testid=stop-name]")).map((i) => (i as HTMLInputElement).value)),
  );
}

/** The session as Weft has it (attach). */
export async function attach(weft: WeftServer, trip: string): Promise<{
  state: { message: Record<string, { role: string; parts: Array<{ type: string; text?: string }> }>; run: Record<string, { status: string; answers: string | null; message_id: string; owner: string; cancelled_by?: string }>; object: Record<string, unknown> };
}> {
  return (await fetch(`${weft.url}/v1/session/${trip}`)).json() as never;
}

export const textOf = (m: { parts: Array<{ type: string; text?: string }> }) =>
  m.parts
    .filter((p) => p.type === "text")
    .map((p) => p.text)
    .join("");
