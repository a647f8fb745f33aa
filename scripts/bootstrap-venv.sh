#!/usr/bin/env bash
# Creates .venv (if missing) and installs the project into it; prints nothing on success.
# Usage: scripts/bootstrap-venv.sh [extra]   e.g. `dev` for the test tools.
#
# The install is skipped when nothing it depends on changed since the last one: a
# stamp in .venv holds the hashes of pyproject.toml, requirements.lock (and, for `dev`,
# examples/tools/pyproject.toml). The package is installed editable, so changes to the
# code itself never need a reinstall. FORCE_INSTALL=1 installs anyway.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
cd "$ROOT"
extra=${1:-}
stamp=.venv/.installed${extra:+-$extra}
inputs=(pyproject.toml requirements.lock)
[ "$extra" = dev ] && [ -f examples/tools/pyproject.toml ] && inputs+=(examples/tools/pyproject.toml)
wanted=$( (echo "extra=$extra"; sha256sum "${inputs[@]}" 2>/dev/null) | sha256sum | cut -d' ' -f1)

installed() { .venv/bin/python -c "import agent_executor" 2>/dev/null; }

if [ -x .venv/bin/python ] && [ "${FORCE_INSTALL:-}" != 1 ] \
    && [ "$(cat "$stamp" 2>/dev/null)" = "$wanted" ] && installed; then
  exit 0
fi

log=$(mktemp "${TMPDIR:-/tmp}/agent-executor-install.XXXXXX")
trap 'rm -f "$log"' EXIT
pip_install() { # quiet; its output kept in $log for when it fails
  .venv/bin/python -m pip install -q "$@" >>"$log" 2>&1
}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
  pip_install --upgrade pip || true # an old pip still installs; offline this cannot work
fi
spec="."
[ -n "$extra" ] && spec=".[$extra]"
ok=1
pip_install -e "$spec" || ok=0
if [ "$ok" = 1 ] && [ -d examples/tools ] && [ "$extra" = dev ]; then
  pip_install -e examples/tools || ok=0
fi
if [ "$ok" = 1 ] && installed; then
  echo "$wanted" >"$stamp"
  exit 0
fi
last=$(grep -v "^WARNING: Location" "$log" | grep -E "ERROR|error" | tail -n 1 || true)
if installed; then # e.g. offline, with a venv from before the stamp or an older pyproject
  echo "bootstrap-venv: could not update .venv (${last:-pip failed}); using it as it is" >&2
  exit 0
fi
echo "bootstrap-venv: installing into .venv failed: ${last:-see below}" >&2
grep -v "^WARNING: Location" "$log" | tail -n 20 >&2
exit 1
