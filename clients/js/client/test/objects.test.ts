// The local ops follow the server's rules (docs/sessions.md, "Objects").
import { describe, expect, it } from "vitest";

import { applyOps, ObjectOpError, type Json, type ObjectOp } from "../src/index.js";

const items = (v: Json | undefined) => (v as Array<{ id: string }>).map((it) => it.id);

describe("applyOps", () => {
  it("sets and removes at paths, creating parents", () => {
    const a = applyOps({}, [
      { object: "trip", op: "set", path: ["dates", "start"], value: "2027-05-01" },
      { object: "trip", op: "set", path: "draft", value: true },
      { object: "trip", op: "remove", path: "draft" },
      { object: "trip", op: "remove", path: ["missing", "x"] },
    ]);
    expect(a).toEqual({ trip: { dates: { start: "2027-05-01" } } });
  });

  it("leaves its input alone", () => {
    const before = { trip: { a: 1 } as Json };
    applyOps(before, [{ object: "trip", op: "set", path: "a", value: 2 }]);
    expect(before).toEqual({ trip: { a: 1 } });
  });

  it("increments counters, by 1 by default", () => {
    expect(applyOps({ b: 10 }, [{ object: "b", op: "increment", by: -40 }, { object: "b", op: "increment" }])).toEqual({ b: -29 });
  });

  it("inserts, moves, updates and removes list items; gone anchors mean the end", () => {
    let o = applyOps({}, [
      { object: "l", op: "insert", id: "a", value: 1 },
      { object: "l", op: "insert", id: "b", value: 2 },
      { object: "l", op: "insert", id: "c", value: 3, after: null },
      { object: "l", op: "insert", id: "d", value: 4, after: "a" },
      { object: "l", op: "insert", id: "e", value: 5, after: "gone" },
    ]);
    expect(items(o.l)).toEqual(["c", "a", "d", "b", "e"]);
    o = applyOps(o, [
      { object: "l", op: "move", id: "e", after: null },
      { object: "l", op: "move", id: "c" },
      { object: "l", op: "move", id: "a", after: "a" },
      { object: "l", op: "update", id: "d", value: 40 },
      { object: "l", op: "remove", id: "b" },
      { object: "l", op: "remove", id: "gone" },
      { object: "l", op: "move", id: "gone", after: null },
      { object: "l", op: "update", id: "gone", value: 0 },
    ]);
    expect(o.l).toEqual([
      { id: "e", value: 5 },
      { id: "a", value: 1 },
      { id: "d", value: 40 },
      { id: "c", value: 3 },
    ]);
  });

  it("gives an insert without an id one, written into the op", () => {
    const ops: ObjectOp[] = [{ object: "l", op: "insert", value: "x" }];
    const o = applyOps({}, ops);
    const id = (ops[0] as { id?: string }).id;
    expect(id).toMatch(/^i_[0-9a-f]{16}$/);
    expect(o.l).toEqual([{ id, value: "x" }]);
  });

  it("deletes whole objects, and a later op recreates one", () => {
    expect(applyOps({ m: { a: 1 } }, [{ object: "m", op: "delete" }])).toEqual({});
    expect(applyOps({ m: { a: 1 } }, [{ object: "m", op: "delete" }, { object: "m", op: "set", path: "b", value: 2 }])).toEqual({
      m: { b: 2 },
    });
  });

  it("refuses what the server refuses, naming the op, and applies nothing", () => {
    const objects = { budget: 5, m: { n: 1 }, l: [{ id: "a", value: 1 }] } as Record<string, Json>;
    const cases: Array<[ObjectOp[], RegExp]> = [
      [[{ object: "budget", op: "set", path: "x", value: 1 }], /ops\[0\]: object 'budget' is a counter, not a map/],
      [[{ object: "m", op: "increment" }], /object 'm' is a map, not a counter/],
      [[{ object: "m", op: "set", path: ["n", "x"], value: 1 }], /path into a non-object at 'n' of 'm'/],
      [[{ object: "l", op: "insert", id: "a", value: 1 }], /list 'l' already has an item 'a'/],
      [[{ object: "", op: "delete" }], /object must be a name/],
      [[{ object: "m", op: "frob" } as unknown as ObjectOp], /unknown op 'frob'/],
      [[{ object: "m", op: "set", path: [], value: 1 }], /path must be a key/],
      [
        [
          { object: "budget", op: "increment", by: 1 },
          { object: "l", op: "move" } as unknown as ObjectOp,
        ],
        /ops\[1\]: move, update and remove need the item's id/,
      ],
    ];
    for (const [ops, re] of cases) {
      expect(() => applyOps(objects, ops)).toThrow(ObjectOpError);
      expect(() => applyOps(objects, ops)).toThrow(re);
    }
    expect(objects).toEqual({ budget: 5, m: { n: 1 }, l: [{ id: "a", value: 1 }] });
  });
});
