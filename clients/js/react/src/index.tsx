/**
 * `@weft/react`: one Weft session in a React tree. A provider holds the
 * attached session; hooks read it (re-rendering on change) and write to it:
 * presence, shared maps / counters / lists, runs, and `useChat` on the
 * session's conversation.
 * @module
 */
import { useChat } from "@ai-sdk/react";
import type { UIMessage } from "ai";
import { WeftChatTransport } from "@weft/ai-sdk";
import {
  WeftSession,
  type Json,
  type ListItem,
  type MapPath,
  type PresenceMember,
  type RunInfo,
  type SessionOptions,
} from "@weft/client";
import { createContext, useCallback, useContext, useEffect, useMemo, useRef, useState, useSyncExternalStore, type ReactNode } from "react";

const Ctx = createContext<WeftSession | null>(null);

/** Props of {@link WeftProvider}: an attached session, or what to attach. */
export type WeftProviderProps =
  | { session: WeftSession; children: ReactNode; fallback?: ReactNode }
  | (SessionOptions & { session?: undefined; children: ReactNode; fallback?: ReactNode; presence?: Json });

/**
 * Provide one session to the tree. Given options, it attaches (and enters
 * presence with `presence` if given), shows `fallback` until attached, and
 * closes the session on unmount.
 */
