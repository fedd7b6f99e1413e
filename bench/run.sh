#!/usr/bin/env bash
# The benchmark suite: installs what it needs (nginx, the Node reference
# server from the lockfile), builds weft and the load generator, runs
# bench/run.py. Usage: bench/run.sh {smoke|quick|full} [--only WORKLOAD]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --with-node-deps
if ! command -v nginx >/dev/null; then
  echo "bench: installing nginx"
  apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
fi
make -s -j"$(nproc)" build/weft build/loadgen build/floor
exec python3 bench/run.py "$@"
