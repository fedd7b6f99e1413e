// The public Durable Streams server conformance suite against the server at
// CONFORMANCE_TEST_URL: every test its own CLI runs, and the reserved
// subscription APIs (webhooks, pull-wake), which the CLI never enables.
import { runConformanceTests } from "@durable-streams/server-conformance-tests";

runConformanceTests({ baseUrl: process.env.CONFORMANCE_TEST_URL, subscriptions: true });
