#!/usr/bin/env bash
# Install what building and testing Weft needs, on a fresh Debian machine (as
# root). Installs only what is missing; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in build-essential gcc clang make pkg-config libdeflate-dev liburing-dev libsodium-dev libjansson-dev libcurl4-openssl-dev libpg-query-dev libpq-dev postgresql libfuzzer-14-dev libclang-rt-14-dev nodejs npm curl python3 e2fsprogs; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
# A node that is already on PATH (not from apt) is fine.
if command -v node >/dev/null && command -v npm >/dev/null; then
  need=("${need[@]/nodejs}"); need=("${need[@]/npm}")
fi
pkgs=()
for p in "${need[@]}"; do [[ -n "$p" ]] && pkgs+=("$p"); done
if ((${#pkgs[@]})); then
  echo "setup: installing ${pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
for arg in "$@"; do
  case $arg in
    --with-node-deps)
      # npm ci when node_modules is missing or older than the lockfile
      if [[ ! -f node_modules/.package-lock.json ]] || [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
        echo "setup: npm ci"
        npm ci --no-audit --no-fund --loglevel=error
      fi ;;
    --with-browser)
      # Debian's chromium for the end-to-end tests (playwright-core drives it; nothing is downloaded)
      if [[ ! -x /usr/bin/chromium ]]; then
        echo "setup: installing chromium"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq chromium >/dev/null
      fi ;;
    *) echo "setup: unknown option $arg (--with-node-deps, --with-browser)"; exit 2 ;;
  esac
done
