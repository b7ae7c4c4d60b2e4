#!/usr/bin/env python3
"""Turns the plain-text corpus into CPM-Bee training dicts for the default model.

Half of the lines (by SHA-1 of the text) stay whole answers, {"<ans>": line}, so
the model learns the language everywhere. The other half are cut at a sentence
boundary near the start into {"input": head, "<ans>": rest}, so it also learns
what `bee generate -p`, `bee ask` and `bee eval` ask of it: continue or answer
from an input segment. Text is escaped as CPM-Bee dicts require ("<" -> "<<").

usage: pretrain-mix.py TRAIN.txt OUT.jsonl
"""
import hashlib
import json
import os
import sys

BOUNDARY = set("。！？；，.!?;:：")
MIN_HEAD, MAX_HEAD, MIN_REST = 6, 160, 6


def cut_point(line, h):
    """A boundary (index after the punctuation) in the head window, chosen by h."""
    cuts = [i + 1 for i, ch in enumerate(line[:MAX_HEAD]) if ch in BOUNDARY and i + 1 >= MIN_HEAD]
    cuts = [c for c in cuts if len(line) - c >= MIN_REST]
    return cuts[h % len(cuts)] if cuts else None


def main():
    src, out = sys.argv[1], sys.argv[2]
    tmp = out + ".tmp"
    n = n_split = 0
    with open(src, encoding="utf-8") as f, open(tmp, "w", encoding="utf-8") as g:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                continue
            h = int.from_bytes(hashlib.sha1(line.encode("utf-8")).digest()[:8], "little")
            cut = cut_point(line, h >> 1) if h & 1 else None
            esc = lambda s: s.replace("<", "<<")
            if cut is None:
                d = {"<ans>": esc(line)}
            else:
                d = {"input": esc(line[:cut]), "<ans>": esc(line[cut:].lstrip(" "))}
                n_split += 1
            g.write(json.dumps(d, ensure_ascii=False) + "\n")
            n += 1
        g.flush()
        os.fsync(g.fileno())
    os.replace(tmp, out)
    print(f"pretrain-mix: {n} examples, {n_split} with an input segment -> {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
