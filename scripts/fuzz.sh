#!/usr/bin/env bash
# Build every libFuzzer target under fuzz/ with clang (ASan + UBSan) and run
# each for SECONDS (default 20) on its seed corpus. Usage: scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
out=build-fuzz
mkdir -p "$out"
lib_srcs=$(find src -name '*.c' ! -name main.c | sort)
rc=0
for target in fuzz/fuzz_*.c; do
  name=$(basename "$target" .c)
  corpus=fuzz/corpus/${name#fuzz_}
  clang -std=c17 -g -O1 -D_GNU_SOURCE -pthread -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=all -Isrc "$target" $lib_srcs $(pkg-config --cflags --libs libdeflate liburing libsodium jansson libcurl libpq) -lpg_query -lm \
    -o "$out/$name"
  work=$(mktemp -d /tmp/weft-fuzz.XXXXXX)
  [[ -d "$corpus" ]] && cp -r "$corpus"/. "$work"/
  if "$out/$name" -max_total_time="$secs" -print_final_stats=1 "$work" >"$out/$name.log" 2>&1; then
    echo "fuzz $name: ok ($(grep -o 'stat::number_of_executed_units: [0-9]*' "$out/$name.log" | awk '{print $2}' || true) runs, ${secs}s)"
  else
    echo "fuzz $name: FAILED"; tail -30 "$out/$name.log"; rc=1
  fi
  rm -rf "$work"
done
exit $rc
