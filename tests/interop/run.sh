#!/usr/bin/env bash
# Interop: sessions served by the real weft binary, read with the published
# @durable-streams/client and materialised with @durable-streams/state
# (pinned in package.json). Builds nothing; needs `npm ci` done.
# Usage: tests/interop/run.sh path/to/weft
# Ends with "interop: N passed, N failed".
set -uo pipefail
weft=${1:?usage: tests/interop/run.sh path/to/weft}
[[ "$weft" == /* ]] || weft="$PWD/$weft"
cd "$(dirname "$0")/../.."
if [[ ! -x "$weft" ]]; then
  echo "interop: $weft is not an executable"; echo "interop: 0 passed, 1 failed"; exit 1
fi
if [[ ! -d node_modules/@durable-streams/state || ! -d node_modules/@durable-streams/client ]]; then
  echo "interop: node_modules lacks @durable-streams/state or client (run npm ci)"
  echo "interop: 0 passed, 1 failed"; exit 1
fi
timeout 300 node tests/interop/session_state.test.mjs "$weft"
rc=$?
if ((rc == 124)); then echo "interop: timed out after 300 s"; echo "interop: 0 passed, 1 failed"; fi
exit $rc
