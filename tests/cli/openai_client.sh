#!/usr/bin/env bash
# The npm `openai` client against `bee serve` (tests/openai/client.cjs): models,
# completions and chat completions, plain and streamed, logprobs, n, seed,
# stop, and the client's error classes for 401/400/404. Skips (77) without
# node or without the pinned package in .cache/openai (scripts/setup-e2e.sh).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bee="${BEE_BIN:-$root/build/bee}"
modules="$root/.cache/openai/node_modules"
command -v node >/dev/null || { echo "SKIP: no node (scripts/setup-e2e.sh)"; exit 77; }
[ -d "$modules/openai" ] || { echo "SKIP: no openai package in .cache/openai (scripts/setup-e2e.sh)"; exit 77; }
"$bee" serve --help 2>&1 | grep -q -- "--api-key-file" || { echo "SKIP: bee built without the server"; exit 77; }
base="${BEE_TMPDIR:-/tmp}"
mkdir -p "$base"
dir="$(mktemp -d "$base/openai.XXXXXX")"
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"' EXIT

echo "sk-bee-test-$$" >"$dir/keys"
: >"$dir/log"
"$bee" serve -m "$root/models/bee-default.gguf" --name bee-default --port 0 --threads 2 --parallel 4 \
  --api-key-file "$dir/keys" --ctx 512 2>"$dir/log" &
pid=$!
port=""
for _ in $(seq 1 300); do
  port="$(sed -nE 's/.*listening on http:\/\/127\.0\.0\.1:([0-9]+).*/\1/p' "$dir/log")"
  [ -n "$port" ] && grep -q ready "$dir/log" && break
  kill -0 "$pid" 2>/dev/null || { cat "$dir/log"; exit 1; }
  sleep 0.1
done
grep -q ready "$dir/log" || { echo "server not ready"; cat "$dir/log"; exit 1; }
echo "# openai $(node -p "require('$modules/openai/package.json').version"), node $(node --version)"
NODE_PATH="$modules" timeout 180 node "$root/tests/openai/client.cjs" "$port" "$(cat "$dir/keys")" bee-default
