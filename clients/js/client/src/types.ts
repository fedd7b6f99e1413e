/**
 * The wire types of a Weft session, as docs/sessions.md defines them.
 * @module
 */

/** A JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** A conversation message: the Vercel AI SDK's `UIMessage` shape. */
export interface SessionMessage {
  id: string;
  role: "user" | "assistant" | "system";
  parts: Array<{ type: string; [key: string]: unknown }>;
  metadata?: unknown;
}

/** One AI SDK UI message chunk (`text-delta`, `tool-input-available`, ...). */
export interface UIChunk {
  type: string;
  [key: string]: unknown;
}

/** How a run ended. */
export type RunEndReason = "complete" | "cancelled" | "error";

/** A run: an agent's answer, in progress or ended. */
export interface RunInfo {
  id: string;
  /** The client id that started it; only it may stream into it. */
  owner: string;
  status: "running" | RunEndReason;
  /** The message it answers, or null. */
  answers: string | null;
  /** The id its output will have as a message once it ends. */
  message_id: string;
  started_at: string;
  metadata?: Json;
  ended_at?: string;
  error?: string;
  cancelled_by?: string;
}

/** A member of the session's presence: one person, however many tabs. */
export interface PresenceMember {
  client: string;
  entered_at: string;
  data: Json;
}

/** An item of a shared list. */
export interface ListItem<T = Json> {
  id: string;
  value: T;
}

/** A path into a map: one key, or keys from the top. */
export type MapPath = string | string[];

/** One op of an object batch (see "Objects" in docs/sessions.md). */
export type ObjectOp =
  | { object: string; op: "set"; path: MapPath; value: Json }
  | { object: string; op: "remove"; path: MapPath }
  | { object: string; op: "increment"; by?: number }
  | { object: string; op: "insert"; id?: string; value: Json; after?: string | null }
  | { object: string; op: "move"; id: string; after?: string | null }
  | { object: string; op: "update"; id: string; value: Json }
  | { object: string; op: "remove"; id: string }
  | { object: string; op: "delete" };

/** The chunk entity of a running run: its latest batch. */
export interface ChunkBatch {
  run: string;
  seq: number;
  chunks: UIChunk[];
}

/** A session's state, type by type, as its log materialises it. */
export interface SessionState {
  message: Record<string, SessionMessage>;
  run: Record<string, RunInfo>;
  chunk: Record<string, ChunkBatch>;
  object: Record<string, Json>;
  presence: Record<string, PresenceMember>;
}

/** The answer of an attach (`GET /v1/session/{id}`). */
export interface AttachSnapshot {
  id: string;
  offset: string;
  state: SessionState;
  /** Every chunk so far of each run still going. */
  output: Record<string, UIChunk[]>;
}

/** A State Protocol change event of the log. */
export interface ChangeEvent {
  type: keyof SessionState;
  key: string;
  value: unknown;
  headers: {
    operation: "insert" | "update" | "delete";
    timestamp?: string;
    client?: string;
    /** An object batch's id. */
    txid?: string;
    ops?: ObjectOp[];
  };
}

/** A State Protocol control event: a new generation of the log begins. */
export interface ControlEvent {
  headers: {
    control: "snapshot-start" | "snapshot-end";
    batches?: string[];
    output?: Record<string, UIChunk[]>;
  };
}

/** Any event of a session's log. */
export type LogEvent = ChangeEvent | ControlEvent;
