#!/usr/bin/env bash
# Set up, build and start Weft (on 127.0.0.1:4437, data in ./weft-data) and
# the trip planner demo (on 127.0.0.1:3000), then print where to open it.
# Extra arguments go to `weft serve` (see `build/weft --help`). Env:
# TRIP_PORT (default 3000); ANTHROPIC_API_KEY or OPENAI_API_KEY for a real
# model (else the scripted one); WEFT_ONLY=1 starts Weft alone; WEFT_AUTH=1
# makes Weft require capability tokens (a secret in ./weft-secret, made if
# missing), which the demo's server mints per person (docs/auth.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --with-node-deps
make -s -j"$(nproc)" build/weft
if [[ "${WEFT_ONLY:-}" == 1 ]]; then exec build/weft serve "$@"; fi
npm run --silent build:js >/dev/null

# Weft's address: --host/--port from the arguments, else the defaults.
host=127.0.0.1 port=4437 args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case ${args[i]} in
    --port) port=${args[i + 1]:-$port} ;;
    --port=*) port=${args[i]#--port=} ;;
    --host) host=${args[i + 1]:-$host} ;;
    --host=*) host=${args[i]#--host=} ;;
  esac
done
[[ $host == 0.0.0.0 ]] && host=127.0.0.1

auth=()
if [[ "${WEFT_AUTH:-}" == 1 ]]; then
  [[ -s weft-secret ]] || (umask 077; head -c 48 /dev/urandom | base64 > weft-secret)
  auth=(--auth-secret-file weft-secret)
  export WEFT_AUTH_SECRET_FILE=$PWD/weft-secret
fi
build/weft serve "${auth[@]}" "$@" &
weft=$!
trap 'kill $weft $demo 2>/dev/null; wait 2>/dev/null' EXIT INT TERM
for _ in $(seq 100); do
  curl -s -o /dev/null "http://$host:$port/healthz" && break
  kill -0 $weft 2>/dev/null || { echo "run: weft did not start"; exit 1; }
  sleep 0.1
done
WEFT_URL="http://$host:$port" node examples/trip-planner/dist-server/server/index.js &
demo=$!
for _ in $(seq 100); do
  curl -s -o /dev/null "http://127.0.0.1:${TRIP_PORT:-3000}/api/config" && break
  kill -0 $demo 2>/dev/null || { echo "run: the demo did not start"; exit 1; }
  sleep 0.1
done
echo
echo "  Weft:         http://$host:$port"
echo "  Trip planner: http://127.0.0.1:${TRIP_PORT:-3000}/  (open it in two browsers; share the URL with ?trip=...)"
echo
wait -n $weft $demo
