#!/usr/bin/env bash
# Inter-token gaps of a running stream while a long prompt (about 1500
# tokens) arrives, with the prefill in one step (--prefill-chunk -1), with the
# default layer chunking and with one layer per step. See docs/SERVING.md.
#
# usage: bench/prefill_chunk_bench.sh [BUILD_DIR]        (default: build)
# env:   SHAPE_ARGS  bee init arguments (default: dim 256, 8 layers, ff 1024, 4 x 64 heads, f32)
#        THREADS     forward-pass threads (default: all cores)
#        WORDS       repetitions of the 46-character sentence in the long prompt (default 33: about 1 500 tokens with the builtin vocabulary)
#        CHUNKS      --prefill-chunk values to compare (default "-1 0 1500": one step, the default, one layer per step)
#        RUNS        runs per value (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/serve_lib.sh
shape_args="${SHAPE_ARGS:---dim 256 --ff 1024 --layers 8 --heads 4 --dim-head 64}"
threads="${THREADS:-0}"
words="${WORDS:-33}"
chunks="${CHUNKS:--1 0 1500}"
runs="${RUNS:-2}"
bench_setup "${1:-build}" "$shape_args"

for chunk in $chunks; do
  port=$((20000 + RANDOM % 20000))
  start_server "$work/serve.log" -m "$work/m.gguf" --port "$port" --parallel 2 --threads "$threads" --ctx 4096 \
    --prefill-chunk "$chunk"
  tokens="$(printf '{"prompt":"%s"}' "$(for _ in $(seq 1 "$words"); do printf 'the quick brown fox jumps over the lazy dog . '; done)" |
    curl -s --data-binary @- "localhost:$port/tokenize" | sed -nE 's/.*"count":([0-9]+).*/\1/p')"
  for r in $(seq 1 "$runs"); do
    echo "prefill_chunk=$chunk prompt_tokens=$tokens run=$r $("$bench" "$port" long "$words" 2000)"
  done
  echo "  slices: $(curl -s "localhost:$port/metrics" | grep '^bee_prefill_slices_total')"
  kill -TERM "$pid"
  wait "$pid" || true
  pid=""
done
