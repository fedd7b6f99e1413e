// Electric's own TypeScript client (@electric-sql/client, pinned) against
// Weft's /v1/shape, with a real Postgres (tests/pg/pgtmp.py starts it and
// sets WEFT_TEST_DATABASE_URL) and the real weft binary: the initial sync,
// live inserts / updates / deletes, a where clause with params, columns,
// rows moving into and out of a shape, log=changes_only with subsets, resuming from a stored offset and
// handle, must-refetch after a TRUNCATE and after the slot is lost, a
// restart of Weft (SIGKILL) and of Postgres, and a crash test: writes go on
// while Weft is killed and restarted several times, and the client's rows
// end up equal to Postgres' SELECT.
import { execFileSync, spawn } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Shape, ShapeStream, type Row } from "@electric-sql/client";

import { until, WeftServer } from "../../clients/js/test-support/weft-server.js";

const db = process.env.WEFT_TEST_DATABASE_URL ?? "";
let weft: WeftServer;

function sql(q: string): string {
  return execFileSync("psql", [db, "-qAtc", q], { encoding: "utf8" });
}

/** The rows Postgres has for a query, as the client shows them (sorted by id). */
function pgRows(q: string): Row[] {
  const out = sql(`SELECT coalesce(json_agg(t ORDER BY id), '[]') FROM (${q}) t`);
  return JSON.parse(out) as Row[];
}

const sorted = (rows: Row[]) => [...rows].sort((a, b) => Number(a.id) - Number(b.id));

beforeAll(async () => {
  if (!db) throw new Error("set WEFT_TEST_DATABASE_URL: run through tests/pg/pgtmp.py");
  sql("CREATE TABLE todos (id int PRIMARY KEY, title text NOT NULL, done boolean NOT NULL DEFAULT false, owner text, prio int)");
  sql("INSERT INTO todos SELECT i, 'todo ' || i, i % 3 = 0, CASE WHEN i % 2 = 0 THEN 'alice' ELSE 'bob' END, i % 5 FROM generate_series(1, 50) i");
  weft = new WeftServer(["--database-url", db, "--long-poll-timeout", "3s"]);
  await weft.start();
  await until("Postgres replication", async () => (await fetch(`${weft.url}/v1/health`)).ok, 15_000);
});

afterAll(async () => {
  await weft?.stop();
});

