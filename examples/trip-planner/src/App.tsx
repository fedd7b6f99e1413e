import { WeftProvider } from "@weft/react";
import { useState } from "react";

import { Avatars } from "./components/Avatars.js";
import { Budget } from "./components/Budget.js";
import { Chat } from "./components/Chat.js";
import { Itinerary } from "./components/Itinerary.js";
import { TripMap } from "./components/TripMap.js";
import { TripTitle } from "./components/TripTitle.js";
import { person, rename, tripId } from "./identity.js";

/** This person's token for the trip, from the demo's server (when Weft requires tokens). */
async function fetchToken(person: string, trip: string): Promise<string> {
  const r = await fetch(`/api/token?person=${encodeURIComponent(person)}&trip=${encodeURIComponent(trip)}`);
  if (!r.ok) throw new Error(`token: ${r.status} ${await r.text()}`);
  return ((await r.json()) as { token: string }).token;
}

export function App({ weftUrl, model, auth }: { weftUrl: string; model: string; auth: boolean }) {
  const [me, setMe] = useState(person);
  const [trip] = useState(tripId);
  const [draft, setDraft] = useState(me.name);
  const display = me.name || `Guest ${me.id.slice(2, 6)}`;
  return (
    <WeftProvider
      key={me.name}
      url={weftUrl}
      id={trip}
      client={me.id}
      ttlSeconds={30 * 24 * 3600}
      presence={{ name: display }}
      {...(auth ? { token: () => fetchToken(me.id, trip) } : {})}
      fallback={<p className="loading">Connecting to the trip…</p>}
    >
      <header>
        <h1>
          <TripTitle />
        </h1>
        <Avatars />
        <form
          className="name"
          onSubmit={(e) => {
            e.preventDefault();
            setMe(rename(draft.trim()));
          }}
        >
          <input data-testid="name" placeholder="Your name" value={draft} onChange={(e) => setDraft(e.target.value)} />
        </form>
        <button className="share" onClick={() => void navigator.clipboard?.writeText(location.href)} title={location.href}>
          Share link
        </button>
      </header>
      <main>
        <section className="chat">
          <Chat />
          <p className="model">model: {model}</p>
        </section>
        <section className="plan">
          <TripMap />
          <Budget />
          <Itinerary />
        </section>
      </main>
    </WeftProvider>
  );
}
