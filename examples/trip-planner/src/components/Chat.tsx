import type { UIMessage } from "ai";
import { useRuns, useWeftChat } from "@weft/react";
import { useState } from "react";

type Part = UIMessage["parts"][number];

function PartView({ part }: { part: Part }) {
  if (part.type === "text") return <p className="text">{part.text}</p>;
  if (part.type === "reasoning") return <p className="reasoning">{part.text}</p>;
  if (part.type.startsWith("tool-")) {
    const p = part as { type: string; input?: { name?: string; title?: string; amount?: number }; state?: string };
    const what = p.input?.name ?? p.input?.title ?? (p.input?.amount !== undefined ? `${p.input.amount} €` : "");
    return (
      <span className="tool" data-testid="tool">
        {part.type.slice(5).replace(/_/g, " ")} {what}
      </span>
    );
  }
  return null;
}

/** The conversation: everyone's messages and the agent's answers, live; Stop stops the agent for everyone. */
export function Chat() {
  const { messages, sendMessage, status, error } = useWeftChat({ api: null });
  const { runs, active, cancel } = useRuns();
  const ended = new Map(runs.filter((r) => r.status !== "running" && r.status !== "complete").map((r) => [r.message_id, r]));
  const [input, setInput] = useState("");
  const busy = status === "submitted" || status === "streaming" || active.length > 0;
  return (
    <div className="conversation">
      <div className="messages" data-testid="messages">
        {messages.map((m) => (
          <div key={m.id} className={`message ${m.role}`} data-testid="message" data-role={m.role} data-id={m.id}>
            {m.parts.map((p, i) => (
              <PartView key={i} part={p} />
            ))}
            {ended.has(m.id) && (
              <span className="ended" data-testid="run-ended">
                {ended.get(m.id)?.status === "cancelled" ? "Stopped" : `Failed: ${ended.get(m.id)?.error ?? ""}`}
              </span>
            )}
          </div>
        ))}
        {runs
          .filter((r) => r.status === "error" && !messages.some((m) => m.id === r.message_id))
          .map((r) => (
            <p key={r.id} className="error" data-testid="run-ended">
              The agent failed: {r.error}
            </p>
          ))}
        {error && <p className="error">{error.message}</p>}
      </div>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          if (!input.trim() || busy) return;
          void sendMessage({ text: input.trim() });
          setInput("");
        }}
      >
        <input data-testid="prompt" value={input} placeholder="Plan 3 days in Rome…" onChange={(e) => setInput(e.target.value)} />
        {busy ? (
          <button type="button" data-testid="stop" onClick={() => active.forEach((r) => void cancel(r.id))}>
            Stop
          </button>
        ) : (
          <button type="submit" data-testid="send">
            Send
          </button>
        )}
      </form>
    </div>
  );
}
