#!/usr/bin/env bash
# Fetches the English and Chinese word lists of npm's `naughty-words` package
# (CC-BY-4.0, the "List of Dirty, Naughty, Obscene, and Otherwise Bad Words")
# with npm and converts them to bee's lexicon format (UTF-8, one entry per
# line, '#' comments) in .cache/lexicons/ (git-ignored: nothing fetched is
# committed). Writes ATTRIBUTION.md alongside, as the licence requires.
# Usage: scripts/fetch-lexicons.sh [OUT_DIR]     (needs npm and node)
set -euo pipefail
cd "$(dirname "$0")/.."
version="1.2.0"
out="${1:-.cache/lexicons}"
command -v npm >/dev/null || { echo "fetch-lexicons: npm not found (apt-get install npm)" >&2; exit 1; }
command -v node >/dev/null || { echo "fetch-lexicons: node not found" >&2; exit 1; }
mkdir -p "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "naughty-words@$version" >/dev/null && tar xzf "naughty-words-$version.tgz")
pkg="$work/package"

for lang in en zh; do
  node -e '
    const fs = require("fs");
    const [src, dst, lang, ver] = process.argv.slice(1);
    const words = JSON.parse(fs.readFileSync(src, "utf8"));
    if (!Array.isArray(words)) throw new Error(src + ": expected a JSON array");
    const seen = new Set(), lines = [];
    for (const w of words) {
      const t = String(w).replace(/[\r\n]+/g, " ").trim();
      if (t && !t.startsWith("#") && !seen.has(t)) { seen.add(t); lines.push(t); }
    }
    const head = "# naughty-words@" + ver + " " + lang + ".json (CC-BY-4.0, see ATTRIBUTION.md)\n";
    fs.writeFileSync(dst + ".tmp", head + lines.join("\n") + "\n");
    fs.renameSync(dst + ".tmp", dst);
    console.log(dst + ": " + lines.length + " entries");
  ' "$pkg/$lang.json" "$out/naughty-words-$lang.txt" "$lang" "$version"
done
cp "$pkg/LICENSE" "$out/naughty-words-LICENSE"

cat > "$out/ATTRIBUTION.md" <<ATTR
# Lexicon attribution

naughty-words-en.txt and naughty-words-zh.txt are converted (one entry per
line, duplicates removed; otherwise unchanged) from the npm package
naughty-words@$version, which packages the "List of Dirty, Naughty, Obscene,
and Otherwise Bad Words" by Shutterstock and contributors:
https://github.com/LDNOOBW/List-of-Dirty-Naughty-Obscene-and-Otherwise-Bad-Words

Licensed under the Creative Commons Attribution 4.0 International licence
(CC-BY-4.0): https://creativecommons.org/licenses/by/4.0/ — the package's own
licence text is in naughty-words-LICENSE.

Fetched by bee's scripts/fetch-lexicons.sh on $(date -u +%Y-%m-%d). These files
are not part of bee's source and are never committed to it.
ATTR
echo "fetch-lexicons: wrote $out (attribution in $out/ATTRIBUTION.md)"
