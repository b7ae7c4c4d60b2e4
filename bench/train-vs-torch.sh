#!/usr/bin/env bash
# Training speed of `bee train` against plain PyTorch (bench/train_torch.py) on
# the same CPM-Bee model shape, batch, row length, steps and thread count, in
# one run; prints both tokens/s, the ratio bee/torch and both loss
# trajectories, and ends with one JSON line (appended to $RESULTS when set).
#
#   bench/train-vs-torch.sh                       # defaults below
#   STEPS=40 THREADS=4 RESULTS=bench/train-vs-torch.jsonl bench/train-vs-torch.sh
#
# Settings (environment): BEE_BIN (build/bee), PYTHON (first python3 that
# imports torch; Debian: apt-get install python3-torch), DIM 256, LAYERS 6,
# HEADS 4, DIM_HEAD 64, FF 768, VOCAB (.cache/v8k.txt if present, else bee's
# builtin vocabulary), TEXT (the first 4000 lines of .cache/corpus/train.txt if
# present, else the license texts in /usr/share/common-licenses), BATCH 4,
# CTX 256, STEPS 20, THREADS 2, LR 1e-3, SEED 1.
# Both start from random weights (not the same ones) and read the same tokens
# (a `bee data` shard); bee packs each line as its own span, torch cuts the
# concatenated stream into rows, so the losses agree only roughly.
set -euo pipefail
exec 3>&2 # the real stderr, also inside the timed blocks below
cd "$(dirname "$0")/.."
BEE=${BEE_BIN:-build/bee}
DIM=${DIM:-256} LAYERS=${LAYERS:-6} HEADS=${HEADS:-4} DIM_HEAD=${DIM_HEAD:-64} FF=${FF:-768}
BATCH=${BATCH:-4} CTX=${CTX:-256} STEPS=${STEPS:-20} THREADS=${THREADS:-2} LR=${LR:-1e-3} SEED=${SEED:-1}
VOCAB=${VOCAB-.cache/v8k.txt}

die() { echo "train-vs-torch: $*" >&3; exit 1; }
[ -x "$BEE" ] || die "$BEE not found (build first, or set BEE_BIN)"
PY=
for p in ${PYTHON:-} /usr/bin/python3 python3; do
    if "$p" -c 'import torch' >/dev/null 2>&1; then PY=$p; break; fi
done
[ -n "$PY" ] || die "no python3 that imports torch (Debian: apt-get install python3-torch; or set PYTHON)"
for v in DIM LAYERS HEADS DIM_HEAD FF BATCH CTX STEPS THREADS SEED; do
    [[ ${!v} =~ ^[0-9]+$ ]] && [ "${!v}" -gt 0 ] || die "$v must be a positive integer, got '${!v}'"
done

W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
if [ -n "${TEXT:-}" ]; then
    [ -f "$TEXT" ] || die "TEXT=$TEXT: no such file"
    cp "$TEXT" "$W/text.txt"
elif [ -f .cache/corpus/train.txt ]; then
    head -n 4000 .cache/corpus/train.txt >"$W/text.txt"
else
    cat /usr/share/common-licenses/{Apache-2.0,GPL-2,GPL-3,LGPL-2.1,MPL-2.0} | grep -v '^[[:space:]]*$' >"$W/text.txt"
fi
vocab_arg=()
if [ -n "$VOCAB" ]; then
    [ -f "$VOCAB" ] && vocab_arg=(--vocab "$VOCAB") || echo "train-vs-torch: $VOCAB not found, using the builtin vocabulary" >&2
fi

"$BEE" init -o "$W/m.gguf" --dim "$DIM" --layers "$LAYERS" --heads "$HEADS" --dim-head "$DIM_HEAD" --ff "$FF" \
    "${vocab_arg[@]}" --seed "$SEED" >"$W/init.out" 2>&1 || { cat "$W/init.out" >&2; die "bee init failed"; }
"$BEE" data -m "$W/m.gguf" --text "$W/text.txt" -o "$W/data.bin" >"$W/data.out" 2>&1 ||
    { cat "$W/data.out" >&2; die "bee data failed"; }

