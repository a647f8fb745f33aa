#!/usr/bin/env bash
# The whole test suite, as CI runs it: install, lint, type-check, then every test
# against real PostgreSQL, Redis-protocol and NATS servers (throwaway stand-ins
# on the test ports when nothing listens there).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
scripts/test-services.sh check # before anything slow: say what the machine lacks
scripts/bootstrap-venv.sh dev
echo "== ruff"; .venv/bin/ruff check .
echo "== mypy --strict"; .venv/bin/mypy
scripts/ensure-chromium.sh  # tests/browser drive /usr/bin/chromium
export TEST_SERVICES_DIR
TEST_SERVICES_DIR=$(mktemp -d "${TMPDIR:-/tmp}/agent-executor-test-services.XXXXXX")
trap 'scripts/test-services.sh stop' EXIT
scripts/test-services.sh start
echo "== pytest"
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
