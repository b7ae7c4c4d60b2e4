#!/usr/bin/env bash
# Builds the bilingual (zh + en) training corpus for the embedded default model
# from Debian and npm packages only, into OUT_DIR (default .cache/corpus, git-ignored).
#
#   scripts/build-corpus.sh [OUT_DIR]
#
# Sources (installed with apt-get / fetched with `npm pack` when missing):
#   fortunes-zh, debian-reference-zh-cn, debian-reference-en, debian-faq,
#   debian-faq-zh-cn, bible-kjv-text (+ bible-kjv for its reader), opencc
#   (traditional → simplified for the poems), npm chinese-poetry.
#
# Output: train.txt, heldout.txt (one document per line), poems-heldout.jsonl,
# kjv-heldout.txt (the book of Ruth), faq.jsonl + faq-heldout.jsonl (CPM-Bee
# dicts, "<" escaped as "<<"), SOURCES.md.
# Re-runnable and deterministic: every split is decided by a SHA-1 of the text,
# files are read in sorted order and output is written through temp files.
# Nothing it produces may be committed (licensed third-party text).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-.cache/corpus}
POETRY_VERSION=${BEE_POETRY_VERSION:-2.0.1}
DEB_PKGS=(fortunes-zh debian-reference-zh-cn debian-reference-en debian-faq debian-faq-zh-cn bible-kjv-text bible-kjv opencc)

missing=()
for p in "${DEB_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "build-corpus: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
command -v python3 >/dev/null || { echo "build-corpus: python3 is required" >&2; exit 1; }

mkdir -p "$OUT/src"
OUT=$(cd "$OUT" && pwd)

# npm package: fetched once into OUT/src (a pinned version, so reruns read the same files).
poetry_dir="$OUT/src/chinese-poetry-$POETRY_VERSION"
if [ ! -f "$poetry_dir/package.json" ]; then
  command -v npm >/dev/null || { echo "build-corpus: npm is required for chinese-poetry" >&2; exit 1; }
  tmp=$(mktemp -d "$OUT/src/npm.XXXXXX")
  (cd "$tmp" && npm pack --silent "chinese-poetry@$POETRY_VERSION" >/dev/null)
  mkdir -p "$tmp/x" && tar -xzf "$tmp"/chinese-poetry-*.tgz -C "$tmp/x"
  rm -rf "$poetry_dir" && mv "$tmp/x/package" "$poetry_dir" && rm -rf "$tmp"
fi

# The KJV text is stored compressed; its reader prints one verse per line
# ("Ge1:1 In the beginning ...") with -f and no line-width limit.
kjv="$OUT/src/kjv-verses.txt"
if [ ! -s "$kjv" ]; then
  COLUMNS=100000 bible -f -m 16384 'Ge1:1-Re22:21' >"$kjv.tmp" && mv "$kjv.tmp" "$kjv"
fi

# Poems are traditional Chinese; the model's text is simplified. One opencc pass
# over the concatenated poem JSON keeps this fast and cached.
poems_s="$OUT/src/poems-simplified.jsonl"
if [ ! -s "$poems_s" ]; then
  python3 - "$poetry_dir" >"$OUT/src/poems-trad.jsonl" <<'EOF'
import json, os, sys
d = sys.argv[1] + "/dist"
files = []
for sub in ("quantangshi", "songci", "shijing", "wudaishici", "nalanxingde", "caocaoshiji", "chuci"):
    p = os.path.join(d, sub)
    if not os.path.isdir(p):
        continue
    for f in sorted(os.listdir(p)):
        # Song-dynasty shi (poet.song.*) are 250k+ poems: left out to keep the corpus balanced.
        if f.endswith(".json") and not f.startswith(("author", "poet.song", "authors")):
            files.append(os.path.join(p, f))
for f in files:
    try:
        data = json.load(open(f, encoding="utf-8"))
    except Exception:
        continue
    if isinstance(data, dict):
        data = [data]
    for r in data:
        if not isinstance(r, dict):
            continue
        lines = r.get("paragraphs") or r.get("content") or []
        if isinstance(lines, str):
            lines = [lines]
        lines = [l for l in lines if isinstance(l, str)]
        title = r.get("title") or r.get("rhythmic") or r.get("chapter") or ""
        author = r.get("author") or ""
        if lines:
            print(json.dumps({"title": title, "author": author, "lines": lines}, ensure_ascii=False))
