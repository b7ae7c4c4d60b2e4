#!/usr/bin/env bash
# The serving benchmark's client (bench/serve_bench.c) against a tiny server:
# its requests must still be what bee serve answers (it counts tokens from the
# stream's usage event), so a wire-format change cannot silently break the
# benchmark behind docs/PERFORMANCE.md. Skips (77) without the server or the
# serve_bench binary.
set -euo pipefail
. "$(cd "$(dirname "$0")" && pwd)/lib/serve.sh"
bee="${BEE_BIN:-build/bee}"
bench="$(dirname "$bee")/serve_bench"
[ -x "$bench" ] || { echo "SKIP: no $bench"; exit 77; }
serve_available "$bee" || { echo "SKIP: bee built without libmicrohttpd"; exit 77; }
serve_scratch sbench
dir=$SERVE_DIR
"$bee" init -o "$dir/m.gguf" --seed 3 >/dev/null 2>&1
serve_start "$dir/log" "$bee" -m "$dir/m.gguf" --parallel 2 --threads 1 || { cat "$dir/log"; exit 1; }
out="$("$bench" "$SERVE_PORT" 2 2 5)" || { echo "not ok - serve_bench failed: $out"; exit 1; }
echo "$out"
grep -q "requests=4 tokens=20 failures=0" <<<"$out" || { echo "not ok - expected 4 requests of 5 tokens, no failures"; exit 1; }
echo "ok - serve_bench: 4 streamed requests, 20 tokens counted from the usage events"
