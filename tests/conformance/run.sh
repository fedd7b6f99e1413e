#!/usr/bin/env bash
# Run the public Durable Streams conformance suite against the real weft
# binary, and compare its failures with known-failures.txt: a new failure or
# a listed test that now passes both fail this run (the list only shrinks).
# Usage: tests/conformance/run.sh [path/to/weft]
set -uo pipefail
cd "$(dirname "$0")/../.."
weft=${1:-build/weft}
keep=${KEEP_RESULTS:-}
dir=$(mktemp -d /tmp/weft-conf.XXXXXX)
port=$((10000 + RANDOM % 22000)) # below the ephemeral range
"$weft" serve --port "$port" --data-dir "$dir/data" --long-poll-timeout 2s \
  --sse-max-duration 10s >"$dir/server.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && break
  sleep 0.1
done
CONFORMANCE_TEST_URL="http://127.0.0.1:$port" timeout 1200 node_modules/.bin/vitest run \
  --root tests/conformance --no-coverage --reporter=dot --reporter=json --outputFile.json="$dir/results.json" \
  >"$dir/vitest.out" 2>&1
kill "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
server_rc=$?
node tests/conformance/compare.mjs "$dir/results.json" tests/conformance/known-failures.txt
rc=$?
if ((rc != 0)); then
  echo "conformance: vitest output tail:"; tail -40 "$dir/vitest.out"
  echo "conformance: server log tail:"; tail -20 "$dir/server.log"
fi
if ((server_rc != 0)); then echo "conformance: weft exited with status $server_rc on SIGTERM"; rc=1; fi
[[ -n "$keep" ]] && cp "$dir/results.json" "$keep"
rm -rf "$dir"
exit $rc
