#!/usr/bin/env bash
# KV cache memory of concurrent n > 1 requests with block sharing, against
# what per-choice copies would hold: CLIENTS concurrent requests of the same
# kind (a WORDS-sentence prompt, n choices, TOKENS tokens each) on
# `bee serve --parallel CLIENTS x n`. /metrics is read while every slot is
# active, half way through the answers (every choice has written its own
# blocks by then), so
#   blocks a copying cache would hold = used + shared - copied on write
# (each share is a block reference that did not need a block of its own,
# until a write copied it).
#
# usage: bench/kv_share_bench.sh [BUILD_DIR]        (default: build)
# env:   SHAPE_ARGS  bee init arguments (default: the serve_bench.sh shape)
#        CLIENTS (8), N (4), WORDS (10: about 550 prompt tokens on the default shape), TOKENS (64), THREADS (0 = all cores)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/serve_lib.sh
shape_args="${SHAPE_ARGS:---shape small --dim 1024 --ff 4096 --layers 8 --heads 16 --dim-head 64 --type q8_0}"
clients="${CLIENTS:-8}" n="${N:-4}" words="${WORDS:-10}" tokens="${TOKENS:-64}" threads="${THREADS:-0}"
bench_setup "${1:-build}" "$shape_args"
port=$((20000 + RANDOM % 20000))
start_server "$work/serve.log" -m "$work/m.gguf" --port "$port" --parallel $((clients * n)) --threads "$threads" \
  --ctx 4096 --prefill-budget 100000

metric() { curl -s "http://127.0.0.1:$port/metrics" | awk -v k="$1" '$1 == k { print $2 }'; }
prompt=""
for i in $(seq 1 "$words"); do prompt+="the quick brown fox jumps over the lazy dog number $i. "; done
body="{\"prompt\":\"$prompt\",\"max_tokens\":$tokens,\"n\":$n,\"ignore_eos\":true}"
for c in $(seq 1 "$clients"); do
  curl -s -o "$work/out.$c" -H 'Content-Type: application/json' -d "$body" "http://127.0.0.1:$port/v1/completions" &
done
snap=""
for _ in $(seq 1 3000); do
  if [ "$(metric bee_active_slots)" = $((clients * n)) ] && [ "$(metric bee_generated_tokens_total)" -ge $((clients * n * tokens / 2)) ]; then
    snap="$(curl -s "http://127.0.0.1:$port/metrics")"
    break
  fi
  sleep 0.05
done
wait $(jobs -p | grep -v "^$pid$") 2>/dev/null || true
[ -n "$snap" ] || { echo "never saw every slot active"; exit 1; }
get() { awk -v k="$1" '$1 == k { print $2 }' <<<"$snap"; }
used="$(get bee_kv_blocks_used)" shared="$(get bee_kv_blocks_shared_total)" cow="$(get bee_kv_cow_copies_total)"
bytes="$(get bee_kv_cache_bytes)" total="$(get bee_kv_blocks_total)"
prompt_tokens="$(grep -o '"prompt_tokens":[0-9]*' "$work/out.1" | head -1 | cut -d: -f2)"
echo "clients=$clients n=$n prompt_tokens=$prompt_tokens max_tokens=$tokens slots=$((clients * n))"
echo "kv_blocks_used=$used shared_total=$shared cow_copies=$cow pool_bytes=$bytes (budget $total blocks)"
awk -v u="$used" -v s="$shared" -v c="$cow" 'BEGIN {
  copy = u + s - c
  printf "blocks held: %d shared vs %d with copies (%.2fx less)\n", u, copy, copy / u }'
grep -q '"choices"' "$work/out.1" || { echo "request failed: $(head -c 300 "$work/out.1")"; exit 1; }
