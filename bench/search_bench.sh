#!/usr/bin/env bash
# Measures bee search (docs/SEARCH.md):
#   faq:  Recall@5 / MRR@5 on the Debian FAQ (scripts/build-corpus.sh output:
#         faq.jsonl + faq-heldout.jsonl), every answer section indexed as one
#         document, every question asked, zh and en reported apart;
#   cmrc: Recall@5 / MRR on CMRC 2018 dev questions → their passage;
#   big:  indexing throughput and query latency on a corpus of at least 20 MB
#         made by repeating the CMRC contexts and CSL abstracts.
# Everything generated goes to $OUT (default build/search-bench); nothing from
# ../shared or .cache is committed. PARTS="faq cmrc big" picks the parts.
# usage: bench/search_bench.sh [SHARED_DIR]   (needs build/bee and build/search_bench;
#        CORPUS=.cache/corpus for the FAQ)
set -euo pipefail
shared="${1:-${BEE_SHARED_DIR:-../shared}}"
corpus="${CORPUS:-.cache/corpus}"
parts="${PARTS:-faq cmrc big}"
out="${OUT:-build/search-bench}"
bee="${BEE_BIN:-build/bee}"
sb="${SEARCH_BENCH:-build/search_bench}"
cmrc="$shared/data/cmrc2018/cmrc2018_dev.json"
csl="$shared/data/csl/ts_dev.tsv"
has() { [[ " $parts " == *" $1 "* ]]; }
rm -rf "$out" && mkdir -p "$out/small" "$out/big" "$out/faq"
ran=0

if has faq && [ -f "$corpus/faq.jsonl" ]; then
    ran=1
    python3 - "$corpus" "$out" <<'PY'
import json, sys, re
corpus, out = sys.argv[1:3]
rows = []
for name in ("faq.jsonl", "faq-heldout.jsonl"):
    try:
        rows += [json.loads(l) for l in open(f"{corpus}/{name}", encoding="utf-8") if l.strip()]
    except FileNotFoundError:
        pass
cjk = re.compile("[\u3400-\u9fff]")
import os
os.makedirs(f"{out}/faq-sections", exist_ok=True)
with open(f"{out}/faq/faq.jsonl", "w", encoding="utf-8") as d, open(f"{out}/faq-questions.jsonl", "w", encoding="utf-8") as q, \
     open(f"{out}/faq-sections/faq.jsonl", "w", encoding="utf-8") as sec:
    for i, r in enumerate(rows):
        lang = "zh" if cjk.search(r["input"]) else "en"
        d.write(json.dumps({"id": f"{lang}-{i:04d}", "text": r["<ans>"]}, ensure_ascii=False) + "\n")
        # the section as the FAQ lays it out: its heading (the question itself) and the answer
        sec.write(json.dumps({"id": f"{lang}-{i:04d}", "text": "# " + r["input"] + "\n\n" + r["<ans>"]}, ensure_ascii=False) + "\n")
        q.write(json.dumps({"question": r["input"], "doc": f"#{lang}-{i:04d}", "lang": lang}, ensure_ascii=False) + "\n")
print(f"Debian FAQ: {len(rows)} answer sections indexed, {len(rows)} questions")
PY
    echo "== Debian FAQ: one document per answer section, every question"
    "$bee" index --db "$out/faq.sqlite" "$out/faq" --json
    "$sb" --db "$out/faq.sqlite" --questions "$out/faq-questions.jsonl" -k 5 ${MISSES:+--misses}
    echo "== Debian FAQ, sections with their heading (= the question: exact-match sanity check, not a retrieval measure)"
    "$bee" index --db "$out/faq-sections.sqlite" "$out/faq-sections" --json
    "$sb" --db "$out/faq-sections.sqlite" --questions "$out/faq-questions.jsonl" -k 5
elif has faq; then
    echo "SKIP faq: $corpus/faq.jsonl not found (scripts/build-corpus.sh makes it)"
fi

if ! { has cmrc || has big; }; then [ $ran = 1 ] && exit 0 || exit 77; fi
[ -f "$cmrc" ] || { echo "SKIP cmrc/big: $cmrc not found"; [ $ran = 1 ] && exit 0 || exit 77; }

python3 - "$cmrc" "$csl" "$out" <<'PY'
import json, sys, os
cmrc, csl, out = sys.argv[1:4]
d = json.load(open(cmrc, encoding="utf-8"))["data"]
docs, qs = [], []
for art in d:
    for p in art["paragraphs"]:
        docs.append({"id": p["id"], "text": p["context"]})
        for qa in p["qas"]:
            qs.append({"question": qa["question"], "doc": "#" + p["id"], "answer": qa["answers"][0]["text"]})
with open(f"{out}/small/cmrc.jsonl", "w", encoding="utf-8") as f:
    for x in docs: f.write(json.dumps(x, ensure_ascii=False) + "\n")
with open(f"{out}/questions.jsonl", "w", encoding="utf-8") as f:
    for x in qs: f.write(json.dumps(x, ensure_ascii=False) + "\n")
abstracts = []
if os.path.exists(csl):
    for line in open(csl, encoding="utf-8"):
        parts = line.rstrip("\n").split("\t")
        if len(parts) >= 3: abstracts.append("# " + parts[2] + "\n\n" + parts[1] + "\n")
# the big corpus: the CMRC records once (so the questions keep their answers) plus
# copies of both sources as separate files until 20 MB
size, i = 0, 0
os.system(f"cp {out}/small/cmrc.jsonl {out}/big/cmrc.jsonl")
size += os.path.getsize(f"{out}/big/cmrc.jsonl")
while size < 21_000_000:
    p = f"{out}/big/copy{i:03d}.jsonl"
    with open(p, "w", encoding="utf-8") as f:
        for x in docs: f.write(json.dumps({"id": f"c{i}-{x['id']}", "text": x["text"]}, ensure_ascii=False) + "\n")
    size += os.path.getsize(p)
    if abstracts:
        p = f"{out}/big/csl{i:03d}.md"
        with open(p, "w", encoding="utf-8") as f: f.write("\n".join(abstracts))
        size += os.path.getsize(p)
    i += 1
print(f"corpus: {len(docs)} CMRC passages, {len(qs)} questions, big corpus {size/1e6:.1f} MB in {2*i+1} files")
PY

if has cmrc; then
echo "== CMRC 2018 dev: index the 848 contexts, ask every question"
"$bee" index --db "$out/small.sqlite" "$out/small" --json
"$sb" --db "$out/small.sqlite" --questions "$out/questions.jsonl" -k 5
fi
has big || exit 0

echo "== big corpus: indexing throughput (first run), no-op rerun, query latency"
"$bee" index --db "$out/big.sqlite" "$out/big" --json
"$bee" index --db "$out/big.sqlite" "$out/big" --json
ls -l "$out/big.sqlite" | awk '{printf "index size: %.1f MB\n", $5/1e6}'
"$sb" --db "$out/big.sqlite" --questions "$out/questions.jsonl" -k 5
