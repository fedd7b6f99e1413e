// The trip agent: streamText with tools that edit the trip through Weft's
// shared objects. The trip is a "trip" map (title, destination, days), a
// "destinations" list, one list of stops per day ("day:1", "day:2", ...:
// reordering is conflict-free) and a "budget" counter.
import { anthropic } from "@ai-sdk/anthropic";
import { openai } from "@ai-sdk/openai";
import { convertToModelMessages, stepCountIs, streamText, tool, type LanguageModel } from "ai";
import type { RespondContext } from "@weft/ai-sdk";
import type { Json, WeftSession } from "@weft/client";
import { z } from "zod";

import { scriptedModel } from "./scripted.js";

/** The model: a real provider when its API key is set, else the scripted one. */
export function chooseModel(env: NodeJS.ProcessEnv = process.env): { model: LanguageModel; name: string } {
  if (env.ANTHROPIC_API_KEY) return { model: anthropic(env.TRIP_MODEL ?? "claude-sonnet-4-5"), name: "anthropic" };
  if (env.OPENAI_API_KEY) return { model: openai(env.TRIP_MODEL ?? "gpt-4.1-mini"), name: "openai" };
  return { model: scriptedModel(Number(env.TRIP_MODEL_DELAY_MS ?? 30)), name: "scripted" };
}

const SYSTEM =
  "You plan trips together with the people in this session. Edit the shared trip only through the tools: " +
  "set the trip details, add destinations with coordinates, add / update / move / remove stops of a day, set the budget. " +
  "People edit the plan by hand at the same time: read the current plan below and keep their changes. " +
  "Then answer briefly.";

const place = { name: z.string(), lat: z.number(), lon: z.number() };

function tripTools(session: WeftSession) {
  // The AI SDK runs a step's tool calls at once; their edits reach Weft one
  // after another, in the order the model made them (two stops added to a
  // day keep the model's order).
  let previous: Promise<unknown> = Promise.resolve();
  const apply = (ops: Parameters<WeftSession["applyOps"]>[0]) => {
    const done = previous.then(() => session.applyOps(ops));
    previous = done.catch(() => undefined);
    return done.then(() => "done");
  };
  return {
    set_trip_details: tool({
      description: "Set the trip's title, destination and number of days.",
      inputSchema: z.object({ title: z.string(), destination: z.string(), days: z.number().int().min(1).max(14) }),
      execute: ({ title, destination, days }) =>
        apply([
          { object: "trip", op: "set", path: "title", value: title },
          { object: "trip", op: "set", path: "destination", value: destination },
          { object: "trip", op: "set", path: "days", value: days },
        ]),
    }),
    add_destination: tool({
      description: "Add a destination (a city) with its coordinates.",
      inputSchema: z.object({ ...place, country: z.string() }),
      execute: (d) => apply([{ object: "destinations", op: "insert", value: d as Json }]),
    }),
    add_stop: tool({
      description: "Add a stop to a day, at the end or after another stop (its id).",
      inputSchema: z.object({ day: z.number().int().min(1), ...place, after: z.string().optional() }),
      execute: ({ day, after, ...stop }) =>
        apply([after ? { object: `day:${day}`, op: "insert", value: stop, after } : { object: `day:${day}`, op: "insert", value: stop }]),
    }),
    update_stop: tool({
      description: "Change a stop (its id) of a day: name, note, coordinates.",
      inputSchema: z.object({ day: z.number().int(), id: z.string(), ...place, note: z.string().optional() }),
      execute: ({ day, id, ...value }) => apply([{ object: `day:${day}`, op: "update", id, value: value as Json }]),
    }),
    move_stop: tool({
      description: "Move a stop of a day after another stop (null: first).",
      inputSchema: z.object({ day: z.number().int(), id: z.string(), after: z.string().nullable() }),
      execute: ({ day, id, after }) => apply([{ object: `day:${day}`, op: "move", id, after }]),
    }),
    remove_stop: tool({
      description: "Remove a stop of a day.",
      inputSchema: z.object({ day: z.number().int(), id: z.string() }),
      execute: ({ day, id }) => apply([{ object: `day:${day}`, op: "remove", id }]),
    }),
    set_budget: tool({
      description: "Set the trip's budget, in euros.",
      inputSchema: z.object({ amount: z.number() }),
      execute: async ({ amount }) => {
        await session.whenOffset(session.offset);
        const now = session.object<number>("budget") ?? 0;
        return apply([{ object: "budget", op: "increment", by: amount - now }]);
      },
    }),
  };
}

/** The chat route's model call for one run. */
export function respond(model: LanguageModel) {
  return async ({ messages, abortSignal, session }: RespondContext) => {
    return streamText({
      model,
      instructions: `${SYSTEM}\nThe current plan: ${JSON.stringify(session.objects)}`,
      messages: await convertToModelMessages(messages),
      tools: tripTools(session),
      stopWhen: stepCountIs(6),
      abortSignal,
    });
  };
}