describe("@electric-sql/client against Weft", () => {
  it("initial sync of a whole table, then live inserts, updates and deletes", async () => {
    const stream = new ShapeStream({ url: `${weft.url}/v1/shape`, params: { table: "todos" } });
    const shape = new Shape(stream);
    const rows = await shape.rows;
    expect(sorted(rows)).toEqual(pgRows("SELECT * FROM todos"));
    expect(typeof rows[0]?.id).toBe("number"); // parsed by electric-schema's types
    sql("INSERT INTO todos VALUES (100, 'new', false, 'carol', 1)");
    sql("UPDATE todos SET title = 'changed', done = true WHERE id = 1");
    sql("DELETE FROM todos WHERE id = 2");
    const want = pgRows("SELECT * FROM todos");
    await until("the live changes", () => JSON.stringify(sorted(shape.currentRows)) === JSON.stringify(want), 15_000);
    shape.unsubscribeAll();
  });

  it("a where clause with params and columns; rows move in and out", async () => {
    const stream = new ShapeStream({
      url: `${weft.url}/v1/shape`,
      params: { table: "todos", where: "owner = $1 AND prio >= $2", params: ["alice", "2"], columns: ["id", "title", "prio"] },
    });
    const shape = new Shape(stream);
    const q = "SELECT id, title, prio FROM todos WHERE owner = 'alice' AND prio >= 2";
    expect(sorted(await shape.rows)).toEqual(pgRows(q));
    sql("UPDATE todos SET owner = 'alice', prio = 4 WHERE id = 3"); // moves in
    sql("UPDATE todos SET prio = 0 WHERE id = 4"); // moves out
    sql("INSERT INTO todos VALUES (101, 'also alice', false, 'alice', 3), (102, 'not alice', false, 'bob', 3)");
    sql("UPDATE todos SET id = 1000 WHERE id = 6"); // its key changes
    await until("moves in and out", () => JSON.stringify(sorted(shape.currentRows)) === JSON.stringify(pgRows(q)), 15_000);
    expect(shape.currentRows.some((r) => r.id === 3)).toBe(true);
    expect(shape.currentRows.some((r) => r.id === 4)).toBe(false);
    expect(Object.keys(shape.currentRows[0] ?? {}).sort()).toEqual(["id", "prio", "title"]);
    shape.unsubscribeAll();
  });

  it("live over SSE (liveSse): changes arrive on one connection; the offsets it hands out resume", async () => {
    const stop = new AbortController(); /* ends the SSE connection: later tests kill Weft */
    const stream = new ShapeStream({ url: `${weft.url}/v1/shape`, params: { table: "todos", where: "prio = 4" }, liveSse: true, signal: stop.signal });
    const shape = new Shape(stream);
    await shape.rows;
    const q = "SELECT * FROM todos WHERE prio = 4";
    for (let k = 0; k < 3; k++) {
      sql(`INSERT INTO todos VALUES (${300 + k}, 'sse ${k}', false, 'erin', 4)`);
      await until(`SSE change ${k}`, () => JSON.stringify(sorted(shape.currentRows)) === JSON.stringify(pgRows(q)), 15_000);
    }
    sql("UPDATE todos SET title = 'sse again' WHERE id = 300");
    await until("an SSE update", () => JSON.stringify(sorted(shape.currentRows)) === JSON.stringify(pgRows(q)), 15_000);
    const resumed = new ShapeStream({ url: `${weft.url}/v1/shape`, params: { table: "todos", where: "prio = 4" },
                                      handle: stream.shapeHandle, offset: stream.lastOffset });
    const got: number[] = [];
    resumed.subscribe((msgs) => {
      for (const m of msgs) if ("key" in m && "value" in m) got.push(Number((m.value as Row).id));
    });
    sql("INSERT INTO todos VALUES (310, 'after', false, 'erin', 4)");
    await until("a resume from the SSE offset sees only what is new", () => got.includes(310), 15_000);
    expect(got).toEqual([310]);
    resumed.unsubscribeAll();
    shape.unsubscribeAll();
    stop.abort();
  });

  it("replica=full: updates carry whole rows and their old values", async () => {
    const stream = new ShapeStream({ url: `${weft.url}/v1/shape`, params: { table: "todos", where: "prio = 3", replica: "full" } });
    const olds: Row[] = [];
    stream.subscribe((msgs) => {
      for (const m of msgs) if ("old_value" in m && m.old_value) olds.push(m.old_value as Row);
    });
    const shape = new Shape(stream);
    await shape.rows;
    const id = Number((await shape.rows)[0]?.id);
    sql(`UPDATE todos SET title = 'full ' || id WHERE id = ${id}`);
    const q = "SELECT * FROM todos WHERE prio = 3";
    await until("the update", () => JSON.stringify(sorted(shape.currentRows)) === JSON.stringify(pgRows(q)), 15_000);
    expect(olds.some((o) => typeof o.title === "string" && !String(o.title).startsWith("full"))).toBe(true);
    shape.unsubscribeAll();
  });

  it("log=changes_only: requestSnapshot loads pages (GET and POST); live changes reach only the rows loaded", async () => {
    const q = "SELECT * FROM todos WHERE owner = 'bob' AND prio = 1";
    for (const subsetMethod of ["GET", "POST"] as const) {
      const stream = new ShapeStream({ url: `${weft.url}/v1/shape`, params: { table: "todos", where: "owner = 'bob'" }, log: "changes_only", subsetMethod });
      const shape = new Shape(stream);
      expect(await shape.rows).toEqual([]); // nothing until asked for
      await shape.requestSnapshot({ where: "prio = $1", params: { "1": "1" }, orderBy: "id DESC", limit: 2 });
      const page = pgRows(`${q} ORDER BY id DESC LIMIT 2`);
      expect(sorted(shape.currentRows)).toEqual(sorted(page));
      const loaded = page.map((r) => r.id);
      const other = pgRows(`${q} ORDER BY id`).find((r) => !loaded.includes(r.id))!;
      sql(`UPDATE todos SET title = 'seen ${subsetMethod}' WHERE id IN (${loaded[0]}, ${other.id})`);
      const want = sorted(page.map((r) => (r.id === loaded[0] ? { ...r, title: `seen ${subsetMethod}` } : r)));
      await until("the update of a loaded row", () => JSON.stringify(sorted(shape.currentRows)) === JSON.stringify(want), 15_000);
      expect(shape.currentRows.some((r) => r.id === other.id)).toBe(false); // not loaded: its update is not a row
      shape.unsubscribeAll();
      stream.unsubscribeAll();
    }
  });

  it("resumes from a stored offset and handle; a restart of Weft (SIGKILL) keeps both valid", async () => {
    const first = new ShapeStream({ url: `${weft.url}/v1/shape`, params: { table: "todos", where: "done" } });
    const shape = new Shape(first);
    await shape.rows;
    const handle = first.shapeHandle;
    const offset = first.lastOffset;
    shape.unsubscribeAll();
    sql("UPDATE todos SET done = true WHERE id = 5");
    await weft.kill();
    await weft.start();
    await until("Postgres replication again", async () => (await fetch(`${weft.url}/v1/health`)).ok, 15_000);
    sql("UPDATE todos SET done = true WHERE id = 7");
    const resumed = new ShapeStream({ url: `${weft.url}/v1/shape`, params: { table: "todos", where: "done" }, handle, offset });
    const seen: number[] = [];
    resumed.subscribe((msgs) => {
      for (const m of msgs) if ("key" in m && "value" in m) seen.push(Number((m.value as Row).id));
    });
    await until("the two changes after the stored offset", () => seen.includes(5) && seen.includes(7), 15_000);
    expect(resumed.shapeHandle).toBe(handle);
    expect(seen.filter((id) => id === 5).length).toBe(1); // once, not again from the snapshot
    resumed.unsubscribeAll();
  });

  it("TRUNCATE: must-refetch, and the client starts over with the empty table", async () => {
    sql("CREATE TABLE notes (id int PRIMARY KEY, body text)");
    sql("INSERT INTO notes VALUES (1, 'a'), (2, 'b')");
    const shape = new Shape(new ShapeStream({ url: `${weft.url}/v1/shape`, params: { table: "notes" } }));
    expect((await shape.rows).length).toBe(2);
    sql("TRUNCATE notes");
    sql("INSERT INTO notes VALUES (3, 'c')");
    await until("the shape after the truncate", () => JSON.stringify(shape.currentRows) === JSON.stringify([{ id: 3, body: "c" }]), 15_000);
    shape.unsubscribeAll();
  });

  it("errors: a table that does not exist, an unsupported where clause (400 naming it)", async () => {
    const r1 = await fetch(`${weft.url}/v1/shape?table=nope&offset=-1`);
    expect(r1.status).toBe(400);
    expect(JSON.stringify(await r1.json())).toContain("does not exist");
    const r2 = await fetch(`${weft.url}/v1/shape?table=todos&offset=-1&where=${encodeURIComponent("id = ANY(ARRAY[1])")}`);
    expect(r2.status).toBe(400);
    expect(JSON.stringify(await r2.json())).toContain("not supported");
    const r3 = await fetch(`${weft.url}/v1/shape?offset=-1`);
    expect(r3.status).toBe(400);
  });

  it("Postgres restarts: Weft reconnects and the shape goes on", async () => {
    const restart = JSON.parse(process.env.WEFT_TEST_PG_RESTART ?? "[]") as string[];
    expect(restart.length).toBeGreaterThan(0);
    const shape = new Shape(new ShapeStream({ url: `${weft.url}/v1/shape`, params: { table: "todos", where: "prio = 1" } }));
    await shape.rows;
    execFileSync(restart[0] as string, restart.slice(1), { stdio: "ignore" });
    sql("INSERT INTO todos VALUES (200, 'after the restart', false, 'dan', 1)");
    const q = "SELECT * FROM todos WHERE prio = 1";
    await until("the change after Postgres restarted", () => JSON.stringify(sorted(shape.currentRows)) === JSON.stringify(pgRows(q)), 20_000);
    shape.unsubscribeAll();
  });

  it("the slot is lost while Weft is down: its shapes must be refetched, never served stale", async () => {
    const stream = new ShapeStream({ url: `${weft.url}/v1/shape`, params: { table: "todos", where: "prio = 2" } });
    const shape = new Shape(stream);
    await shape.rows;
    const old = stream.shapeHandle;
    shape.unsubscribeAll();
    await weft.kill();
    sql("SELECT pg_drop_replication_slot('weft_slot')");
    sql("UPDATE todos SET prio = 2 WHERE id = 9"); // lost with the slot
    await weft.start();
    await until("Postgres replication again", async () => (await fetch(`${weft.url}/v1/health`)).ok, 15_000);
    const r = await fetch(`${weft.url}/v1/shape?table=todos&where=${encodeURIComponent("prio = 2")}&handle=${old}&offset=0000000000000000_0000000000000000`);
    expect(r.status).toBe(409);
    expect(await r.json()).toEqual([{ headers: { control: "must-refetch" } }]);
    const fresh = new Shape(new ShapeStream({ url: `${weft.url}/v1/shape`, params: { table: "todos", where: "prio = 2" } }));
    expect(sorted(await fresh.rows)).toEqual(pgRows("SELECT * FROM todos WHERE prio = 2"));
    fresh.unsubscribeAll();
  });

  it("crash test: writes go on while Weft is SIGKILLed and restarted three times; the client ends equal to SELECT", async () => {
    sql("CREATE TABLE counters (id int PRIMARY KEY, v int NOT NULL, tag text)");
    sql("INSERT INTO counters SELECT i, 0, CASE WHEN i % 2 = 0 THEN 'even' ELSE 'odd' END FROM generate_series(1, 40) i");
    const stream = new ShapeStream({ url: `${weft.url}/v1/shape`, params: { table: "counters", where: "tag = 'even' OR v > 10" } });
    const shape = new Shape(stream);
    await shape.rows;
    // 300 small transactions, each its own commit: updates that move rows in and out, inserts, deletes
    const writer = spawn("psql", [db, "-qc", `DO $$ BEGIN FOR i IN 1..300 LOOP
        UPDATE counters SET v = v + 1 WHERE id = 1 + (i * 7) % 40;
        UPDATE counters SET tag = CASE WHEN tag = 'even' THEN 'odd' ELSE 'even' END WHERE id = 1 + (i * 13) % 40;
        IF i % 10 = 0 THEN INSERT INTO counters VALUES (1000 + i, i, 'even'); END IF;
        IF i % 15 = 0 THEN DELETE FROM counters WHERE id = 1000 + i - 10; END IF;
        COMMIT; PERFORM pg_sleep(0.01); END LOOP; END $$`], { stdio: "ignore" });
    const done = new Promise<number>((r) => writer.once("exit", (code) => r(code ?? 1)));
    for (let k = 0; k < 3; k++) {
      await new Promise((r) => setTimeout(r, 300 + k * 200)); // a few transactions in: then a crash
      await weft.kill();
      await weft.start();
    }
    expect(await done).toBe(0);
    const q = "SELECT * FROM counters WHERE tag = 'even' OR v > 10";
    await until("the client equal to SELECT", () => JSON.stringify(sorted(shape.currentRows)) === JSON.stringify(pgRows(q)), 30_000);
    expect(stream.shapeHandle).toBeTruthy();
    shape.unsubscribeAll();
  }, 60_000);
});
