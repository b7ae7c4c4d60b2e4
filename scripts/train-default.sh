#!/bin/sh
# Reproduces the embedded default model (models/README.md) from nothing but
# Debian and npm packages: corpus -> vocabulary -> shards -> random init ->
# pretraining with bee itself. Deterministic: the same inputs give the same
# bytes, whatever the thread count.
#
#   scripts/train-default.sh [WORK_DIR]     (default WORK_DIR: .cache/default)
#
# Environment: BEE (default build/bee), THREADS (default 2), STEPS (2000),
# SEGMENT (steps between intermediate checkpoints, 500).
# Outputs in WORK_DIR: vocab.txt, mix.jsonl, train.bin, init.gguf, step-N.gguf for every
# segment, train.log (progress lines), train.jsonl + loss.svg (bee train --log/--curve),
# final.gguf.
set -eu

BEE=${BEE:-build/bee}
THREADS=${THREADS:-2}
STEPS=${STEPS:-2000}
SEGMENT=${SEGMENT:-500}
WORK=${1:-.cache/default}
CORPUS=${CORPUS:-.cache/corpus}

mkdir -p "$WORK"
command -v python3 >/dev/null || { echo "train-default: python3 is required (scripts/pretrain-mix.py)" >&2; exit 1; }
[ -f "$CORPUS/train.txt" ] || scripts/build-corpus.sh "$CORPUS"

[ -f "$WORK/vocab.txt" ] || "$BEE" vocab build --corpus "$CORPUS/train.txt" --size 8000 -o "$WORK/vocab.txt" \
    --eval "$CORPUS/heldout.txt"
# Half the lines whole, half cut into an input and an answer (see the script).
[ -f "$WORK/mix.jsonl" ] || python3 scripts/pretrain-mix.py "$CORPUS/train.txt" "$WORK/mix.jsonl"
[ -f "$WORK/train.bin" ] || "$BEE" data --vocab "$WORK/vocab.txt" --jsonl "$WORK/mix.jsonl" -o "$WORK/train.bin"
[ -f "$WORK/init.gguf" ] || "$BEE" init -o "$WORK/init.gguf" --vocab "$WORK/vocab.txt" --dim 256 --layers 6 \
    --heads 4 --dim-head 64 --ff 768 --seed 1 --name bee-default

# The run is cut into segments only to keep intermediate models; resuming is
# bit-identical to an uninterrupted run.
done_steps=0
while [ "$done_steps" -lt "$STEPS" ]; do
    next=$((done_steps + SEGMENT))
    [ "$next" -gt "$STEPS" ] && next=$STEPS
    if [ ! -f "$WORK/step-$next.gguf" ]; then
        "$BEE" train -m "$WORK/init.gguf" --shards "$WORK/train.bin" --ckpt "$WORK/run.ckpt" --resume \
            --steps "$STEPS" --stop-after $((next - done_steps)) -o "$WORK/step-$next.gguf.tmp" \
            --batch 8 --ctx 256 --lr 1.5e-3 --min-lr 1e-4 --warmup 100 --wd 0.1 --clip 1.0 --seed 1 \
            -t "$THREADS" --log-every 20 --log "$WORK/train.jsonl" --curve "$WORK/loss.svg" 2>&1 | tee -a "$WORK/train.log"
        mv "$WORK/step-$next.gguf.tmp" "$WORK/step-$next.gguf"
    fi
    done_steps=$next
done
cp "$WORK/step-$STEPS.gguf" "$WORK/final.gguf"
echo "default model: $WORK/final.gguf"