EOF
  opencc -c t2s.json -i "$OUT/src/poems-trad.jsonl" -o "$poems_s.tmp" && mv "$poems_s.tmp" "$poems_s"
  rm -f "$OUT/src/poems-trad.jsonl"
fi

python3 - "$OUT" "$poems_s" "$kjv" <<'EOF'
import gzip, hashlib, html.parser, json, os, re, sys, unicodedata

out, poems_path, kjv_path = sys.argv[1:4]

def h(s, mod):
    return int(hashlib.sha1(s.encode("utf-8")).hexdigest()[:8], 16) % mod

ctrl = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u200b\ufeff]")
ansi = re.compile(r"\x1b\[[0-9;]*m")
def norm(s):
    s = unicodedata.normalize("NFC", ansi.sub("", s))
    s = ctrl.sub(" ", s.replace("\t", " ").replace("\r", ""))
    return re.sub(r"[ \u00a0\u3000]+", " ", s).strip()

class Blocks(html.parser.HTMLParser):
    """Text of block elements; headings are kept apart so the FAQ can pair them."""
    BLOCK = {"p", "li", "pre", "h1", "h2", "h3", "h4", "h5", "td", "th", "dt", "dd", "title", "div", "tr"}
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.blocks, self.cur, self.tag, self.skip = [], [], None, 0
    def flush(self, tag):
        t = norm("".join(self.cur))
        if t:
            self.blocks.append((tag, t))
        self.cur = []
    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self.skip += 1
        elif tag in self.BLOCK:
            self.flush(self.tag); self.tag = tag
        elif tag == "br":
            self.cur.append(" ")
    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self.skip = max(0, self.skip - 1)
        elif tag in self.BLOCK:
            self.flush(tag if tag[0] == "h" else self.tag); self.tag = None
    def handle_data(self, data):
        if not self.skip:
            self.cur.append(data.replace("\n", " "))

def html_blocks(path):
    p = Blocks()
    p.feed(open(path, encoding="utf-8", errors="replace").read())
    p.flush(p.tag)
    return p.blocks

docs = []  # (source, text): one document per line of train/heldout

# Debian Reference, zh-cn and en: every paragraph/list item/table cell of the chapters.
ref = "/usr/share/debian-reference"
for lang in ("zh-cn", "en"):
    for f in sorted(os.listdir(ref)):
        if f.endswith("." + lang + ".html") and not f.startswith("index"):
            for tag, t in html_blocks(os.path.join(ref, f)):
                if len(t) >= 8:
                    docs.append(("debian-reference-" + lang, t))

# Debian FAQ: question headings followed by their answer paragraphs.
qhead = re.compile(r"^\d+(\.\d+)+\.\s*(.+)$")
faq = []
for lang, d in (("en", "/usr/share/doc/debian/FAQ"), ("zh", "/usr/share/doc/debian/FAQ/zh-cn")):
    for f in sorted(os.listdir(d)):
        if not f.endswith(".html") or f.startswith("index"):
            continue
        q, ans = None, []
        def close():
            if q and ans and q.rstrip().endswith(("?", "？")):
                faq.append({"input": q, "<ans>": " ".join(ans), "_lang": lang})
        for tag, t in html_blocks(os.path.join(d, f)):
            m = qhead.match(t) if tag in ("h2", "h3", "h4") else None
            if m:
                close(); q, ans = m.group(2).strip(), []
            elif tag[0] != "h" and q is not None:
                ans.append(t)
            if tag[0] != "h" and len(t) >= 8:
                docs.append(("debian-faq-" + lang, t))
        close()

# fortunes-zh: Tang 300, Song 100 and the Chinese sayings; one fortune per document.
for f in ("chinese.u8", "tang300.u8", "song100.u8"):
    p = "/usr/share/games/fortunes/" + f
    if os.path.exists(p):
        for chunk in open(p, encoding="utf-8", errors="replace").read().split("\n%\n"):
            t = norm(" ".join(l for l in chunk.split("\n")))
            if len(t) >= 4:
                docs.append(("fortunes-zh", t))

# KJV: one chapter per document; the book of Ruth is held out whole.
chapters, kjv_held = {}, []
verse = re.compile(r"^(\w+?)(\d+):(\d+) (.*)$")
for line in open(kjv_path, encoding="utf-8", errors="replace"):
    m = verse.match(line.strip())
    if not m:
        continue
    book, ch, text = m.group(1), m.group(2), norm(m.group(4))
    if book == "Ruth":
        kjv_held.append(text)
    else:
        chapters.setdefault((book, ch), []).append(text)
