#!/usr/bin/env bash
# Creates .venv (if missing) and installs the project into it; prints nothing on success.
# Usage: scripts/bootstrap-venv.sh [extra]   e.g. `dev` for the test tools.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
cd "$ROOT"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
spec="."
[ -n "${1:-}" ] && spec=".[$1]"
.venv/bin/python -m pip install -q -e "$spec" 2>&1 | grep -v "^WARNING: Location" || true
if [ -d examples/tools ] && [ "${1:-}" = dev ]; then
  .venv/bin/python -m pip install -q -e examples/tools 2>&1 | grep -v "^WARNING: Location" || true
fi
.venv/bin/python -c "import agent_executor" # fails loudly if the install did not work
