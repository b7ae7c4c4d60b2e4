#!/usr/bin/env bash
# Installs what the browser test (tests/e2e/webapp.sh) needs: Debian's
# chromium (apt) and the npm package playwright-core, into .cache/e2e
# (git-ignored). Safe to re-run. Needs root or sudo for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm
fi
mkdir -p .cache/e2e
if [ ! -d .cache/e2e/node_modules/playwright-core ]; then
  (cd .cache/e2e && npm init -y >/dev/null && npm install --no-audit --no-fund playwright-core)
fi
echo "setup-e2e: chromium $(chromium --version 2>/dev/null | awk '{print $2}'), playwright-core in .cache/e2e"
