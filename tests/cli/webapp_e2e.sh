#!/usr/bin/env bash
# End-to-end test of the chat web app in a real browser: headless chromium
# driven by playwright-core (tests/e2e/webapp.cjs) against `bee serve` over a
# tiny random model, then the thumbs-up is looked up in the feedback store.
# Skips (77) without node, chromium or playwright-core (scripts/setup-e2e.sh
# installs them) or without libmicrohttpd/SQLite.
set -euo pipefail
. "$(cd "$(dirname "$0")" && pwd)/lib/serve.sh"
root="$(cd "$(dirname "$0")/../.." && pwd)"
bee="${BEE_BIN:-$root/build/bee}"
base="${BEE_TMPDIR:-/tmp}"
modules="$root/.cache/e2e/node_modules"
chrome="$(command -v chromium || command -v chromium-browser || true)"
command -v node >/dev/null || { echo "SKIP: no node"; exit 77; }
[ -n "$chrome" ] || { echo "SKIP: no chromium (scripts/setup-e2e.sh)"; exit 77; }
[ -d "$modules/playwright-core" ] || { echo "SKIP: no playwright-core in .cache/e2e (scripts/setup-e2e.sh)"; exit 77; }

mkdir -p "$base"
dir="$(mktemp -d "$base/e2e.XXXXXX")"
pid=""
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi; rm -rf "$dir"' EXIT
"$bee" init -o "$dir/m.gguf" --seed 5 >/dev/null 2>&1
cat > "$dir/policy.json" <<'JSON'
{"categories": {"blocklist": {"action": "block", "terms": ["出售炸药"]}}}
JSON
serve_start "$dir/log" "$bee" -m "$dir/m.gguf" -t 1 --parallel 2 --policy "$dir/policy.json" \
  --feedback-db "$dir/fb.sqlite" || true
pid=$SERVE_PID
if grep -q "without libmicrohttpd\|without SQLite" "$dir/log"; then echo "SKIP: bee lacks libmicrohttpd or SQLite"; exit 77; fi
grep -q ready "$dir/log" || { echo "bee serve did not start:"; cat "$dir/log"; exit 1; }

NODE_PATH="$modules" timeout 120 node "$root/tests/e2e/webapp.cjs" "http://127.0.0.1:$SERVE_PORT/" "$chrome"

# the thumbs-up is in the store: one rated response, exported as an SFT example
"$bee" feedback export --db "$dir/fb.sqlite" --out "$dir/export" | tee "$dir/export.log"
grep -q "exported 1 responses with feedback" "$dir/export.log" || { echo "thumbs-up not in the feedback store"; exit 1; }
grep -q '你好' "$dir/export/sft.jsonl" || { echo "sft.jsonl lacks the rated prompt"; cat "$dir/export/sft.jsonl"; exit 1; }
echo "ok - thumbs-up recorded in the feedback store"
