#!/usr/bin/env bash
# Reproduces the figures of docs/PERFORMANCE.md: makes random-weight models with
# the CPM-Bee 1B/2B/5B/10B shapes (real 86k vocabulary when ../shared is present,
# else the builtin one) and runs `bee bench` on them. Every figure is a ratio
# against the roofline `bee bench` measures in the same run.
#   bench/perf-figures.sh [MODEL_DIR] [quick|full]     (default: /tmp/bee-models, full)
# Disk: about 25 GB for all models (the 2B f32 one is 10 GB). Time: ~40 min on 2 cores,
# mostly `bee init` of the big shapes (run once; models are reused).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-/tmp/bee-models}
mode=${2:-full}
bee=build/bee
mkdir -p "$dir"
vocab=()
[ -f ../shared/cpmbee/vocab/bee.txt ] && vocab=(--vocab ../shared/cpmbee/vocab/bee.txt)

model() { # shape type -> path (made once)
  local f="$dir/$1-$2.gguf"
  if [ ! -f "$f" ]; then
    if [ "$2" = f32 ] && [ -f "$dir/$1-q8_0.gguf" ]; then
      $bee quantize "$dir/$1-q8_0.gguf" "$f" --type f32 >&2     # same weights, dequantized
    else
      $bee init -o "$f" --shape "cpm-bee-$1" --type "$2" "${vocab[@]}" >&2
    fi
  fi
  echo "$f"
}

echo "# decode, 1 stream (tg), and prefill of 512 tokens (pp)"
$bee bench -m "$(model 2b q8_0)" -t 1,2 -p 512 -n 64 -r 3
$bee bench -m "$(model 2b q4_0)" -t 1,2 -p 512 -n 64 -r 3
$bee bench -m "$(model 1b q8_0)" -t 2 -p 0 -n 64 -r 3
$bee bench -m "$(model 1b q4_0)" -t 2 -p 0 -n 64 -r 3
[ "$mode" = quick ] && exit 0
$bee bench -m "$(model 2b f32)" -t 1,2 -p 512 -n 16 -r 2
echo "# big shapes: peak RSS and decode"
for s in 5b 10b; do
  /usr/bin/time -f "$s q4_0: wall %e s, max RSS %M KB" $bee bench -m "$(model $s q4_0)" -t 2 -p 0 -n 16 -r 1
done
