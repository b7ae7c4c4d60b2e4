#!/usr/bin/env bash
# Waits for a quiet moment of a shared host, then measures decode against the
# roofline. On a shared machine the neighbours' load moves the read bandwidth
# between ~15 and ~60 GB/s; the decode ratio of docs/PERFORMANCE.md was met on a
# busy host, and this script is how to measure it on a quiet one.
#   bench/quiet-decode.sh MODEL_DIR [MIN_GBS=38] [MINUTES=90]
# Every 3 minutes it reads the 2-thread read bandwidth `bee bench` measures (a
# buffer of 4x the LLC); once it reaches MIN_GBS, it runs the decode bench of the
# 1B/2B q8_0/q4_0 models in MODEL_DIR (made by bench/perf-figures.sh) and exits.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:?usage: bench/quiet-decode.sh MODEL_DIR [MIN_GBS] [MINUTES]}
min=${2:-38}
minutes=${3:-90}
bee=build/bee
probe_model=models/bee-default.gguf
[ -f "$probe_model" ] || { echo "quiet-decode: $probe_model is missing (scripts/setup.sh makes it)" >&2; exit 1; }
for m in 2b-q8_0 2b-q4_0 1b-q8_0 1b-q4_0; do
  [ -f "$dir/$m.gguf" ] || { echo "quiet-decode: $dir/$m.gguf is missing (bench/perf-figures.sh makes it)" >&2; exit 1; }
done
end=$(( $(date +%s) + 60 * minutes ))
while [ "$(date +%s)" -lt "$end" ]; do
  gbs=$($bee bench -m "$probe_model" -t 2 -p 0 -n 0 | sed -n 's/.*roofline read \([0-9.]*\) GB\/s.*/\1/p')
  echo "$(date -u +%H:%M:%S) read bandwidth, 2 threads: ${gbs:-?} GB/s"
  if [ -n "$gbs" ] && awk -v g="$gbs" -v m="$min" 'BEGIN { exit !(g >= m) }'; then
    for m in 2b-q8_0 2b-q4_0 1b-q8_0 1b-q4_0; do $bee bench -m "$dir/$m.gguf" -t 2 -p 0 -n 32 -r 3; done
    exit 0
  fi
  sleep 180
done
echo "quiet-decode: the host never reached $min GB/s in $minutes minutes" >&2
exit 1
