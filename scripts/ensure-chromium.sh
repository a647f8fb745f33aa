#!/usr/bin/env bash
# The browser tests (tests/browser/) drive Debian's Chromium at $CHROMIUM_PATH
# (default /usr/bin/chromium) through Playwright; Playwright's own browser
# download is never used. Installs the `chromium` package with apt when it is
# missing and this runs as root; otherwise says what to install.
set -euo pipefail
CHROMIUM=${CHROMIUM_PATH:-/usr/bin/chromium}
[ -x "$CHROMIUM" ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "== installing chromium with apt (the browser tests need $CHROMIUM)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q chromium >/dev/null
fi
if [ ! -x "$CHROMIUM" ]; then
  echo "ensure-chromium: $CHROMIUM is missing; install Debian's chromium package" \
       "(apt-get install chromium) or set CHROMIUM_PATH to a Chromium binary" >&2
  exit 1
fi
