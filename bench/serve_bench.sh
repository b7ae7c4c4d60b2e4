#!/usr/bin/env bash
# Measures `bee serve` under load: aggregate decode tokens/s with 1 and with
# 8 concurrent streams, and p50/p99 time to first token and inter-token
# latency, on a random-weight model (the numbers depend on shape, not values).
#
# usage: bench/serve_bench.sh [BUILD_DIR]        (default: build)
# env:   SHAPE_ARGS  bee init arguments for the model (default: a ~150M-parameter q8_0 shape)
#        THREADS     forward-pass threads (default: all cores)
#        TOKENS      max_tokens per request (default 32)
#        REQUESTS    requests per client (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/serve_lib.sh
shape_args="${SHAPE_ARGS:---shape small --dim 1024 --ff 4096 --layers 8 --heads 16 --dim-head 64 --type q8_0}"
threads="${THREADS:-0}"
tokens="${TOKENS:-32}"
requests="${REQUESTS:-2}"
bench_setup "${1:-build}" "$shape_args"

port=$((20000 + RANDOM % 20000))
start_server "$work/serve.log" -m "$work/m.gguf" --port "$port" --parallel 8 --threads "$threads" --ctx 4096

"$bench" "$port" 1 1 4 >/dev/null # warm-up
echo "== 1 stream"
one="$("$bench" "$port" 1 "$requests" "$tokens")"
echo "$one"
echo "== 8 concurrent streams"
eight="$("$bench" "$port" 8 "$requests" "$tokens")"
echo "$eight"
t1="$(sed -E 's/.*tok_per_s=([0-9.]+).*/\1/' <<<"$one")"
t8="$(sed -E 's/.*tok_per_s=([0-9.]+).*/\1/' <<<"$eight")"
echo "aggregate decode throughput, 8 streams / 1 stream: $(awk -v a="$t8" -v b="$t1" 'BEGIN { printf "%.2fx", a / b }')"
