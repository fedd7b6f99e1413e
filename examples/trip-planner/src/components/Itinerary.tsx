import { useList, useMap } from "@weft/react";
import { useState } from "react";

export interface Stop {
  name: string;
  lat?: number;
  lon?: number;
  note?: string;
}

function Day({ day }: { day: number }) {
  const [stops, list] = useList<Stop>(`day:${day}`);
  const [draft, setDraft] = useState("");
  return (
    <div className="day" data-testid={`day-${day}`}>
      <h3>Day {day}</h3>
      <ol>
        {stops.map((s, i) => (
          <li key={s.id} data-testid="stop" data-id={s.id}>
            <input
              data-testid="stop-name"
              defaultValue={s.value.name}
              key={s.value.name}
              onBlur={(e) => e.target.value !== s.value.name && void list.update(s.id, { ...s.value, name: e.target.value })}
            />
            <button data-testid="stop-up" disabled={i === 0} onClick={() => void list.move(s.id, i >= 2 ? stops[i - 2]!.id : null)}>
              ↑
            </button>
            <button data-testid="stop-down" disabled={i === stops.length - 1} onClick={() => void list.move(s.id, stops[i + 1]!.id)}>
              ↓
            </button>
            <button data-testid="stop-remove" onClick={() => void list.remove(s.id)}>
              ✕
            </button>
          </li>
        ))}
      </ol>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          if (draft.trim()) void list.insert({ name: draft.trim() });
          setDraft("");
        }}
      >
        <input data-testid="add-stop" placeholder="Add a stop" value={draft} onChange={(e) => setDraft(e.target.value)} />
      </form>
    </div>
  );
}

/** Day by day, each day a shared list: edits by hand and by the agent all survive. */
export function Itinerary() {
  const [trip] = useMap<{ days?: number }>("trip");
  const days = Math.max(1, Math.min(14, trip?.days ?? 1));
  return (
    <div className="itinerary" data-testid="itinerary">
      {Array.from({ length: days }, (_, i) => (
        <Day key={i + 1} day={i + 1} />
      ))}
    </div>
  );
}
