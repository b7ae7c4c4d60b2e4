#!/usr/bin/env bash
# Schema and invariant check of deploy/k8s/*.yaml and deploy/Dockerfile
# (tests/k8s/lint.cjs, docs/DEPLOY.md "Checks"), including broken copies of
# them that must be rejected. Skips (77) without node or without the npm
# packages in .cache/k8s-lint (scripts/setup-lint.sh installs them).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
modules="$root/.cache/k8s-lint/node_modules"
command -v node >/dev/null || { echo "SKIP: no node (scripts/setup-lint.sh)"; exit 77; }
for m in kubernetes-models yaml dockerfile-utils dockerfile-ast; do
  [ -d "$modules/$m" ] || { echo "SKIP: no $m in .cache/k8s-lint (scripts/setup-lint.sh)"; exit 77; }
done
if [ -n "${BEE_TMPDIR:-}" ]; then mkdir -p "$BEE_TMPDIR"; fi
NODE_PATH="$modules" timeout 120 node "$root/tests/k8s/lint.cjs" "$@"
# The kustomize build itself, where a kubectl is installed (not by the setup
# scripts: Debian 12's kubernetes-client is kubectl 1.20).
if command -v kubectl >/dev/null && [ $# -eq 0 ]; then
  timeout 60 kubectl kustomize "$root/deploy/k8s" >/dev/null || { echo "not ok - kubectl kustomize deploy/k8s failed"; exit 1; }
  echo "ok - kubectl kustomize deploy/k8s ($(kubectl version --client 2>/dev/null | head -1))"
else
  echo "# kubectl kustomize not run (no kubectl)"
fi
