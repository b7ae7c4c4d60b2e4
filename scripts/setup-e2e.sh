#!/usr/bin/env bash
# Installs what the end-to-end tests need: node and npm (Debian packages);
# the npm `openai` client pinned in tests/openai/package-lock.json into
# .cache/openai (tests/cli/openai_client.sh); Debian's chromium (apt) and the
# npm package playwright-core into .cache/e2e (tests/cli/webapp_e2e.sh). All
# git-ignored. Safe to re-run. Needs root or sudo for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm
fi
# v4 of the openai package: v5 needs node 20, Debian 12 has node 18
dir=.cache/openai
mkdir -p "$dir"
if ! cmp -s tests/openai/package-lock.json "$dir/package-lock.json" || [ ! -d "$dir/node_modules/openai" ]; then
  cp tests/openai/package.json tests/openai/package-lock.json "$dir/"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
fi
if ! command -v chromium >/dev/null; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium
fi
mkdir -p .cache/e2e
if [ ! -d .cache/e2e/node_modules/playwright-core ]; then
  (cd .cache/e2e && npm init -y >/dev/null && npm install --no-audit --no-fund playwright-core)
fi
echo "setup-e2e: node $(node --version), openai $(node -p "require('./$dir/node_modules/openai/package.json').version") in $dir," \
  "chromium $(chromium --version 2>/dev/null | awk '{print $2}'), playwright-core in .cache/e2e"
