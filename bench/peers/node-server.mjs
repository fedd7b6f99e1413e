// The Node reference server (@durable-streams/server), for side-by-side
// benchmarks. Usage: node bench/peers/node-server.mjs PORT [DATA_DIR]
// With DATA_DIR it runs file-backed (LMDB + append-only logs), without it
// in memory. Compression is off: the load generator compares raw bytes.
import { DurableStreamTestServer } from "@durable-streams/server";

const [port, dataDir] = process.argv.slice(2);
const server = new DurableStreamTestServer({
  port: Number(port),
  host: "127.0.0.1",
  compression: false,
  ...(dataDir ? { dataDir } : {}),
});
const url = await server.start();
console.log(`node reference server (${dataDir ? "file" : "memory"}) at ${url}`);
const stop = async () => {
  await server.stop();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
