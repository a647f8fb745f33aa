#!/usr/bin/env bash
# Quick start: install into .venv (skipped when pyproject.toml and requirements.lock
# are unchanged, so it also starts offline) and serve on :8080 with embedded defaults
# (SQLite checkpoints and ledger under .agent-executor/, in-process streams, HTTP only).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
"$ROOT/scripts/bootstrap-venv.sh"
exec "$ROOT/.venv/bin/agent-executor" serve "$@"
