#!/usr/bin/env bash
# bee eval end to end over several kinds of model: two `bee init` models of
# other seeds and weight types, a LoRA variant (`lora` field), the unigram
# baseline, and the first model again served over HTTP by a `bee serve`
# started here on a free port (scored through echo + logprobs). The tasks
# need no external data (tests/data/eval-tiny-*.json and the built-in sanity
# tasks; poem-nextline joins when .cache/corpus exists). Checks the
# leaderboard .md/.csv (one row per model, ranked by average), the SVG, that
# the served copy scores exactly like the local one, YAML model lists, and a
# rerun served from the cache. Bounded: 20-45 s on two loaded cores; fails past 60 s.
set -u
. "$(cd "$(dirname "$0")" && pwd)/lib/serve.sh"
B=${BEE_BIN:?BEE_BIN not set}
HERE=${BEE_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
D=${BEE_TMPDIR:-/tmp}/cli_eval_e2e.$$
mkdir -p "$D"
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$D"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
T0=$(date +%s)

"$B" init -o "$D/m1.gguf" --seed 11 >/dev/null || fail "init m1"
"$B" init -o "$D/m2.gguf" --seed 12 --type q4_0 >/dev/null || fail "init m2"
# a 2-step LoRA adapter on m1
for i in $(seq 0 7); do echo "{\"input\": \"问题：$i\", \"<ans>\": \"答案$i\"}"; done >"$D/tr.jsonl"
"$B" train -m "$D/m1.gguf" --data "$D/tr.jsonl" --lora 2,4 --batch 2 --ctx 32 --steps 2 -t 1 -o "$D/lora.gguf" \
    >"$D/train.log" 2>&1 || { cat "$D/train.log"; fail "lora train"; }
printf '一加一等于二。天空是蓝色。一年有四个季节。\n' >"$D/uni.txt"

served=""
if ! serve_available "$B"; then
    echo "note: bee built without libmicrohttpd: no served model"
else
    serve_start "$D/serve.log" "$B" -m "$D/m1.gguf" -t 1 --parallel 2 --name m1 ||
        { cat "$D/serve.log"; fail "bee serve did not start"; }
    pid=$SERVE_PID
    served="  - {name: m1-served, type: openai, base_url: \"http://127.0.0.1:$SERVE_PORT\", timeout_s: 60}"
fi

cat >"$D/models.yaml" <<YAML
# the models of this test
models:
  - name: m1
    path: $D/m1.gguf
  - {name: m2-q4_0, path: $D/m2.gguf}
  - name: m1-lora
    path: $D/m1.gguf
    lora: $D/lora.gguf
  - name: unigram
    type: unigram
    path: $D/uni.txt
$served
YAML
models="$D/models.yaml"
printf 'models:\n  - {name: u, type: unigram, path: %s}\n' "$D/uni.txt" >"$D/probe.yaml"
if "$B" eval --models "$D/probe.yaml" --tasks sanity --out "$D/probe" --limit 1 -q 2>&1 | grep -q "without libyaml"; then
    echo "note: bee built without libyaml: the same list as JSON"
    python3 - "$models" >"$D/models.json" <<'PY' || fail "yaml to json"
import json, re, sys
ms = []
for line in open(sys.argv[1]):
    line = line.rstrip()
    if line.startswith("  - {"):
        ms.append(dict(kv.split(": ", 1) for kv in line[5:-1].split(", ")))
    elif line.startswith("  - "):
        k, v = line[4:].split(": ", 1); ms.append({k: v})
    elif line.startswith("    "):
        k, v = line.strip().split(": ", 1); ms[-1][k] = v
for m in ms:
    for k, v in m.items():
        m[k] = int(v) if v.isdigit() else v.strip('"')
print(json.dumps(ms))
PY
    models="$D/models.json"
fi
n_models=$(grep -c "name:" "$D/models.yaml")

tasks="sanity,sanity-gen,$HERE/tests/data/eval-tiny-mc.json,$HERE/tests/data/eval-tiny-gen.json,$HERE/tests/data/eval-tiny-ppl.json"
corpus=${BEE_CORPUS:-$HERE/.cache/corpus}
if [ -f "$corpus/poems-heldout.jsonl" ]; then
    tasks="$tasks,poem-nextline" # kjv verses are long: ~4 s per item on a tiny model here
else
    echo "note: no corpus at $corpus: corpus tasks left out"
fi
"$B" eval --models "$models" --tasks "$tasks" --out "$D/out" --limit 3 --data-dir "$HERE/tests/data" \
    --corpus-dir "$corpus" -t 1 >"$D/eval.log" 2>&1 || { cat "$D/eval.log"; fail "bee eval"; }

# leaderboard.md: header, separator, one row per model, ranks 1..N, averages descending
md="$D/out/leaderboard.md"
[ "$(grep -c '^| [0-9]' "$md")" -eq "$n_models" ] || { cat "$md"; fail "md rows"; }
grep '^| [0-9]' "$md" | awk -F'|' -v n="$n_models" '
    { r = $2 + 0; a = $4 + 0; if (r != NR) bad = 1; if (NR > 1 && a > prev + 1e-9) bad = 1; prev = a }
    END { exit bad || NR != n }' || { cat "$md"; fail "md ranks or order"; }
head -2 "$md" | tail -1 | grep -q '^|---:|---|---:|' || fail "md separator"
# leaderboard.csv: the same order, as many fields in every row
csv="$D/out/leaderboard.csv"
[ "$(($(wc -l <"$csv") - 1))" -eq "$n_models" ] || { cat "$csv"; fail "csv rows"; }
awk -F',' 'NR == 1 { nf = NF; next } { if (NF != nf) bad = 1; if (NR > 2 && $3 + 0 > prev + 1e-9) bad = 1; prev = $3 + 0 }
    END { exit bad }' "$csv" || { cat "$csv"; fail "csv fields or order"; }
# the SVG: well-formed XML with one bar per model
svg="$D/out/leaderboard.svg"
[ "$(grep -o 'class="bar"' "$svg" | wc -l)" -eq "$n_models" ] || fail "svg bars"
if command -v python3 >/dev/null; then
    python3 -c "import sys, xml.etree.ElementTree as E; E.parse(sys.argv[1])" "$svg" || fail "svg is not well-formed XML"
elif command -v xmllint >/dev/null; then
    xmllint --noout "$svg" || fail "svg is not well-formed XML"
else
    tail -1 "$svg" | grep -q '^</svg>$' || fail "svg end"
fi
for m in m1 m2-q4_0 m1-lora unigram; do grep -q "| $m |" "$md" || fail "model $m missing"; done
[ -f "$D/out/samples/m1-lora__tiny-mc.jsonl" ] || fail "lora samples"
cmp -s "$D/out/samples/m1__tiny-mc.jsonl" "$D/out/samples/m1-lora__tiny-mc.jsonl" && fail "the LoRA variant scored like its base"
grep -q '"note":"unigram model: generates nothing"' "$D/out/samples/unigram__tiny-gen.jsonl" || fail "unigram note"
if [ -n "$served" ]; then
    # the served copy scores mc and ppl through echo exactly like the local model
    grep -q 'bee serve echo' "$D/out/samples/m1-served__tiny-mc.jsonl" || fail "served model not scored by echo"
    row() { grep "^[0-9]*,\"$1\"," "$csv" | cut -d, -f3-; }
    [ "$(row m1)" = "$(row m1-served)" ] || { cat "$csv"; fail "served m1 differs from local m1"; }
fi
# a rerun takes every record from the cache
"$B" eval --models "$models" --tasks "$tasks" --out "$D/out" --limit 3 --data-dir "$HERE/tests/data" \
    --corpus-dir "$corpus" -t 1 >"$D/eval2.log" 2>&1 || { cat "$D/eval2.log"; fail "rerun"; }
grep -q "eval: 0 items computed" "$D/eval2.log" || { cat "$D/eval2.log"; fail "rerun computed items"; }
# bad model lists are named
printf 'models:\n  - name: x\n    path: [1\n' >"$D/bad.yaml"
"$B" eval --models "$D/bad.yaml" --tasks sanity --out "$D/bad" >"$D/bad.log" 2>&1 && fail "bad yaml accepted"
grep -q "bad.yaml" "$D/bad.log" || { cat "$D/bad.log"; fail "bad yaml message"; }
el=$(($(date +%s) - T0))
[ "$el" -lt 60 ] || fail "took ${el}s (bound 60 s)"
echo "ok ($n_models models, ${el}s)"
