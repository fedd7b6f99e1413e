import { useMap } from "@weft/react";

export function TripTitle() {
  const [trip] = useMap<{ title?: string }>("trip");
  return <span data-testid="trip-title">{trip?.title ?? "A new trip"}</span>;
}
