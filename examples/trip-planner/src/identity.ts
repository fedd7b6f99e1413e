// Who this browser is (a per-browser id and an optional name, kept in
// localStorage) and which trip it shows (?trip=<id>: the URL to share).

const KEY = "weft-trip-person";

export interface Person {
  id: string;
  name: string;
}

const COLORS = ["#e4572e", "#17bebb", "#ffc914", "#2e282a", "#76b041", "#8e44ad", "#3d5a80"];

function randomId(prefix: string): string {
  const b = new Uint8Array(6);
  crypto.getRandomValues(b);
  return prefix + Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

export function person(): Person {
  const saved = localStorage.getItem(KEY);
  if (saved) return JSON.parse(saved) as Person;
  const p = { id: randomId("p_"), name: "" };
  localStorage.setItem(KEY, JSON.stringify(p));
  return p;
}

export function rename(name: string): Person {
  const p = { ...person(), name };
  localStorage.setItem(KEY, JSON.stringify(p));
  return p;
}

/** The trip id from the URL, creating one (and putting it in the URL) if absent. */
export function tripId(): string {
  const url = new URL(location.href);
  let id = url.searchParams.get("trip");
  if (!id || !/^[A-Za-z0-9_.~-]{1,100}$/.test(id)) {
    id = randomId("trip-");
    url.searchParams.set("trip", id);
    history.replaceState(null, "", url);
  }
  return id;
}

export function colorOf(id: string): string {
  let h = 0;
  for (const c of id) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return COLORS[h % COLORS.length] as string;
}
