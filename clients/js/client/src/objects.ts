/**
 * Shared objects' ops applied locally, with the server's rules (maps,
 * counters, lists; a batch is all or nothing), so that a client can show
 * its own batch at once and reconcile when the log carries it.
 * @module
 */
import type { Json, ListItem, ObjectOp } from "./types.js";

/** An op the server would refuse (it answers 400 with the same reason). */
export class ObjectOpError extends Error {
  override name = "ObjectOpError";
}

function kindOf(v: Json | undefined): string {
  if (Array.isArray(v)) return "list";
  if (v !== null && typeof v === "object") return "map";
  if (typeof v === "number") return "counter";
  return "nothing";
}

function isMap(v: Json | undefined): v is { [key: string]: Json } {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/** A new list item id, as the server would pick one. */
export function newItemId(): string {
  const bytes = new Uint8Array(8);
  globalThis.crypto.getRandomValues(bytes);
  return "i_" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function pathOf(path: unknown): string[] {
  const p = typeof path === "string" ? [path] : path;
  if (!Array.isArray(p) || p.length === 0 || !p.every((k) => typeof k === "string"))
    throw new ObjectOpError("path must be a key or a non-empty array of keys");
  return p as string[];
}

function insertAt(list: ListItem[], after: string | null | undefined): number {
  if (after === undefined) return list.length;
  if (after === null) return 0;
  const i = list.findIndex((it) => it.id === after);
  return i < 0 ? list.length : i + 1;
}

/**
 * Apply one batch of ops to `objects` and return the new objects; `objects`
 * is not changed. Throws {@link ObjectOpError} naming the op, as the server
 * would refuse the batch. Inserts without an id get one (written into the op,
 * so that the server applies the same id).
 */
export function applyOps(objects: Readonly<Record<string, Json>>, ops: ObjectOp[]): Record<string, Json> {
  const work = new Map<string, Json | undefined>();
  const get = (name: string, fresh: () => Json): Json => {
    let w = work.has(name) ? work.get(name) : structuredClone(objects[name]);
    if (w === undefined || w === null) w = fresh();
    work.set(name, w);
    return w;
  };
  ops.forEach((o, i) => {
    try {
      applyOne(o, get, work);
    } catch (e) {
      if (e instanceof ObjectOpError) throw new ObjectOpError(`ops[${i}]: ${e.message}`);
      throw e;
    }
  });
  const out: Record<string, Json> = { ...objects };
  for (const [name, v] of work) {
    if (v === undefined || v === null) delete out[name];
    else out[name] = v;
  }
  return out;
}

function applyOne(o: ObjectOp, get: (name: string, fresh: () => Json) => Json, work: Map<string, Json | undefined>): void {
  const name = o.object;
  if (typeof name !== "string" || name.length === 0 || name.length > 128)
    throw new ObjectOpError("object must be a name of 1-128 bytes");
  switch (o.op) {
    case "set":
      return mapOp(name, get(name, () => ({})), pathOf(o.path), true, o.value);
    case "remove":
      if ("id" in o && !("path" in o)) return listOp(name, get(name, () => []), o);
      return mapOp(name, get(name, () => ({})), pathOf((o as { path: unknown }).path), false, null);
    case "increment": {
      const by = o.by ?? 1;
      if (typeof by !== "number") throw new ObjectOpError("increment's by must be a number");
      const c = get(name, () => 0);
      if (typeof c !== "number") throw new ObjectOpError(`object '${name}' is a ${kindOf(c)}, not a counter`);
      work.set(name, c + by);
      return;
    }
    case "insert":
    case "move":
    case "update":
      return listOp(name, get(name, () => []), o);
    case "delete":
      work.set(name, null);
      return;
    default:
      throw new ObjectOpError(
        `unknown op '${String((o as { op: unknown }).op)}': expected set, remove, increment, insert, move, update or delete`,
      );
  }
}

function mapOp(name: string, m: Json, path: string[], set: boolean, value: Json): void {
  if (!isMap(m)) throw new ObjectOpError(`object '${name}' is a ${kindOf(m)}, not a map`);
  if (set && value === undefined) throw new ObjectOpError("set needs a value");
  let cur = m;
  for (const key of path.slice(0, -1)) {
    let next = cur[key];
    if (next === undefined && set) cur[key] = next = {};
    if (next === undefined) return; // removing under a missing parent: nothing to do
    if (!isMap(next)) throw new ObjectOpError(`path into a non-object at '${key}' of '${name}'`);
    cur = next;
  }
  const last = path[path.length - 1] as string;
  if (set) cur[last] = structuredClone(value);
  else delete cur[last];
}

function listOp(name: string, l: Json, o: ObjectOp): void {
  const op = o as { op: string; id?: unknown; after?: unknown; value?: Json };
  if (op.after !== undefined && op.after !== null && typeof op.after !== "string")
    throw new ObjectOpError("after must be an item id or null");
  if (op.id !== undefined && (typeof op.id !== "string" || op.id.length === 0 || op.id.length > 128))
    throw new ObjectOpError("id must be a non-empty string of at most 128 bytes");
  const insert = op.op === "insert";
  if (!insert && op.id === undefined) throw new ObjectOpError("move, update and remove need the item's id");
  if ((insert || op.op === "update") && op.value === undefined)
    throw new ObjectOpError("insert and update need a value");
  if (!Array.isArray(l)) throw new ObjectOpError(`object '${name}' is a ${kindOf(l)}, not a list`);
  const list = l as unknown as ListItem[];
  const after = op.after as string | null | undefined;
  if (insert) {
    if (op.id === undefined) op.id = newItemId();
    const id = op.id as string;
    if (list.some((it) => it.id === id)) throw new ObjectOpError(`list '${name}' already has an item '${id}'`);
    list.splice(insertAt(list, after), 0, { id, value: structuredClone(op.value as Json) });
    return;
  }
  const i = list.findIndex((it) => it.id === op.id);
  if (i < 0) return; // gone: the remove won
  if (op.op === "remove") {
    list.splice(i, 1);
  } else if (op.op === "update") {
    (list[i] as ListItem).value = structuredClone(op.value as Json);
  } else if (after !== op.id) {
    // a move after itself stays where it is
    const [item] = list.splice(i, 1);
    list.splice(insertAt(list, after), 0, item as ListItem);
  }
}
