#!/usr/bin/env bash
# Installs what the deploy check (tests/cli/k8s_lint.sh, tests/k8s/lint.cjs)
# needs: node and npm (Debian packages) and the npm packages pinned in
# tests/k8s/package.json + package-lock.json (kubernetes-models, yaml,
# dockerfile-utils, dockerfile-ast), into .cache/k8s-lint (git-ignored).
# Safe to re-run: reinstalls only when the lock file changed. Needs root or
# sudo for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm
fi
dir=.cache/k8s-lint
mkdir -p "$dir"
if ! cmp -s tests/k8s/package-lock.json "$dir/package-lock.json" || [ ! -d "$dir/node_modules/kubernetes-models" ]; then
  cp tests/k8s/package.json tests/k8s/package-lock.json "$dir/"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "setup-lint: node $(node --version), $(cd "$dir" && node -p 'const l=require("./package-lock.json").packages; ["kubernetes-models","yaml","dockerfile-utils"].map(n=>n+"@"+l["node_modules/"+n].version).join(" ")') in $dir"
