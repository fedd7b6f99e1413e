// The real weft binary for integration tests: started on a free port with a
// fresh data directory, restartable (SIGKILL) on the same directory.
// WEFT_BIN overrides the binary (default: build/weft of this repository).
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const BIN = resolve(process.env.WEFT_BIN ?? join(here, "../../../build/weft"));

export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      s.close(() => res(typeof a === "object" && a ? a.port : 0));
    });
  });
}

/** Poll `cond` until it is truthy (a condition with a deadline, not a fixed sleep). */
export async function until<T>(what: string, cond: () => T | Promise<T>, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export class WeftServer {
  readonly dir = mkdtempSync(join(tmpdir(), "weft-js-"));
  readonly log = join(this.dir, "server.log");
  port = 0;
  #proc: ChildProcess | null = null;

  constructor(readonly args: string[] = []) {
    if (!existsSync(BIN)) throw new Error(`${BIN} does not exist: run make (or set WEFT_BIN)`);
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    if (!this.port) this.port = await freePort();
    const fd = openSync(this.log, "a");
    const args = ["serve", "--port", String(this.port), "--data-dir", join(this.dir, "data"), "--log-level", "info", ...this.args];
    const proc = spawn(BIN, args, { stdio: ["ignore", fd, fd] });
    this.#proc = proc;
    let exited = false;
    proc.once("exit", () => (exited = true));
    await until("weft to listen", async () => {
      if (exited) throw new Error(`weft exited: ${readFileSync(this.log, "utf8").slice(-500)}`);
      try {
        return (await fetch(`${this.url}/healthz`)).ok;
      } catch {
        return false;
      }
    });
  }

  /** SIGKILL: nothing flushed, nothing closed. */
  async kill(): Promise<void> {
    const p = this.#proc;
    if (!p || p.exitCode !== null) return;
    const gone = new Promise((r) => p.once("exit", r));
    p.kill("SIGKILL");
    await gone;
    this.#proc = null;
  }

  async stop(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
