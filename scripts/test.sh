#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine (as root): installs what
# is missing, builds with gcc and clang (-Werror), runs the C unit tests
# plain and under ASan+UBSan, the where-clause evaluator and the pgoutput
# decoder against a real Postgres (started in a temporary directory), a
# short run of every fuzz target, the public
# Durable Streams conformance suite against the real binary, and the crash,
# disk-full, bad-input, graceful-shutdown and expiry tests over real sockets,
# the session tests (convergence, presence, every route and error path plain
# and under ASan+UBSan, cancel, SIGKILL crash, interop with
# @durable-streams/state), shapes with @electric-sql/client and a real
# Postgres, the TypeScript packages (vitest, against the real
# binary), the trip planner end to end in Debian's chromium, then a 5 s benchmark smoke run. Ends with "N passed, N failed" (steps).
set -uo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
bash scripts/setup.sh --with-node-deps --with-browser || { echo "setup failed"; exit 1; }

passed=0; failed=0; failures=()
step() {
  local name=$1; shift
  echo "=== $name"
  local t0=$SECONDS
  if "$@"; then
    passed=$((passed + 1)); echo "--- ok: $name ($((SECONDS - t0))s)"
  else
    failed=$((failed + 1)); failures+=("$name"); echo "--- FAILED: $name ($((SECONDS - t0))s)"
  fi
}

unit_tests() {
  local dir=$1 rc=0
  for t in "$dir"/tests/test_*; do
    [[ -x "$t" ]] || continue
    "$t" || rc=1
  done
  return $rc
}

step "build (gcc -Werror)" make -s -j"$jobs" CC=gcc all unit-bins build/loadgen build/floor
step "build (clang -Werror)" make -s -j"$jobs" CC=clang BUILD=build-clang all unit-bins build-clang/loadgen build-clang/floor
step "unit tests" unit_tests build
step "build (ASan+UBSan)" make -s -j"$jobs" CC=gcc SAN=1 all unit-bins
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
step "unit tests (ASan+UBSan)" unit_tests build-san
step "where clauses vs a real Postgres (differential)" python3 tests/pg/pgtmp.py -- build/tests/where_diff 5000
step "where clauses vs a real Postgres (ASan+UBSan)" python3 tests/pg/pgtmp.py -- build-san/tests/where_diff 1000
step "pgoutput decoder on a real Postgres's changes (ASan+UBSan)" python3 tests/pg/pgtmp.py -- build-san/tests/pgoutput_test
step "fuzz smoke" bash scripts/fuzz.sh "${FUZZ_SECONDS:-15}"
step "conformance suite" bash tests/conformance/run.sh build/weft
step "conformance suite (ASan+UBSan server)" bash tests/conformance/run.sh build-san/weft
step "crash test (SIGKILL)" python3 tests/proto/crash_test.py build/weft
step "disk-full test" python3 tests/proto/disk_full_test.py build/weft
step "bad-input test" python3 tests/proto/bad_input_test.py build/weft
step "graceful-shutdown test" python3 tests/proto/shutdown_test.py build/weft
step "expiry test (ASan+UBSan server)" python3 tests/proto/expiry_test.py build-san/weft
step "bad-input test (read/writev: --io-uring off)" env WEFT_IO_URING=off python3 tests/proto/bad_input_test.py build/weft
step "bad-input test (ASan+UBSan server)" python3 tests/proto/bad_input_test.py build-san/weft
step "session convergence test (50 clients)" python3 tests/proto/session_converge_test.py build/weft
step "session presence test" python3 tests/proto/session_presence_test.py build/weft
step "session protocol test" python3 tests/proto/session_test.py build/weft
step "session protocol test (ASan+UBSan server)" python3 tests/proto/session_test.py build-san/weft
step "session cancel test" python3 tests/proto/session_cancel_test.py build/weft
step "session crash test (SIGKILL)" python3 tests/proto/session_crash_test.py build/weft
step "subscriptions test (webhooks, pull-wake, restart)" python3 tests/proto/subscription_test.py build/weft
step "subscriptions test (ASan+UBSan server)" python3 tests/proto/subscription_test.py build-san/weft
step "capability tokens test" python3 tests/proto/auth_test.py build/weft
step "capability tokens test (ASan+UBSan server)" python3 tests/proto/auth_test.py build-san/weft
step "session interop test (@durable-streams/state)" bash tests/interop/run.sh build/weft
step "shapes protocol test (routes, headers, errors)" python3 tests/pg/pgtmp.py -- python3 tests/proto/shape_test.py build/weft
step "shapes protocol test (ASan+UBSan server)" python3 tests/pg/pgtmp.py -- python3 tests/proto/shape_test.py build-san/weft
step "shapes: @electric-sql/client against weft and a real Postgres" python3 tests/pg/pgtmp.py -- node_modules/.bin/vitest run --root tests/electric
step "shapes (ASan+UBSan server)" env WEFT_BIN="$PWD/build-san/weft" python3 tests/pg/pgtmp.py -- node_modules/.bin/vitest run --root tests/electric
step "TypeScript packages (typecheck, build, vitest against the real weft)" env WEFT_BIN="$PWD/build/weft" npm run --silent test:js
step "trip planner end-to-end (chromium, real weft)" env WEFT_BIN="$PWD/build/weft" TRIP_ARTIFACTS="${TRIP_ARTIFACTS:-$PWD/build/e2e-artifacts}" npm run --silent test:e2e
step "benchmark smoke run (5 s)" python3 bench/run.py smoke --out "$(mktemp -d)/bench.json"

echo
((failed)) && printf 'failed step: %s\n' "${failures[@]}"
echo "weft test suite: $passed passed, $failed failed"
((failed == 0))
