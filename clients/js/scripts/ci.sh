#!/usr/bin/env bash
# The JavaScript client's tests, as ctest runs them (test js_client): install the pinned
# packages (npm ci, when the lock file changed since the last install), generate the
# schema code from ../../protocol, run node --test against real nodes (HOLDFAST_BIN).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cmp -s package-lock.json node_modules/.holdfast-installed-lock 2>/dev/null; then
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json node_modules/.holdfast-installed-lock
else
  npm run --silent gen
fi
exec npm test --silent
