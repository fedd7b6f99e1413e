// The hooks against a stand-in session (no server): re-rendering on
// change, the ops they send, presence by person, and the provider's error.
import { act, cleanup, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it } from "vitest";
import { applyOps, type Json, type ObjectOp, type WeftSession } from "@weft/client";

import { useCounter, useList, useMap, usePresence, useRuns, useSession, WeftProvider } from "../src/index.js";

afterEach(cleanup);

/** Just enough of a WeftSession: objects changed by applyOps, listeners, a version. */
function fakeSession() {
  const listeners = new Set<() => void>();
  const sent: ObjectOp[][] = [];
  const state = {
    objects: {} as Record<string, Json>,
    presence: [
      { client: "alice", entered_at: "", data: { name: "Alice" } },
      { client: "bob", entered_at: "", data: { name: "Bob" } },
    ],
    runs: [{ id: "r1", status: "running" }, { id: "r0", status: "complete" }],
    version: 0,
  };
  const s = {
    id: "t",
    client: "alice",
    get version() {
      return state.version;
    },
    get objects() {
      return state.objects;
    },
    object: (n: string) => state.objects[n],
    get presence() {
      return state.presence;
    },
    get runs() {
      return state.runs;
    },
    subscribe: (l: () => void) => (listeners.add(l), () => listeners.delete(l)),
    applyOps: async (ops: ObjectOp[]) => {
      sent.push(ops);
      state.objects = applyOps(state.objects, ops);
      state.version++;
      for (const l of listeners) l();
      return { batch: "b", offset: "o" };
    },
    cancelRun: async (id: string) => {
      sent.push([{ object: `cancel:${id}`, op: "delete" }]);
      return "cancelled";
    },
  };
  return { session: s as unknown as WeftSession, sent };
}

function Widgets() {
  const [map, m] = useMap<{ title?: string }>("trip");
  const [n, inc] = useCounter("budget");
  const [items, list] = useList<string>("l");
  const { members, self } = usePresence();
  const { active, cancel } = useRuns();
  return (
    <div>
      <span data-testid="title">{map?.title ?? "-"}</span>
      <span data-testid="n">{n}</span>
      <span data-testid="items">{items.map((i) => i.value).join(",")}</span>
      <span data-testid="members">{members.length}:{self?.client}</span>
      <span data-testid="active">{active.map((r) => r.id).join(",")}</span>
      <button data-testid="go" onClick={() => void (async () => {
        await m.set("title", "Rome");
        await inc(5);
        await list.insert("a", { id: "a" });
        await list.insert("b", { id: "b", after: null });
        await list.move("b");
        await cancel("r1");
      })()} />
    </div>
  );
}

describe("hooks", () => {
  it("re-render on every change and send the ops they name", async () => {
    const { session, sent } = fakeSession();
    render(
      <WeftProvider session={session}>
        <Widgets />
      </WeftProvider>,
    );
    expect(screen.getByTestId("n").textContent).toBe("0");
    expect(screen.getByTestId("members").textContent).toBe("2:alice");
    expect(screen.getByTestId("active").textContent).toBe("r1");
    await act(async () => screen.getByTestId("go").click());
    await act(async () => {});
    expect(screen.getByTestId("title").textContent).toBe("Rome");
    expect(screen.getByTestId("n").textContent).toBe("5");
    expect(screen.getByTestId("items").textContent).toBe("a,b");
    expect(sent).toEqual([
      [{ object: "trip", op: "set", path: "title", value: "Rome" }],
      [{ object: "budget", op: "increment", by: 5 }],
      [{ object: "l", op: "insert", value: "a", id: "a" }],
      [{ object: "l", op: "insert", value: "b", id: "b", after: null }],
      [{ object: "l", op: "move", id: "b" }],
      [{ object: "cancel:r1", op: "delete" }],
    ]);
  });

  it("useSession outside a provider says so", () => {
    function Bare() {
      useSession();
      return null;
    }
    const err = console.error;
    console.error = () => {};
    try {
      expect(() => render(<Bare />)).toThrow(/no <WeftProvider> above this component/);
    } finally {
      console.error = err;
    }
  });
});
