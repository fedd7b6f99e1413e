// The public Durable Streams server conformance suite, exactly as its own
// CLI runs it (default options), against the server at CONFORMANCE_TEST_URL.
import { runConformanceTests } from "@durable-streams/server-conformance-tests";

runConformanceTests({ baseUrl: process.env.CONFORMANCE_TEST_URL });