export function WeftProvider(props: WeftProviderProps): ReactNode {
  const given = props.session;
  const [attached, setAttached] = useState<WeftSession | null>(null);
  const [error, setError] = useState<Error | null>(null);
  const key = given ? null : `${props.url}|${props.id}|${props.client}`;
  useEffect(() => {
    if (given) return;
    const opts = props as SessionOptions & { presence?: Json };
    let live = true;
    let s: WeftSession | null = null;
    WeftSession.attach(opts).then(
      (session) => {
        s = session;
        if (!live) return session.close();
        setAttached(session);
        if (opts.presence !== undefined) void session.enter(opts.presence).catch(setError);
      },
      (e: Error) => live && setError(e),
    );
    return () => {
      live = false;
      s?.close();
      setAttached(null);
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key, given]);
  if (error) throw error;
  const session = given ?? attached;
  if (!session) return props.fallback ?? null;
  return <Ctx.Provider value={session}>{props.children}</Ctx.Provider>;
}

/** The session of the nearest {@link WeftProvider}. */
export function useSession(): WeftSession {
  const s = useContext(Ctx);
  if (!s) throw new Error("useSession: no <WeftProvider> above this component");
  return s;
}

/** Re-render on every change of the session; returns its version. */
export function useSessionVersion(session: WeftSession = useSession()): number {
  return useSyncExternalStore(
    useCallback((cb) => session.subscribe(cb), [session]),
    () => session.version,
    () => session.version,
  );
}

/** A value derived from the session, recomputed when it changes. */
export function useSessionValue<T>(select: (s: WeftSession) => T): T {
  const s = useSession();
  const v = useSessionVersion(s);
  // eslint-disable-next-line react-hooks/exhaustive-deps
  return useMemo(() => select(s), [s, v]);
}

/** Presence: the members (one per person, however many tabs), this participant, and how to change it. */
export function usePresence(): {
  members: PresenceMember[];
  self: PresenceMember | undefined;
  enter: (data: Json) => Promise<void>;
  update: (data: Json) => Promise<void>;
  leave: () => Promise<void>;
} {
  const s = useSession();
  const members = useSessionValue((x) => x.presence);
  return {
    members,
    self: members.find((m) => m.client === s.client),
    enter: (d) => s.enter(d),
    update: (d) => s.updatePresence(d),
    leave: () => s.leave(),
  };
}

/** A shared map: its value, and set / remove at a path. */
export function useMap<T = { [key: string]: Json }>(
  name: string,
): [T | undefined, { set: (path: MapPath, value: Json) => Promise<unknown>; remove: (path: MapPath) => Promise<unknown> }] {
  const s = useSession();
  const value = useSessionValue((x) => x.object(name) as T | undefined);
  const ops = useMemo(
    () => ({
      set: (path: MapPath, v: Json) => s.applyOps([{ object: name, op: "set", path, value: v }]),
      remove: (path: MapPath) => s.applyOps([{ object: name, op: "remove", path }]),
    }),
    [s, name],
  );
  return [value, ops];
}

/** A shared counter: its value (0 if none) and increment. */
export function useCounter(name: string): [number, (by?: number) => Promise<unknown>] {
  const s = useSession();
  const value = useSessionValue((x) => x.object<number>(name) ?? 0);
  const increment = useCallback((by = 1) => s.applyOps([{ object: name, op: "increment", by }]), [s, name]);
  return [value, increment];
}

/** Ops on a shared list. `after`: an item id, `null` for the start, omitted for the end. */
export interface ListOps<T> {
  insert: (value: T, opts?: { id?: string; after?: string | null }) => Promise<unknown>;
  move: (id: string, after?: string | null) => Promise<unknown>;
  update: (id: string, value: T) => Promise<unknown>;
  remove: (id: string) => Promise<unknown>;
}

/** A shared list: its items (conflict-free: concurrent inserts and moves all survive) and its ops. */
export function useList<T = Json>(name: string): [ListItem<T>[], ListOps<T>] {
  const s = useSession();
  const items = useSessionValue((x) => (x.object(name) as ListItem<T>[] | undefined) ?? []);
  const ops = useMemo<ListOps<T>>(
    () => ({
      insert: (value, o = {}) => {
        const op: { object: string; op: "insert"; value: Json; id?: string; after?: string | null } = {
          object: name,
          op: "insert",
          value: value as unknown as Json,
        };
        if (o.id !== undefined) op.id = o.id;
        if (o.after !== undefined) op.after = o.after;
        return s.applyOps([op]);
      },
      move: (id, after) =>
        s.applyOps([after === undefined ? { object: name, op: "move", id } : { object: name, op: "move", id, after }]),
      update: (id, value) => s.applyOps([{ object: name, op: "update", id, value: value as unknown as Json }]),
      remove: (id) => s.applyOps([{ object: name, op: "remove", id }]),
    }),
    [s, name],
  );
  return [items, ops];
}

/** The session's runs (`active`: the ones still going) and cancel. */
export function useRuns(): { runs: RunInfo[]; active: RunInfo[]; cancel: (id: string) => Promise<unknown> } {
  const s = useSession();
  const runs = useSessionValue((x) => x.runs);
  return { runs, active: runs.filter((r) => r.status === "running"), cancel: (id) => s.cancelRun(id) };
}

/** Options of {@link useWeftChat}. */
export interface UseWeftChatOptions {
  /** The app's route that starts the agent (default `/api/chat`), or `null`
   * when Weft wakes the agent (see `@weft/ai-sdk`'s `createWakeHandler`). */
  api?: string | null;
  /** Extra JSON members for the route's body. */
  body?: Record<string, unknown>;
}

/**
 * `useChat` on the session's conversation: messages posted and runs
 * started by any participant appear here; `stop()` cancels the run for
 * everyone; a run in progress is resumed after a refresh.
 */
export function useWeftChat(opts: UseWeftChatOptions = {}): ReturnType<typeof useChat<UIMessage>> {
  const s = useSession();
  const transport = useMemo(() => {
    const t: ConstructorParameters<typeof WeftChatTransport>[0] = { session: s, api: opts.api === undefined ? "/api/chat" : opts.api };
    if (opts.body) t.body = opts.body;
    return new WeftChatTransport<UIMessage>(t);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [s, opts.api]);
  const chat = useChat<UIMessage>({ id: s.id, transport, messages: s.messages as unknown as UIMessage[] });
  const version = useSessionVersion(s);
  const resuming = useRef<string | null>(null);
  const { status, setMessages, resumeStream } = chat;
  useEffect(() => {
    // The session's messages are the truth (everyone's messages, ended runs);
    // what the chat has beyond them (a message being sent, the answer being
    // streamed, which the chat finds by id) follows them, as the session
    // will log it.
    setMessages((current) => {
      const fromSession = s.messages as unknown as UIMessage[];
      const ids = new Set(fromSession.map((m) => m.id));
      const busy = status === "submitted" || status === "streaming";
      const extra = current.filter((m) => !ids.has(m.id) && (busy || m.role === "user"));
      const next = [...fromSession, ...extra];
      return JSON.stringify(next) === JSON.stringify(current) ? current : next;
    });
    if (status === "submitted" || status === "streaming") return;
    // A run someone started (or one going on before a refresh): follow it.
    const active = s.activeRuns.at(-1);
    if (active && resuming.current !== active.id) {
      resuming.current = active.id;
      void resumeStream();
    }
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [version, status]);
  return chat;
}

export type { WeftSession } from "@weft/client";
