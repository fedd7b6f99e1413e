// The scripted model's gazetteer: a few cities, each with sights to visit
// (coordinates in degrees), so that the demo plans offline.

export interface Place {
  name: string;
  lat: number;
  lon: number;
}

export interface City extends Place {
  country: string;
  /** Per-day budget in euros. */
  perDay: number;
  sights: Place[];
}

export const CITIES: City[] = [
  {
    name: "Rome", country: "Italy", lat: 41.9028, lon: 12.4964, perDay: 180,
    sights: [
      { name: "Colosseum", lat: 41.8902, lon: 12.4922 },
      { name: "Roman Forum", lat: 41.8925, lon: 12.4853 },
      { name: "Pantheon", lat: 41.8986, lon: 12.4769 },
      { name: "Trevi Fountain", lat: 41.9009, lon: 12.4833 },
      { name: "Vatican Museums", lat: 41.9065, lon: 12.4536 },
      { name: "Trastevere", lat: 41.8897, lon: 12.4707 },
    ],
  },
  {
    name: "Paris", country: "France", lat: 48.8566, lon: 2.3522, perDay: 200,
    sights: [
      { name: "Louvre", lat: 48.8606, lon: 2.3376 },
      { name: "Eiffel Tower", lat: 48.8584, lon: 2.2945 },
      { name: "Notre-Dame", lat: 48.853, lon: 2.3499 },
      { name: "Montmartre", lat: 48.8867, lon: 2.3431 },
      { name: "Musée d'Orsay", lat: 48.86, lon: 2.3266 },
      { name: "Le Marais", lat: 48.8575, lon: 2.3622 },
    ],
  },
  {
    name: "Lisbon", country: "Portugal", lat: 38.7223, lon: -9.1393, perDay: 140,
    sights: [
      { name: "Belém Tower", lat: 38.6916, lon: -9.216 },
      { name: "Jerónimos Monastery", lat: 38.6979, lon: -9.2068 },
      { name: "Alfama", lat: 38.7118, lon: -9.1296 },
      { name: "São Jorge Castle", lat: 38.7139, lon: -9.1335 },
      { name: "LX Factory", lat: 38.7033, lon: -9.1786 },
      { name: "Sintra", lat: 38.7976, lon: -9.3906 },
    ],
  },
  {
    name: "Tokyo", country: "Japan", lat: 35.6762, lon: 139.6503, perDay: 220,
    sights: [
      { name: "Senso-ji", lat: 35.7148, lon: 139.7967 },
      { name: "Meiji Shrine", lat: 35.6764, lon: 139.6993 },
      { name: "Shibuya Crossing", lat: 35.6595, lon: 139.7005 },
      { name: "Tsukiji Outer Market", lat: 35.6655, lon: 139.7707 },
      { name: "Ueno Park", lat: 35.7148, lon: 139.7734 },
      { name: "Shinjuku Gyoen", lat: 35.6852, lon: 139.71 },
    ],
  },
];

/** The city a request names (Rome if none), and how many days (1-5, default 3). */
export function readRequest(text: string): { city: City; days: number } {
  const lower = text.toLowerCase();
  const city = CITIES.find((c) => lower.includes(c.name.toLowerCase())) ?? (CITIES[0] as City);
  const m = /(\d+)\s*(?:-\s*)?days?/.exec(lower);
  const days = Math.min(5, Math.max(1, m ? Number(m[1]) : 3));
  return { city, days };
}
