// pipeToRun and sessionConversation without a server: a fake run and session.
import type { UIMessageChunk } from "ai";
import { describe, expect, it } from "vitest";
import type { RunWriter, WeftSession } from "@weft/client";

import { pipeToRun, sessionConversation } from "../src/index.js";

function fakeRun() {
  const abort = new AbortController();
  const written: Array<{ type: string; [k: string]: unknown }> = [];
  const ended: Array<[string, string | undefined]> = [];
  const run = {
    id: "r1",
    messageId: "msg_1",
    signal: abort.signal,
    get stopped() {
      return abort.signal.aborted;
    },
    write: (...c: Array<{ type: string }>) => void written.push(...c),
    end: async (reason = "complete", error?: string) => {
      ended.push([reason, error]);
      return abort.signal.aborted ? "cancelled" : reason;
    },
  };
  return { run: run as unknown as RunWriter, abort, written, ended };
}

const streamOf = (chunks: UIMessageChunk[], fail?: Error) =>
  new ReadableStream<UIMessageChunk>({
    start(c) {
      for (const x of chunks) c.enqueue(x);
      if (fail) c.error(fail);
      else c.close();
    },
  });

describe("pipeToRun", () => {
  it("writes every chunk, gives the start chunk the run's message id, ends complete", async () => {
    const { run, written, ended } = fakeRun();
    const reason = await pipeToRun(run, streamOf([{ type: "start", messageId: "other" }, { type: "text-start", id: "t" }, { type: "text-delta", id: "t", delta: "hi" }]));
    expect(reason).toBe("complete");
    expect(written).toEqual([{ type: "start", messageId: "msg_1" }, { type: "text-start", id: "t" }, { type: "text-delta", id: "t", delta: "hi" }]);
    expect(ended).toEqual([["complete", undefined]]);
  });

  it("ends error with the text of an error chunk, or of a failed stream", async () => {
    const a = fakeRun();
    expect(await pipeToRun(a.run, streamOf([{ type: "error", errorText: "rate limited" }]))).toBe("error");
    expect(a.ended).toEqual([["error", "rate limited"]]);
    const b = fakeRun();
    expect(await pipeToRun(b.run, { toUIMessageStream: () => streamOf([], new Error("socket hang up")) })).toBe("error");
    expect(b.ended).toEqual([["error", "socket hang up"]]);
  });

  it("stops reading when the run is cancelled and writes nothing after", async () => {
    const { run, abort, written } = fakeRun();
    let pulled = 0;
    const endless = new ReadableStream<UIMessageChunk>({
      pull(c) {
        pulled++;
        if (pulled === 3) abort.abort(new Error("cancelled"));
        c.enqueue({ type: "text-delta", id: "t", delta: String(pulled) });
      },
    });
    expect(await pipeToRun(run, endless)).toBe("cancelled");
    expect(written.length).toBeLessThanOrEqual(3);
  });
});

describe("sessionConversation", () => {
  it("is the messages up to the one answered, without the one regenerated", () => {
    const messages = ["u1", "a1", "u2", "a2", "u3"].map((id) => ({ id, role: id[0] === "u" ? "user" : "assistant", parts: [] }));
    const session = { messages } as unknown as WeftSession;
    expect(sessionConversation(session, "u2").map((m) => m.id)).toEqual(["u1", "a1", "u2"]);
    expect(sessionConversation(session, "u2", "a1").map((m) => m.id)).toEqual(["u1", "u2"]);
  });
});
