#!/usr/bin/env bash
# Measures bee search (docs/SEARCH.md):
#   faq:  Recall@5 / MRR@5 on the Debian FAQ (scripts/build-corpus.sh output:
#         faq.jsonl + faq-heldout.jsonl), zh and en reported apart: answer
#         sections indexed alone, with the question as record title (context
#         column), with the heading in the text, and the published HTML pages
#         (/usr/share/doc/debian/FAQ, FAQ_HTML=DIR); exact questions and two
#         rule-made perturbations (content words; half of them);
#   cmrc: Recall@5 / MRR on CMRC 2018 dev questions → their passage;
#   big:  indexing throughput and query latency on a corpus of at least 20 MB
#         made by repeating the CMRC contexts and CSL abstracts.
# Everything generated goes to $OUT (default build/search-bench); nothing from
# ../shared or .cache is committed. PARTS="faq cmrc big" picks the parts;
# PARTS="faq tune" also runs the parameter grids the defaults were chosen from.
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

# one FAQ evaluation: a row "name | zh R@5 MRR | en R@5 MRR" (+ the JSON in $out/faq-NAME.json)
faq_eval() {
    local name="$1" db="$2" qs="$3"; shift 3
    "$sb" --db "$db" --questions "$qs" -k 5 ${MISSES:+--misses} "$@" > "$out/faq-$name.json"
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("%-44s zh %.3f / %.3f   en %.3f / %.3f   (n=%d, k1 %g b %g, ctx weight %g, prf %d/%d)" % (sys.argv[2], r["zh"]["recall_doc"], r["zh"]["mrr_doc"], r["en"]["recall_doc"], r["en"]["mrr_doc"], r["questions"], r["k1"], r["b"], r["context_weight"], r["prf_docs"], r["prf_terms"]))' "$out/faq-$name.json" "$name"
}

if has faq && [ -f "$corpus/faq.jsonl" ]; then
    ran=1
    mkdir -p "$out/faq-titled" "$out/faq-sections"
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
# Perturbed queries (so that a question is not found by string identity with
# its heading): "content" drops interrogatives, pronouns and function words;
# "half" then keeps every other keyword unit (English words; Chinese runs cut
# into 2-character pieces), about half of the question's content.
EN_STOP = set("""a about after all also am an and any are as at be been but by can could did do does doing for from
had has have how i if in into is it its me my of on or our should so some than that the their them then there these
they this those to was we were what when where which who whom why will with would you your just really very much
there's i'm don't can't it's isn't doesn't won't let know want need use using used get way tell possible""".split())
ZH_STOP = ["为什么", "怎么办", "怎么样", "怎么", "怎样", "如何", "哪一个", "哪个", "哪些", "哪里", "什么", "是否", "能否",
           "有没有", "可不可以", "可以", "应该", "我该", "我们", "你们", "他们", "它们", "我", "你", "吗", "呢", "吧",
           "的", "了", "是", "在", "会", "有", "要", "这", "那", "又", "都", "很", "也", "还是", "或者", "能", "该", "本",
           "一个", "一些", "和", "与", "及", "被", "把", "对", "让", "给", "从", "到", "为", "就", "还", "再"]
def units(q):
    if cjk.search(q):
        t = q
        for w in ZH_STOP: t = t.replace(w, " ")
        out = []
        for tok in re.findall(r"[\u3400-\u9fff]+|[A-Za-z0-9][A-Za-z0-9+.-]*", t):
            if cjk.match(tok):
                out += [tok[i:i + 2] for i in range(0, len(tok), 2) if len(tok[i:i + 2]) == 2 or len(tok) == 1]
            elif tok.lower() not in EN_STOP:
                out.append(tok)
        return out
    return [w for w in re.findall(r"[A-Za-z0-9][A-Za-z0-9+'.-]*", q) if w.lower().strip(".") not in EN_STOP]
