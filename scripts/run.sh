#!/usr/bin/env bash
# Set up, build and start Weft on the embedded storage (./weft-data).
# Extra arguments go to `weft serve` (see `build/weft --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
make -s -j"$(nproc)" build/weft
exec build/weft serve "$@"
