import { usePresence } from "@weft/react";

import { colorOf } from "../identity.js";

/** One avatar per person here, however many tabs they have open. */
export function Avatars() {
  const { members, self } = usePresence();
  return (
    <div className="avatars" data-testid="avatars">
      {members.map((m) => {
        const name = ((m.data as { name?: string } | null)?.name ?? m.client) || m.client;
        return (
          <span
            key={m.client}
            className={m.client === self?.client ? "avatar me" : "avatar"}
            data-testid="avatar"
            data-client={m.client}
            style={{ background: colorOf(m.client) }}
            title={name}
          >
            {name.slice(0, 1).toUpperCase()}
          </span>
        );
      })}
    </div>
  );
}