qf = {v: open(f"{out}/faq-questions-{v}.jsonl", "w", encoding="utf-8") for v in ("exact", "content", "half")}
with open(f"{out}/faq/faq.jsonl", "w", encoding="utf-8") as d, \
     open(f"{out}/faq-titled/faq.jsonl", "w", encoding="utf-8") as ti, \
     open(f"{out}/faq-sections/faq.jsonl", "w", encoding="utf-8") as sec:
    for i, r in enumerate(rows):
        lang = "zh" if cjk.search(r["input"]) else "en"
        did = f"{lang}-{i:04d}"
        # answer text only
        d.write(json.dumps({"id": did, "text": r["<ans>"]}, ensure_ascii=False) + "\n")
        # the answer with its question as the record's title (the context column, as on a real FAQ page)
        ti.write(json.dumps({"id": did, "title": r["input"], "text": r["<ans>"]}, ensure_ascii=False) + "\n")
        # the section as the FAQ lays it out, heading inside the text (first passage only)
        sec.write(json.dumps({"id": did, "text": "# " + r["input"] + "\n\n" + r["<ans>"]}, ensure_ascii=False) + "\n")
        u = units(r["input"])
        qs = {"exact": r["input"], "content": " ".join(u) or r["input"], "half": " ".join(u[::2]) or r["input"]}
        for v, q in qs.items():
            qf[v].write(json.dumps({"question": q, "doc": "#" + did, "lang": lang, "h": r["input"]}, ensure_ascii=False) + "\n")
