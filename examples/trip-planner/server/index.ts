// The demo's server: the built app (dist/), the agent's webhook (POST
// /api/wake: Weft wakes the agent when anyone posts a message in a trip,
// through a subscription made at start-up) and where Weft is (GET
// /api/config). The browser talks to Weft directly for everything else: it
// posts a message to the session and streams the run that answers it.
//
// Env: WEFT_URL (default http://127.0.0.1:4437), TRIP_PORT (default 3000),
// TRIP_HOST (default 127.0.0.1), TRIP_WEBHOOK_URL (where Weft reaches
// /api/wake; default http://127.0.0.1:<port>/api/wake), ANTHROPIC_API_KEY / OPENAI_API_KEY for a
// real model (else the scripted one), TRIP_MODEL_DELAY_MS (scripted speed),
// WEFT_AUTH_SECRET_FILE when Weft requires capability tokens: then this
// server mints each person a short-lived token for their trip
// (GET /api/token) and the agent its own; the browser never sees the secret.
import { createReadStream, existsSync, statSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { dirname, extname, join, normalize, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { createWakeHandler, subscribeAgent } from "@weft/ai-sdk";

import { chooseModel, respond } from "./agent.js";
import { stats } from "./scripted.js";
import { TokenMinter } from "./tokens.js";

const weftUrl = (process.env.WEFT_URL ?? "http://127.0.0.1:4437").replace(/\/+$/, "");
const port = Number(process.env.TRIP_PORT ?? 3000);
const host = process.env.TRIP_HOST ?? "127.0.0.1";
const root = resolve(dirname(fileURLToPath(import.meta.url)), "../../dist");
const { model, name } = chooseModel();

const minter = process.env.WEFT_AUTH_SECRET_FILE ? new TokenMinter(process.env.WEFT_AUTH_SECRET_FILE) : null;

const agentHeaders = minter ? { headers: { Authorization: () => `Bearer ${minter.agent()}` } } : {};
const wake = createWakeHandler({
  url: weftUrl,
  client: "agent",
  ...agentHeaders,
  respond: respond(model),
  onError: (e, run) => console.error(`run ${run}: ${(e as Error).stack ?? e}`),
});
const webhook = process.env.TRIP_WEBHOOK_URL ?? `http://127.0.0.1:${port}/api/wake`;

/** The agent's subscription to every trip, made (or confirmed) at start; retried until Weft answers. */
async function subscribe(): Promise<void> {
  for (let delay = 100; ; delay = Math.min(delay * 2, 5000)) {
    try {
      await subscribeAgent({ url: weftUrl, id: "trip-planner-agent", pattern: "/v1/session/*", webhook, ...agentHeaders });
      console.log(`agent subscribed: Weft wakes it at ${webhook}`);
      return;
    } catch (e) {
      console.error(`subscribing the agent (again in ${delay} ms): ${(e as Error).message}`);
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript",
  ".css": "text/css",
  ".svg": "image/svg+xml",
  ".json": "application/json",
  ".png": "image/png",
};

function send(res: ServerResponse, status: number, body: unknown) {
  res.writeHead(status, { "Content-Type": "application/json", "Cache-Control": "no-store" });
  res.end(JSON.stringify(body));
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

function serveStatic(req: IncomingMessage, res: ServerResponse) {
  const path = normalize(decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname));
  let file = join(root, path);
  if (!file.startsWith(root) || !existsSync(file) || statSync(file).isDirectory()) file = join(root, "index.html");
  if (!existsSync(file)) return send(res, 500, { error: "the app is not built: run npm run build in examples/trip-planner" });
  res.writeHead(200, { "Content-Type": TYPES[extname(file)] ?? "application/octet-stream" });
  createReadStream(file).pipe(res);
}

const server = createServer(async (req, res) => {
  try {
    const url = new URL(req.url ?? "/", "http://x");
    if (url.pathname === "/api/config") return send(res, 200, { weftUrl, model: name, auth: minter !== null });
    if (url.pathname === "/api/token") {
      // The demo's identity is the per-browser id; a real app would check its own login here.
      const person = url.searchParams.get("person") ?? "";
      const trip = url.searchParams.get("trip") ?? "";
      if (!minter) return send(res, 404, { error: "Weft runs without tokens" });
      if (!/^[A-Za-z0-9_.~-]{1,100}$/.test(person) || !/^[A-Za-z0-9_.~-]{1,100}$/.test(trip))
        return send(res, 400, { error: "person and trip must be ids of A-Z a-z 0-9 - _ . ~" });
      return send(res, 200, { token: minter.person(person, trip) });
    }
    if (url.pathname === "/api/model-stats") return send(res, 200, stats);
    if (url.pathname === "/api/wake") {
      if (req.method !== "POST") return send(res, 405, { error: "Weft POSTs wake-ups here" });
      const headers = new Headers();
      const sig = req.headers["webhook-signature"];
      if (typeof sig === "string") headers.set("Webhook-Signature", sig);
      const answer = await wake(new Request(`http://${host}${req.url}`, { method: "POST", headers, body: (await readBody(req)).toString("utf8") }));
      res.writeHead(answer.status, { "Content-Type": "application/json" });
      return res.end(await answer.text());
    }
    return serveStatic(req, res);
  } catch (e) {
    console.error(e);
    send(res, 500, { error: (e as Error).message });
  }
});

server.listen(port, host, () => {
  console.log(`trip planner on http://${host}:${port}/ (weft: ${weftUrl}, model: ${name})`);
  void subscribe();
});
for (const sig of ["SIGINT", "SIGTERM"] as const) process.on(sig, () => server.close(() => process.exit(0)));
