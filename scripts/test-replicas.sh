#!/usr/bin/env bash
# The integration suites that drive a gateway through test/support/harness.ts (startGateway), run
# against three replicas sharing one PostgreSQL database and one SoftHSM2 token behind a
# round-robin balancer (harness.ts replicaCount), then the suite-wide secret scan of their logs.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! npx tsx -e "const why = require('./test/support/postgres').postgresUnavailable(); if (why) { console.log('replicated suite skipped: ' + why); process.exit(3); }"; then
  exit 0
fi
mapfile -t suites < <(grep -l 'startGateway(' test/integration/*.test.ts)
QKMS_TEST_REPLICAS="${QKMS_TEST_REPLICAS:-3}" exec npx mocha --no-config --require tsx/cjs --require test/support/integration-hooks.ts \
  --timeout 30000 --reporter "${MOCHA_REPORTER:-spec}" "${suites[@]}" test/integration/zz-log-scan.test.ts "$@"
