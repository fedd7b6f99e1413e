import react from "@vitejs/plugin-react";
import { defineConfig } from "vitest/config";

// `npm run dev` serves the app with hot reload and sends /api to the demo
// server (`npm start`, port 3000 unless TRIP_PORT). `npm test` runs the
// end-to-end tests in e2e/ (a real browser; build first).
export default defineConfig({
  plugins: [react()],
  build: { chunkSizeWarningLimit: 1024 },
  server: { proxy: { "/api": `http://127.0.0.1:${process.env.TRIP_PORT ?? 3000}` } },
  test: { include: ["e2e/**/*.test.ts"], testTimeout: 90_000, hookTimeout: 60_000, fileParallelism: false },
});
