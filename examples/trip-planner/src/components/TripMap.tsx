import { useSessionValue } from "@weft/react";
import type { ListItem } from "@weft/client";
import { geoMercator, geoPath } from "d3-geo";
import { useMemo } from "react";
import { feature } from "topojson-client";
import type { GeometryCollection, Topology } from "topojson-specification";
import world from "world-atlas/countries-110m.json";

import type { Stop } from "./Itinerary.js";

const W = 480;
const H = 300;
const topology = world as unknown as Topology<{ countries: GeometryCollection }>;
const countries = feature(topology, topology.objects.countries);

/** The trip on a map drawn offline from world-atlas: a pin per stop. */
export function TripMap() {
  const pins = useSessionValue((s) => {
    const out: Array<{ id: string; day: number; name: string; lon: number; lat: number }> = [];
    for (const [name, v] of Object.entries(s.objects)) {
      const m = /^day:(\d+)$/.exec(name);
      if (!m || !Array.isArray(v)) continue;
      for (const it of v as unknown as Array<ListItem<Stop>>)
        if (typeof it.value.lat === "number" && typeof it.value.lon === "number")
          out.push({ id: it.id, day: Number(m[1]), name: it.value.name, lon: it.value.lon, lat: it.value.lat });
    }
    return out;
  });
  const projection = useMemo(() => {
    const p = geoMercator();
    if (!pins.length) return p.fitSize([W, H], countries);
    // The pins' box, at least ~8 km wide.
    const lons = pins.map((x) => x.lon);
    const lats = pins.map((x) => x.lat);
    const [cx, cy] = [(Math.min(...lons) + Math.max(...lons)) / 2, (Math.min(...lats) + Math.max(...lats)) / 2];
    const half = Math.max(0.04, (Math.max(...lons) - Math.min(...lons)) / 2, (Math.max(...lats) - Math.min(...lats)) / 2);
    const box = { type: "MultiPoint" as const, coordinates: [[cx - half, cy - half], [cx + half, cy + half]] };
    return p.fitExtent([[20, 20], [W - 20, H - 20]], box);
  }, [pins]);
  const path = geoPath(projection);
  return (
    <svg className="map" data-testid="map" viewBox={`0 0 ${W} ${H}`} role="img" aria-label="Map of the trip">
      <rect width={W} height={H} className="sea" />
      {countries.features.map((f, i) => (
        <path key={i} d={path(f) ?? ""} className="land" />
      ))}
      {pins.map((p) => {
        const xy = projection([p.lon, p.lat]);
        if (!xy) return null;
        return (
          <g key={p.id} transform={`translate(${xy[0]},${xy[1]})`} data-testid="pin">
            <circle r={5} className={`pin day${p.day % 5}`} />
            <text x={7} y={4}>{p.name}</text>
          </g>
        );
      })}
    </svg>
  );
}
