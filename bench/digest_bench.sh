#!/usr/bin/env bash
# Measures the extractive `bee digest` (docs/DIGEST.md) by ROUGE-L against
# references, next to lead / random / oracle-sentence baselines:
#   (a) CSL abstract → title (../shared/data/csl/ts_dev.tsv, first N rows): the
#       abstract's sentences are the "answers", the title is the reference;
#   (b) Debian FAQ fixtures built here from the corpus that
#       scripts/build-corpus.sh makes from the debian-faq / debian-faq-zh-cn
#       packages (.cache/corpus/faq*.jsonl): one FAQ entry = the question plus
#       its answer cut into 2-sentence "answers"; the reference is the answer's
#       first sentence, which is held out of the input (variant "lead held
#       out") or kept in it (variant "lead kept").
# Everything generated goes to $OUT (default build/digest-bench); nothing from
# ../shared or the corpus is committed.
# Then the same sets in model mode (map-reduce) with MODEL (default the
# embedded models/bee-default.gguf; MODEL= skips it), on the first N_MODEL
# items of each set (0: all), with the citation-mark counts on stderr.
# usage: bench/digest_bench.sh [SHARED_DIR]   (env: CORPUS=DIR, N_CSL=200, N_FAQ=20, K=3, MODEL=F.gguf, N_MODEL=0, THREADS=2)
set -euo pipefail
shared="${1:-${BEE_SHARED_DIR:-../shared}}"
corpus="${CORPUS:-.cache/corpus}"
out="${OUT:-build/digest-bench}"
db="${DIGEST_BENCH:-build/digest_bench}"
bee="${BEE_BIN:-build/bee}"
n_csl="${N_CSL:-200}"
n_faq="${N_FAQ:-20}"
k="${K:-3}"
model="${MODEL-models/bee-default.gguf}"
n_model="${N_MODEL:-0}"
threads="${THREADS:-2}"
csl="$shared/data/csl/ts_dev.tsv"
[ -x "$db" ] || { echo "digest_bench: $db not built (cmake --build build --target digest_bench)"; exit 1; }
rm -rf "$out" && mkdir -p "$out"

python3 - "$csl" "$corpus" "$out" "$n_csl" "$n_faq" <<'PY'
import json, os, re, sys
csl, corpus, out, n_csl, n_faq = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])

def sentences(t):
    # the rules of bee_digest_split: 。！？．!? end a sentence, '.' only before a
    # space, the end, CJK or a closing quote; repeated stops and closers stay with it
    out, cur, i, n = [], "", 0, len(t)
    closers = "\"')\u201d\u2019\uff09\u300d\u300f\u3011"
    while i < n:
        c = t[i]
        cur += c
        i += 1
        stop = c in "\u3002\uff01\uff1f\uff0e!?" or c == "\n" or (
            c == "." and (i >= n or t[i].isspace() or ord(t[i]) >= 0x2E80 or t[i] in closers or t[i] == "."))
        if stop:
            while i < n and t[i] != "\n" and (t[i] in "\u3002\uff01\uff1f\uff0e!?." or t[i] in closers):
                cur += t[i]
                i += 1
            if cur.strip(): out.append(cur.strip())
            cur = ""
    if cur.strip(): out.append(cur.strip())
    return out

if os.path.exists(csl):
    items = []
    for line in open(csl, encoding="utf-8"):
        f = line.rstrip("\n").split("\t")
        if len(f) < 3 or not f[1].strip() or not f[2].strip():
            continue
        sents = sentences(f[1])
        items.append({"question": "", "answers": [{"id": i + 1, "upvotes": 0, "text": s} for i, s in enumerate(sents)],
                      "reference": f[2]})
        if len(items) == n_csl:
            break
    with open(f"{out}/csl.jsonl", "w", encoding="utf-8") as fo:
        for x in items: fo.write(json.dumps(x, ensure_ascii=False) + "\n")
    print(f"csl: {len(items)} abstract → title items")
else:
    print(f"SKIP (a): {csl} not found")

rows = []
for name in ("faq.jsonl", "faq-heldout.jsonl"):
    p = os.path.join(corpus, name)
    if os.path.exists(p):
        rows += [json.loads(l) for l in open(p, encoding="utf-8") if l.strip()]
if rows:
    zh = lambda s: re.search("[\u4e00-\u9fff]", s) is not None
    picked = {True: [], False: []}
    for r in rows:
        s = sentences(r["<ans>"])
        if len(s) >= 7 and len(picked[zh(r["input"])]) < n_faq // 2:
            picked[zh(r["input"])].append((r["input"], s))
    for variant in ("held", "kept"):
        with open(f"{out}/faq-{variant}.jsonl", "w", encoding="utf-8") as fo:
            for q, s in picked[True] + picked[False]:
                body = s[1:] if variant == "held" else s
                answers = [{"id": i + 1, "upvotes": 0, "text": " ".join(body[j:j + 2])}
                           for i, j in enumerate(range(0, len(body), 2))]
                fo.write(json.dumps({"question": q, "answers": answers, "reference": s[0]}, ensure_ascii=False) + "\n")
    print(f"faq: {len(picked[True])} Chinese + {len(picked[False])} English entries with >= 7 sentences")
else:
    print(f"SKIP (b): no faq.jsonl under {corpus} (run scripts/build-corpus.sh, or set CORPUS=DIR)")
PY

ran=0
if [ -f "$out/csl.jsonl" ]; then
  echo "== (a) CSL abstract → title, extractive digest, K=1 (one point vs the title)"
  "$db" --items "$out/csl.jsonl" -k 1 --name csl
  ran=1
fi
if [ -f "$out/faq-held.jsonl" ]; then
  echo "== (b) Debian FAQ, lead sentence held out of the input, K=$k"
  "$db" --items "$out/faq-held.jsonl" -k "$k" --name faq-lead-held-out
  echo "== (b) Debian FAQ, lead sentence kept in the input, K=$k"
  "$db" --items "$out/faq-kept.jsonl" -k "$k" --name faq-lead-kept
  # one fixture through the CLI, to show the output form
  head -n 1 "$out/faq-held.jsonl" > "$out/example.json"
  echo "== example: bee digest --extractive $out/example.json"
  "$bee" digest --extractive -k "$k" "$out/example.json"
  ran=1
fi
if [ "$ran" = 1 ] && [ -n "$model" ] && [ -f "$model" ]; then
  for set in "csl 1 csl" "faq-held $k faq-lead-held-out" "faq-kept $k faq-lead-kept"; do
    read -r f kk name <<< "$set"
    [ -f "$out/$f.jsonl" ] || continue
    label=""; [ "$n_model" = 0 ] || label=" (first $n_model items)"
    echo "== model mode ($model), $name, K=$kk$label: the model's own text (--raw)"
    "$db" --items "$out/$f.jsonl" -k "$kk" --name "$name-model-raw" -m "$model" --threads "$threads" --limit "$n_model" --raw
    echo "== model mode, $name, as bee digest runs it (contentless model text replaced by extractive sentences)"
    "$db" --items "$out/$f.jsonl" -k "$kk" --name "$name-model" -m "$model" --threads "$threads" --limit "$n_model"
  done
fi
[ "$ran" = 1 ] || { echo "SKIP: neither $csl nor $corpus/faq.jsonl found"; exit 77; }
