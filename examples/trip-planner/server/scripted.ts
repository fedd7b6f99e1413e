// The default model: scripted and deterministic, built on the AI SDK's test
// model (MockLanguageModelV4). It reasons aloud at model-like speed, calls
// the same tools a real model would, then summarises; it stops the moment
// its abort signal fires. It counts its calls and aborts so that tests can
// check that a refresh never calls it again and that Stop really stops it.
import type { LanguageModelV4CallOptions, LanguageModelV4StreamPart } from "@ai-sdk/provider";
import { MockLanguageModelV4 } from "ai/test";

import { readRequest } from "./places.js";

/** What the scripted model did, for tests (`GET /api/model-stats`). */
export const stats = { turns: 0, steps: 0, aborted: 0, partsAfterAbort: 0 };

const usage = {
  inputTokens: { total: 100, noCache: 100, cacheRead: 0, cacheWrite: 0 },
  outputTokens: { total: 100, text: 80, reasoning: 20 },
};

function lastUserText(prompt: LanguageModelV4CallOptions["prompt"]): { text: string; toolsDone: boolean } {
  let text = "";
  let toolsDone = false;
  for (const m of prompt) {
    if (m.role === "user") {
      text = m.content.map((p) => (p.type === "text" ? p.text : "")).join("");
      toolsDone = false;
    } else if (m.role === "tool") {
      toolsDone = true;
    }
  }
  return { text, toolsDone };
}

const words = (s: string) => s.match(/\S+\s*/g) ?? [];

function planStep(text: string): LanguageModelV4StreamPart[] {
  const { city, days } = readRequest(text);
  const budget = city.perDay * days;
  const parts: LanguageModelV4StreamPart[] = [{ type: "reasoning-start", id: "r" }];
  const thought =
    `The traveller wants ${days} day${days > 1 ? "s" : ""} in ${city.name}. I will set the trip, ` +
    `add ${city.name} as a destination, pick two sights for each day close to each other, ` +
    `and set a budget of about ${city.perDay} euros a day.`;
  for (const w of words(thought)) parts.push({ type: "reasoning-delta", id: "r", delta: w });
  parts.push({ type: "reasoning-end", id: "r" });
  let n = 0;
  const call = (toolName: string, input: unknown) =>
    parts.push({ type: "tool-call", toolCallId: `call_${++n}`, toolName, input: JSON.stringify(input) });
  call("set_trip_details", { title: `${days} days in ${city.name}`, destination: city.name, days });
  call("add_destination", { name: city.name, country: city.country, lat: city.lat, lon: city.lon });
  for (let d = 1; d <= days; d++) {
    for (const s of city.sights.slice(((d - 1) * 2) % city.sights.length, (((d - 1) * 2) % city.sights.length) + 2))
      call("add_stop", { day: d, name: s.name, lat: s.lat, lon: s.lon });
  }
  call("set_budget", { amount: budget });
  parts.push({ type: "finish", finishReason: { unified: "tool-calls", raw: "tool_use" }, usage });
  return parts;
}

function summaryStep(text: string): LanguageModelV4StreamPart[] {
  const { city, days } = readRequest(text);
  const lines = [`Here is a ${days}-day plan for ${city.name}.`];
  for (let d = 1; d <= days; d++) {
    const i = ((d - 1) * 2) % city.sights.length;
    lines.push(`Day ${d}: ${city.sights.slice(i, i + 2).map((s) => s.name).join(" and ")}.`);
  }
  lines.push(`I set the budget to ${city.perDay * days} euros. Move or edit any stop; I will work around your changes.`);
  const parts: LanguageModelV4StreamPart[] = [{ type: "text-start", id: "t" }];
  for (const w of words(lines.join("\n"))) parts.push({ type: "text-delta", id: "t", delta: w });
  parts.push({ type: "text-end", id: "t" }, { type: "finish", finishReason: { unified: "stop", raw: "end_turn" }, usage });
  return parts;
}

/** Parts streamed `delayMs` apart; stops (and counts it) when `signal` aborts. */
function paced(parts: LanguageModelV4StreamPart[], delayMs: number, signal: AbortSignal | undefined): ReadableStream<LanguageModelV4StreamPart> {
  let i = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  return new ReadableStream({
    start(controller) {
      controller.enqueue({ type: "stream-start", warnings: [] });
      signal?.addEventListener(
        "abort",
        () => {
          stats.aborted++;
          clearTimeout(timer);
          try {
            controller.error(signal.reason);
          } catch {
            // already closed
          }
        },
        { once: true },
      );
    },
    pull(controller) {
      return new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          if (signal?.aborted) {
            stats.partsAfterAbort++;
            return resolve();
          }
          const p = parts[i++];
          if (p) controller.enqueue(p);
          else controller.close();
          resolve();
        }, p0(parts[i]) ? 0 : delayMs);
      });
    },
  });
}

// Tool calls come at once, as a real model's would after its reasoning.
const p0 = (p: LanguageModelV4StreamPart | undefined) => p?.type === "tool-call" || p?.type === "finish";

/** The scripted trip-planning model; `delayMs` between streamed words. */
export function scriptedModel(delayMs: number): MockLanguageModelV4 {
  return new MockLanguageModelV4({
    provider: "weft-demo",
    modelId: "scripted-trip-planner",
    doStream: async (options) => {
      const { text, toolsDone } = lastUserText(options.prompt);
      stats.steps++;
      if (!toolsDone) stats.turns++;
      return { stream: paced(toolsDone ? summaryStep(text) : planStep(text), delayMs, options.abortSignal) };
    },
  });
}