for key in sorted(chapters, key=lambda k: list(chapters).index(k)):
    docs.append(("bible-kjv-text", " ".join(chapters[key])))

# Poems (simplified): ~2% held out for the next-line multiple-choice test.
poems_held, seen_poems = [], set()
for line in open(poems_path, encoding="utf-8"):
    r = json.loads(line)
    lines = [norm(l) for l in r["lines"] if norm(l)]
    if not lines:
        continue
    key = "".join(lines)
    if key in seen_poems:
        continue
    seen_poems.add(key)
    title, author = norm(r["title"]), norm(r["author"])
    if len(lines) >= 4 and h("poem:" + key, 50) == 0:
        poems_held.append({"title": title, "author": author, "lines": lines})
        continue
    docs.append(("chinese-poetry", "《%s》%s：%s" % (title, author, "".join(lines))))

# Dedupe (exact, after normalisation) keeping the first occurrence; 2% held out by hash.
seen, train, held, per_src = set(), [], [], {}
for src, t in docs:
    if t in seen:
        continue
    seen.add(t)
    (held if h("doc:" + t, 50) == 0 else train).append(t)
    per_src[src] = per_src.get(src, 0) + len(t)

faq_seen, faq_train, faq_held = set(), [], []
for r in faq:
    if r["input"] in faq_seen:
        continue
    faq_seen.add(r["input"])
    r.pop("_lang")
    # CPM-Bee dict text writes a literal "<" as "<<" (README; bee chat does the same)
    r = {k: v.replace("<", "<<") for k, v in r.items()}
    (faq_held if h("faq:" + r["input"], 10) == 0 else faq_train).append(r)

def write(name, lines):
    tmp = os.path.join(out, name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for l in lines:
            f.write(l + "\n")
    os.replace(tmp, os.path.join(out, name))

dump = lambda rows: [json.dumps(r, ensure_ascii=False) for r in rows]
write("train.txt", train)
write("heldout.txt", held)
write("poems-heldout.jsonl", dump(poems_held))
write("kjv-heldout.txt", kjv_held)
write("faq.jsonl", dump(faq_train))
write("faq-heldout.jsonl", dump(faq_held))
json.dump(per_src, open(os.path.join(out, "src", "chars-per-source.json"), "w"), sort_keys=True)
EOF

# SOURCES.md: package, version, licence (first licence named in the Debian copyright file).
{
  echo "# Corpus sources"
  echo
  echo "Built by scripts/build-corpus.sh. Third-party text: do not commit."
  echo
  echo "| package | version | licence | characters |"
  echo "|---|---|---|---|"
  for p in fortunes-zh debian-reference-zh-cn debian-reference-en debian-faq debian-faq-zh-cn bible-kjv-text; do
    v=$(dpkg-query -W -f='${Version}' "$p")
    lic=$(grep -m1 '^License:' "/usr/share/doc/$p/copyright" 2>/dev/null | sed 's/^License: *//' || true)
    # Copyright files that are not machine-readable: their statement in short.
    case $p in
      debian-faq|debian-faq-zh-cn) lic="SPI permission notice (verbatim and modified copies, translations)";;
      bible-kjv-text) lic="KJV text: copyright expired; packaging GPL-2+";;
    esac
    key=$p; case $p in debian-faq) key=debian-faq-en;; debian-faq-zh-cn) key=debian-faq-zh;; esac
    n=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], 0))' "$OUT/src/chars-per-source.json" "$key")
    echo "| $p (Debian) | $v | ${lic:-see /usr/share/doc/$p/copyright} | $n |"
  done
  lic=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("license",""))' "$poetry_dir/package.json")
  n=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("chinese-poetry", 0))' "$OUT/src/chars-per-source.json")
  echo "| chinese-poetry (npm) | $POETRY_VERSION | $lic | $n |"
  echo "| opencc (Debian, tool only: traditional → simplified) | $(dpkg-query -W -f='${Version}' opencc) | Apache-2.0 | — |"
} >"$OUT/SOURCES.md.tmp" && mv "$OUT/SOURCES.md.tmp" "$OUT/SOURCES.md"

echo "build-corpus: $OUT"
for f in train.txt heldout.txt poems-heldout.jsonl kjv-heldout.txt faq.jsonl faq-heldout.jsonl; do
  printf '  %-20s %8s lines %12s chars %10s bytes\n' "$f" "$(wc -l <"$OUT/$f")" "$(wc -m <"$OUT/$f")" "$(wc -c <"$OUT/$f")"
done
