// The hooks in a DOM (jsdom), two participants on the real weft binary.
import { act, cleanup, render, screen, waitFor } from "@testing-library/react";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { WeftSession } from "@weft/client";

import { useCounter, useList, usePresence, WeftProvider } from "../src/index.js";
import { WeftServer } from "../../test-support/weft-server.js";

let weft: WeftServer;
beforeAll(async () => {
  weft = new WeftServer();
  await weft.start();
});
afterEach(cleanup);
afterAll(async () => {
  await weft.stop();
});

function Trip({ who }: { who: string }) {
  const [stops, list] = useList<string>("stops");
  const [budget, increment] = useCounter("budget");
  const { members } = usePresence();
  return (
    <div data-testid={who}>
      <span data-testid={`${who}-budget`}>{budget}</span>
      <span data-testid={`${who}-stops`}>{stops.map((s) => s.value).join(",")}</span>
      <span data-testid={`${who}-here`}>{members.map((m) => m.client).sort().join(",")}</span>
      <button data-testid={`${who}-add`} onClick={() => void list.insert(`${who}${stops.length}`)} />
      <button data-testid={`${who}-first`} onClick={() => stops.at(-1) && void list.move(stops.at(-1)!.id, null)} />
      <button data-testid={`${who}-spend`} onClick={() => void increment(-10)} />
    </div>
  );
}

describe("@weft/react", () => {
  it("renders shared lists, counters and presence for two people, live", async () => {
    const id = `react-${process.pid}`;
    render(
      <>
        <WeftProvider url={weft.url} id={id} client="alice" presence={{ name: "Alice" }}>
          <Trip who="alice" />
        </WeftProvider>
        <WeftProvider url={weft.url} id={id} client="bob" presence={{ name: "Bob" }}>
          <Trip who="bob" />
        </WeftProvider>
      </>,
    );
    await waitFor(() => expect(screen.getByTestId("bob-here").textContent).toBe("alice,bob"), { timeout: 5000 });
    act(() => screen.getByTestId("alice-add").click());
    await waitFor(() => expect(screen.getByTestId("bob-stops").textContent).toBe("alice0"));
    act(() => screen.getByTestId("bob-add").click());
    await waitFor(() => expect(screen.getByTestId("alice-stops").textContent).toBe("alice0,bob1"));
    act(() => screen.getByTestId("alice-first").click());
    act(() => screen.getByTestId("bob-spend").click());
    await waitFor(() => expect(screen.getByTestId("bob-stops").textContent).toBe("bob1,alice0"));
    await waitFor(() => expect(screen.getByTestId("alice-budget").textContent).toBe("-10"));
    const s = await WeftSession.attach({ url: weft.url, id, client: "carol", live: false });
    expect(s.object("budget")).toBe(-10);
    expect((s.object("stops") as Array<{ value: string }>).map((x) => x.value)).toEqual(["bob1", "alice0"]);
  });
});
