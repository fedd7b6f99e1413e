/**
 * `@weft/client`: attach to a Weft session and follow it live; post
 * messages, run agents, share objects, show presence.
 *
 * ```ts
 * import { WeftSession } from "@weft/client";
 * const s = await WeftSession.attach({ url: "http://localhost:4437", id: "trip-42", client: "alice" });
 * s.subscribe(() => render(s.messages, s.objects, s.presence));
 * await s.sendMessage({ role: "user", parts: [{ type: "text", text: "Plan 3 days in Rome" }] });
 * ```
 * @module
 */
export { WeftSession, newId, type SessionOptions, type RunWatcher } from "./session.js";
export { RunWriter, RunEndedError, type RunWriterOptions } from "./run.js";
export { applyOps, newItemId, ObjectOpError } from "./objects.js";
export { WeftError, type HeaderValue, type TokenSource } from "./http.js";
export type * from "./types.js";