for f in qf.values(): f.close()
print(f"Debian FAQ: {len(rows)} answer sections indexed, {len(rows)} questions")
PY
    cp "$out/faq-questions-exact.jsonl" "$out/faq-questions.jsonl"
    echo "== Debian FAQ (Recall@5 / MRR@5; every question; a hit is its own answer section)"
    "$bee" index --db "$out/faq.sqlite" "$out/faq" --json
    "$bee" index --db "$out/faq-titled.sqlite" "$out/faq-titled" --json
    "$bee" index --db "$out/faq-sections.sqlite" "$out/faq-sections" --json
    faq_eval answer-only "$out/faq.sqlite" "$out/faq-questions-exact.jsonl"
    faq_eval answer-only+prf "$out/faq.sqlite" "$out/faq-questions-exact.jsonl" --prf-docs "${PRF_DOCS:-3}" --prf-terms "${PRF_TERMS:-10}"
    for v in exact content half; do
        faq_eval "titled,$v" "$out/faq-titled.sqlite" "$out/faq-questions-$v.jsonl"
        faq_eval "titled,$v,ctx0" "$out/faq-titled.sqlite" "$out/faq-questions-$v.jsonl" --context-weight 0
        faq_eval "heading-in-text,$v" "$out/faq-sections.sqlite" "$out/faq-questions-$v.jsonl"
    done
    for v in exact content half; do
        faq_eval "odd-half,titled,$v" "$out/faq-titled.sqlite" "$out/faq-questions-$v.jsonl" --half 1
        faq_eval "odd-half,titled,$v,bm25-1.2-0.75" "$out/faq-titled.sqlite" "$out/faq-questions-$v.jsonl" --half 1 --k1 1.2 --b 0.75
    done
    faq_eval odd-half,answer-only "$out/faq.sqlite" "$out/faq-questions-exact.jsonl" --half 1
    faq_eval odd-half,answer-only,bm25-1.2-0.75 "$out/faq.sqlite" "$out/faq-questions-exact.jsonl" --half 1 --k1 1.2 --b 0.75
    # the FAQ as published: its HTML pages (from the debian-faq / debian-faq-zh-cn packages,
    # /usr/share/doc/debian/FAQ; copied under $out, not committed) indexed by bee index itself;
    # a hit is a passage under the question's own heading (any page)
    faqdir="${FAQ_HTML:-/usr/share/doc/debian/FAQ}"
    if [ -d "$faqdir/zh-cn" ]; then
        mkdir -p "$out/faq-html/en" "$out/faq-html/zh"
        cp "$faqdir"/*.en.html "$out/faq-html/en/" && cp "$faqdir"/zh-cn/*.zh-cn.html "$out/faq-html/zh/"
        "$bee" index --db "$out/faq-html.sqlite" "$out/faq-html" --json
        for v in exact content half; do
            python3 -c 'import json,sys
for l in open(sys.argv[1], encoding="utf-8"):
    r = json.loads(l); del r["doc"]; r["heading"] = r.pop("h"); print(json.dumps(r, ensure_ascii=False))' \
                "$out/faq-questions-$v.jsonl" > "$out/faq-html-questions-$v.jsonl"
            faq_eval "html-pages,$v" "$out/faq-html.sqlite" "$out/faq-html-questions-$v.jsonl"
            faq_eval "html-pages,$v,ctx0" "$out/faq-html.sqlite" "$out/faq-html-questions-$v.jsonl" --context-weight 0
        done
    fi
    faq_eval "titled,half+prf" "$out/faq-titled.sqlite" "$out/faq-questions-half.jsonl" --prf-docs "${PRF_DOCS:-3}" --prf-terms "${PRF_TERMS:-10}"
elif has faq; then
    echo "SKIP faq: $corpus/faq.jsonl not found (scripts/build-corpus.sh makes it)"
fi

if ! { has cmrc || has big || has tune; }; then [ $ran = 1 ] && exit 0 || exit 77; fi
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
# the same contexts with their article title as the record title (the context column)
os.makedirs(f"{out}/small-titled", exist_ok=True)
with open(f"{out}/small-titled/cmrc.jsonl", "w", encoding="utf-8") as f:
    for art in d:
        for p in art["paragraphs"]:
            f.write(json.dumps({"id": p["id"], "title": art.get("title", ""), "text": p["context"]}, ensure_ascii=False) + "\n")
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
echo "== CMRC 2018 dev with article titles in the context column: defaults, then FTS5's bm25 defaults (k1 1.2, b 0.75)"
"$bee" index --db "$out/small-titled.sqlite" "$out/small-titled" --json
"$sb" --db "$out/small-titled.sqlite" --questions "$out/questions.jsonl" -k 5
"$sb" --db "$out/small-titled.sqlite" --questions "$out/questions.jsonl" -k 5 --k1 1.2 --b 0.75
fi
if has tune; then
    # the grids the defaults were chosen from: CMRC with titles (all questions; both halves agree) and the even FAQ half
    echo "== tuning grid: k1 b | CMRC-titled passage MRR | FAQ even half, answer-only exact zh/en MRR | titled+half-keywords zh/en MRR"
    "$bee" index --db "$out/small-titled.sqlite" "$out/small-titled" --json >/dev/null
    for k1 in 0.6 0.9 1.2 1.6 2.0 3.0; do for b in 0.2 0.3 0.5 0.75 0.9; do
        c=$("$sb" --db "$out/small-titled.sqlite" --questions "$out/questions.jsonl" --k1 $k1 --b $b | python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["mrr_passage"])')
        a=$("$sb" --db "$out/faq.sqlite" --questions "$out/faq-questions-exact.jsonl" --half 0 --k1 $k1 --b $b | python3 -c 'import json,sys; r=json.load(sys.stdin); print("%.3f/%.3f" % (r["zh"]["mrr_doc"], r["en"]["mrr_doc"]))')
        t=$("$sb" --db "$out/faq-titled.sqlite" --questions "$out/faq-questions-half.jsonl" --half 0 --k1 $k1 --b $b | python3 -c 'import json,sys; r=json.load(sys.stdin); print("%.3f/%.3f" % (r["zh"]["mrr_doc"], r["en"]["mrr_doc"]))')
        echo "$k1 $b | $c | $a | $t"
    done; done
    echo "== context weight (FAQ even half, titled, half-keyword queries, zh/en MRR | CMRC-titled passage MRR)"
    for w in 0 0.5 1 2 3 5 8 15; do
        t=$("$sb" --db "$out/faq-titled.sqlite" --questions "$out/faq-questions-half.jsonl" --half 0 --context-weight $w | python3 -c 'import json,sys; r=json.load(sys.stdin); print("%.3f/%.3f" % (r["zh"]["mrr_doc"], r["en"]["mrr_doc"]))')
        c=$("$sb" --db "$out/small-titled.sqlite" --questions "$out/questions.jsonl" --context-weight $w | python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["mrr_passage"])')
        echo "$w | $t | $c"
    done
    echo "== PRF docs/terms (FAQ even half, answer-only exact, zh/en MRR)"
    for d in 1 2 3 5 10; do for t in 3 5 10 20; do
        echo "$d/$t | $("$sb" --db "$out/faq.sqlite" --questions "$out/faq-questions-exact.jsonl" --half 0 --prf-docs $d --prf-terms $t | python3 -c 'import json,sys; r=json.load(sys.stdin); print("%.3f/%.3f" % (r["zh"]["mrr_doc"], r["en"]["mrr_doc"]))')"
    done; done
fi
has big || exit 0

echo "== big corpus: indexing throughput (first run), no-op rerun, query latency"
"$bee" index --db "$out/big.sqlite" "$out/big" --json
"$bee" index --db "$out/big.sqlite" "$out/big" --json
ls -l "$out/big.sqlite" | awk '{printf "index size: %.1f MB\n", $5/1e6}'
"$sb" --db "$out/big.sqlite" --questions "$out/questions.jsonl" -k 5
