#!/usr/bin/env bash
# Fine-tunes MODEL.gguf on the Debian FAQ question/answer pairs two ways — all
# weights, and a LoRA adapter — and prints the held-out loss before and after.
#
#   scripts/finetune-faq-demo.sh MODEL.gguf [OUT_DIR]
#
# Data: .cache/corpus/faq.jsonl (training) and .cache/corpus/faq-heldout.jsonl
# (held out), written by scripts/build-corpus.sh. The held-out loss is the mean
# NLL per answer token over every held-out pair (bee train --eval-data), measured
# before the first step and after the last one. OUT_DIR (default
# .cache/faq-demo) receives faq-full.gguf, faq-lora.gguf (the adapter), and
# per run a --log JSONL, a --curve SVG and the console output.
#
# Settings (environment): BEE_BIN (build/bee), STEPS (300), BATCH (4),
# CTX (256), THREADS (2), LR_FULL (1e-4; min LR_FULL/10), LR_LORA (1e-3; min
# LR_LORA/10), LORA (8,16 = rank,alpha), WARMUP (20), EVAL_EVERY (50), FAQ,
# HELDOUT (the two files), RUNS ("full lora": either or both).
set -euo pipefail
die() { echo "finetune-faq-demo: $*" >&2; exit 1; }
[ $# -ge 1 ] && [ $# -le 2 ] || die "usage: $0 MODEL.gguf [OUT_DIR]"
MODEL=$1
OUT=${2:-.cache/faq-demo}
BEE=${BEE_BIN:-build/bee}
FAQ=${FAQ:-.cache/corpus/faq.jsonl}
HELDOUT=${HELDOUT:-.cache/corpus/faq-heldout.jsonl}
STEPS=${STEPS:-300} BATCH=${BATCH:-4} CTX=${CTX:-256} THREADS=${THREADS:-2} WARMUP=${WARMUP:-20}
LR_FULL=${LR_FULL:-1e-4} LR_LORA=${LR_LORA:-1e-3} LORA=${LORA:-8,16} EVAL_EVERY=${EVAL_EVERY:-50}
RUNS=${RUNS:-full lora}

[ -x "$BEE" ] || die "$BEE not found (build first, or set BEE_BIN)"
[ -f "$MODEL" ] || die "$MODEL: no such model file"
[ -f "$FAQ" ] || die "$FAQ: missing (run scripts/build-corpus.sh, or set FAQ)"
[ -f "$HELDOUT" ] || die "$HELDOUT: missing (run scripts/build-corpus.sh, or set HELDOUT)"
for r in $RUNS; do [ "$r" = full ] || [ "$r" = lora ] || die "RUNS: unknown run '$r' (full, lora)"; done
mkdir -p "$OUT"
div10() { awk -v x="$1" 'BEGIN { printf "%g", x / 10 }'; }

# run NAME EXTRA-ARGS...: trains, then prints "NAME|trainable|seconds|before|after|last"
run() {
    local name=$1 lr=$2; shift 2
    local o="$OUT/$name"
    local t0 t1
    t0=$(date +%s)
    echo "== $name: $BEE train -m $MODEL --data $FAQ --eval-data $HELDOUT $* (lr $lr, $STEPS steps)" >&2
    "$BEE" train -m "$MODEL" --data "$FAQ" --eval-data "$HELDOUT" --eval-batches 100000 --eval-every "$EVAL_EVERY" \
        --steps "$STEPS" --batch "$BATCH" --ctx "$CTX" --lr "$lr" --min-lr "$(div10 "$lr")" --warmup "$WARMUP" \
        -t "$THREADS" --log "$o.jsonl" --curve "$o.svg" "$@" >"$o.out" 2>&1 ||
        { cat "$o.out" >&2; die "$name: bee train failed"; }
    t1=$(date +%s)
    grep -E "^(train:|step 0/)" "$o.out" >&2
    tail -n 2 "$o.out" >&2
    local before after last trainable
    before=$(sed -n 's/^step 0\/[0-9]*  eval \([0-9.]*\).*/\1/p' "$o.out")
    after=$(sed -n 's/.*held-out loss \([0-9.]*\).*/\1/p' "$o.out")
    last=$(sed -n 's/.*last loss \([0-9.]*\).*/\1/p' "$o.out")
    trainable=$(sed -n 's/.*LoRA rank.*: \([0-9]*\) trainable.*/\1/p' "$o.out")
    [ -n "$trainable" ] || trainable=$(sed -n 's/^train: .*; \([0-9]*\) parameters.*/\1/p' "$o.out")
    [ -n "$before" ] && [ -n "$after" ] || die "$name: no held-out losses in $o.out"
    echo "$name|$trainable|$((t1 - t0))|$before|$after|$last"
}

rows=()
for r in $RUNS; do
    if [ "$r" = full ]; then rows+=("$(run full "$LR_FULL" -o "$OUT/faq-full.gguf")")
    else rows+=("$(run lora "$LR_LORA" --lora "$LORA" -o "$OUT/faq-lora.gguf")"); fi
done

echo
echo "Debian FAQ fine-tune of $(basename "$MODEL"): $STEPS steps of $BATCH x $CTX tokens, -t $THREADS"
echo "held-out: $HELDOUT ($(grep -c . "$HELDOUT") pairs), loss = mean NLL per answer token (nats)"
echo
printf '| %-16s | %12s | %7s | %15s | %14s | %9s | %23s | %10s |\n' run trainable "time s" "held-out before" \
    "held-out after" change "perplexity before->after" "last train"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|\n' ------------------ -------------- --------- ----------------- ---------------- \
    ----------- ------------------------- ------------
for row in "${rows[@]}"; do
    IFS='|' read -r name trainable secs before after last <<<"$row"
    [ "$name" = lora ] && name="lora $LORA"
    awk -v n="$name" -v t="$trainable" -v s="$secs" -v b="$before" -v a="$after" -v l="$last" 'BEGIN {
        printf "| %-16s | %12s | %7s | %15.4f | %14.4f | %+8.1f%% | %10.1f -> %-9.1f | %10.4f |\n",
               n, t, s, b, a, 100 * (a - b) / b, exp(b), exp(a), l }'
done
echo
echo "outputs in $OUT: faq-full.gguf, faq-lora.gguf (adapter: bee generate --lora), *.jsonl logs, *.svg curves"