min_lr=$("$PY" -c "print($LR / 10)")
echo "== bee train: dim $DIM, $LAYERS layers, $HEADS x $DIM_HEAD heads, ff $FF; $BATCH x $CTX tokens, $STEPS steps, -t $THREADS"
# CPU seconds (user + sys) of each whole process as well: on a shared machine the wall-clock
# rates depend on the other jobs, the CPU time much less.
TIMEFORMAT='%U %S'
{ time "$BEE" train -m "$W/m.gguf" --shards "$W/data.bin" --steps "$STEPS" --batch "$BATCH" --ctx "$CTX" --lr "$LR" \
    --min-lr "$min_lr" --warmup 5 --wd 0.1 --seed "$SEED" -t "$THREADS" --log "$W/bee.jsonl" -o "$W/out.gguf" \
    >"$W/bee.out" 2>&1 || { cat "$W/bee.out" >&3; die "bee train failed"; }; } 2>"$W/bee.cpu"
grep -E "^(train:|step)" "$W/bee.out" | sed -n '1,2p;$p'
echo "== torch: same shape, $THREADS threads"
{ time OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS "$PY" bench/train_torch.py --shard "$W/data.bin" --dim "$DIM" --layers "$LAYERS" --heads "$HEADS" \
    --dim-head "$DIM_HEAD" --ff "$FF" --batch "$BATCH" --ctx "$CTX" --steps "$STEPS" --lr "$LR" --min-lr "$min_lr" \
    --warmup 5 --wd 0.1 --threads "$THREADS" --seed "$SEED" --log-every "$STEPS" >"$W/torch.json" 2>"$W/torch.err" ||
    { cat "$W/torch.err" >&3; die "torch run failed"; }; } 2>"$W/torch.cpu"
grep -E "^(torch|step)" "$W/torch.err"
"$PY" -c 'import json, sys; print("torch BLAS:", json.loads(open(sys.argv[1]).read().splitlines()[-1]).get("blas"))' "$W/torch.json"

"$PY" - "$W/bee.jsonl" "$W/torch.json" "$W/bee.cpu" "$W/torch.cpu" "$DIM" "$LAYERS" "$HEADS" "$DIM_HEAD" "$FF" "$BATCH" "$CTX" "$STEPS" "$THREADS" "${vocab_arg[1]:-builtin}" <<'EOF' | tee "$W/result.json"
import json, sys, time, platform
bee = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
bee = [r for r in bee if "loss" in r]
torch = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])
cpu = [sum(map(float, open(f).read().split()[-2:])) for f in sys.argv[3:5]]
dim, layers, heads, dh, ff, batch, ctx, steps, threads = map(int, sys.argv[5:14])
ntok = batch * ctx * steps
bl = [r["loss"] for r in bee]
tl = torch["losses"]
print(f"\n{'step':>6} {'bee loss':>10} {'torch loss':>11}", file=sys.stderr)
marks = sorted({0, len(bl) // 4, len(bl) // 2, 3 * len(bl) // 4, len(bl) - 1})
for i in marks:
    print(f"{i + 1:>6} {bl[i]:>10.4f} {tl[i] if i < len(tl) else float('nan'):>11.4f}", file=sys.stderr)
ratio = bee[-1]["tok_s"] / torch["tok_s"]
cpu_ratio = cpu[1] / cpu[0]
print(f"\ntokens/s: bee {bee[-1]['tok_s']:.0f}, torch {torch['tok_s']:.0f}: bee/torch = {ratio:.3f}", file=sys.stderr)
print(f"CPU seconds of the whole process (user + sys): bee {cpu[0]:.1f}, torch {cpu[1]:.1f}: "
      f"tokens per CPU-second bee/torch = {cpu_ratio:.3f}\n", file=sys.stderr)
print(json.dumps({"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "host": platform.node(),
                  "shape": {"dim": dim, "layers": layers, "heads": heads, "dim_head": dh, "ff": ff,
                            "vocab": sys.argv[14]},
                  "batch": batch, "ctx": ctx, "steps": steps, "threads": threads, "torch": torch["torch"], "torch_blas": torch.get("blas"),
                  "bee_tok_s": bee[-1]["tok_s"], "torch_tok_s": torch["tok_s"], "ratio_bee_torch": round(ratio, 4),
                  "bee_cpu_s": round(cpu[0], 2), "torch_cpu_s": round(cpu[1], 2), "cpu_ratio_bee_torch": round(cpu_ratio, 4),
                  "bee_loss": [bl[0], bl[-1]], "torch_loss": [tl[0], tl[-1]]}))
EOF
if [ -n "${RESULTS:-}" ]; then cat "$W/result.json" >>"$RESULTS"; fi
