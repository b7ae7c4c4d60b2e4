#!/usr/bin/env bash
# The npm `openai` client against `bee serve` (tests/openai/client.cjs): models,
# completions and chat completions, plain and streamed, logprobs, n, seed,
# stop, and the client's error classes for 401/400/404. Skips (77) without
# node or without the pinned package in .cache/openai (scripts/setup-e2e.sh).
set -euo pipefail
. "$(cd "$(dirname "$0")" && pwd)/lib/serve.sh"
root="$(cd "$(dirname "$0")/../.." && pwd)"
bee="${BEE_BIN:-$root/build/bee}"
modules="$root/.cache/openai/node_modules"
command -v node >/dev/null || { echo "SKIP: no node (scripts/setup-e2e.sh)"; exit 77; }
[ -d "$modules/openai" ] || { echo "SKIP: no openai package in .cache/openai (scripts/setup-e2e.sh)"; exit 77; }
serve_available "$bee" || { echo "SKIP: bee built without libmicrohttpd"; exit 77; }
serve_scratch openai
dir=$SERVE_DIR

echo "sk-bee-test-$$" >"$dir/keys"
serve_start "$dir/log" "$bee" -m "$root/models/bee-default.gguf" --name bee-default --threads 2 --parallel 4 \
  --api-key-file "$dir/keys" --ctx 512 || { echo "server not ready"; cat "$dir/log"; exit 1; }
echo "# openai $(node -p "require('$modules/openai/package.json').version"), node $(node --version)"
NODE_PATH="$modules" timeout 180 node "$root/tests/openai/client.cjs" "$SERVE_PORT" "$(cat "$dir/keys")" bee-default
