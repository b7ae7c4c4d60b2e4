#!/usr/bin/env bash
# Builds the project leaderboard: `bee eval` over the built-in tasks, the
# corpus tasks (scripts/build-corpus.sh) and the ../shared benchmarks, for a
# set of models and their quantized variants, a unigram baseline, models
# served over HTTP by `bee serve` and LoRA variants; writes the table to
# docs/leaderboard.md and docs/leaderboard.csv with the command at the top.
#
# usage: bench/leaderboard.sh [options] [MODEL.gguf ...]      (default: models/*.gguf)
#   --limit N            items per task (default 100)
#   --tasks T1,T2        tasks (default: all below; those whose data is missing are skipped by bee eval)
#   --quant "T1 T2"      quantized variants made of every float model with bee quantize (default "q8_0 q4_0 q4_1"; "" for none)
#   --serve N            also evaluate the first N models through `bee serve` on free ports (default 2; 0 for none)
#   --remote NAME=URL    an already running OpenAI-compatible server (repeatable)
#   --lora BASE=ADAPTER  a LoRA variant: the adapter applied to BASE, unmerged (repeatable)
#   --unigram FILE       text file of the unigram baseline (default .cache/corpus/train.txt when present; "none" to leave it out)
#   --work DIR           bee eval's output folder: samples, results.json, cache (default .cache/leaderboard; reruns resume)
#   --md FILE --csv FILE where the table goes (default docs/leaderboard.md, docs/leaderboard.csv)
#   --build DIR          build folder (default build)
#   -t N                 forward-pass threads per model (default 0 = all cores)
# env: BEE_DATA_DIR (default ../shared/data), BEE_CORPUS (default .cache/corpus), BEE_API_KEY_ENV for --remote servers.
set -euo pipefail
cmdline="bench/leaderboard.sh $*"
cd "$(dirname "$0")/.."

limit=100
tasks="sanity,sanity-gen,poem-nextline,kjv-nextverse,kjv-continue,heldout-ppl,cmmlu,cmmlu-content,gaokao-history,gaokao-biology,cmrc2018,csl,csl-ppl"
quant="q8_0 q4_0 q4_1"
serve=2
unigram=""
work=".cache/leaderboard"
md="docs/leaderboard.md"
csv="docs/leaderboard.csv"
build="build"
threads=0
remotes=()
loras=()
models=()
die() { echo "leaderboard: $*" >&2; exit 2; }
need() { [ $# -ge 2 ] || die "$1 needs a value"; }
while [ $# -gt 0 ]; do
    case "$1" in
    --limit) need "$@"; limit=$2; shift 2 ;;
    --tasks) need "$@"; tasks=$2; shift 2 ;;
    --quant) need "$@"; quant=$2; shift 2 ;;
    --serve) need "$@"; serve=$2; shift 2 ;;
    --remote) need "$@"; remotes+=("$2"); shift 2 ;;
    --lora) need "$@"; loras+=("$2"); shift 2 ;;
    --unigram) need "$@"; unigram=$2; shift 2 ;;
    --work) need "$@"; work=$2; shift 2 ;;
    --md) need "$@"; md=$2; shift 2 ;;
    --csv) need "$@"; csv=$2; shift 2 ;;
    --build) need "$@"; build=$2; shift 2 ;;
    -t) need "$@"; threads=$2; shift 2 ;;
    -h | --help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) models+=("$1"); shift ;;
    esac
done
[[ "$limit" =~ ^[0-9]+$ ]] || die "--limit must be a number"
[[ "$serve" =~ ^[0-9]+$ ]] || die "--serve must be a number"
bee="$build/bee"
[ -x "$bee" ] || die "no $bee: build first (cmake --build $build)"
if [ ${#models[@]} -eq 0 ]; then
    shopt -s nullglob
    models=(models/*.gguf)
    shopt -u nullglob
fi
[ ${#models[@]} -gt 0 ] || [ ${#remotes[@]} -gt 0 ] || die "no models (give MODEL.gguf files or put them in models/)"
corpus="${BEE_CORPUS:-.cache/corpus}"
if [ -z "$unigram" ] && [ -f "$corpus/train.txt" ]; then unigram="$corpus/train.txt"; fi
[ "$unigram" = "none" ] && unigram=""
[ -z "$unigram" ] || [ -f "$unigram" ] || die "--unigram $unigram: no such file"
mkdir -p "$work/variants"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# ---------------------------------------------------------------- the model list (JSON, one entry a line)
list="$work/models.json"
entries=()
names=" "
add() { # NAME JSON-FIELDS
    case "$names" in *" $1 "*) die "two models named '$1' (rename a file)" ;; esac
    names="$names$1 "
    entries+=("{\"name\": \"$1\", $2}")
}
jstr() { python3 -c 'import json, sys; print(json.dumps(sys.argv[1]))' "$1" 2>/dev/null || printf '"%s"' "$1"; }
for m in "${models[@]}"; do
    [ -f "$m" ] || die "$m: no such model file"
    base=$(basename "$m" .gguf)
    add "$base" "\"path\": $(jstr "$(realpath "$m")")"
    if [ -n "$quant" ] && ! "$bee" info "$m" | grep "tensor types" | grep -q " q[0-9]"; then
        for q in $quant; do
            v="$work/variants/$base-$q.gguf"
            if [ ! -f "$v" ] || [ "$m" -nt "$v" ]; then
                "$bee" quantize "$m" "$v" --type "$q" >/dev/null || die "bee quantize $m --type $q failed"
            fi
            add "$base-$q" "\"path\": $(jstr "$(realpath "$v")")"
        done
    fi
done
for l in "${loras[@]}"; do
    b=${l%%=*}
    a=${l#*=}
    [ -f "$b" ] && [ -f "$a" ] || die "--lora $l: give BASE.gguf=ADAPTER.gguf (both files)"
    add "$(basename "$b" .gguf)+$(basename "$a" .gguf)" "\"path\": $(jstr "$(realpath "$b")"), \"lora\": $(jstr "$(realpath "$a")")"
done
if [ -n "$unigram" ]; then
    add "unigram" "\"type\": \"unigram\", \"path\": $(jstr "$(realpath "$unigram")")"
fi
n_serve=0
for m in "${models[@]}"; do
    [ "$n_serve" -lt "$serve" ] || break
    name="$(basename "$m" .gguf)-served"
    log="$work/serve-$n_serve.log"
    "$bee" serve -m "$m" --port 0 -t "$threads" --parallel 2 --ctx 4096 --name "$name" 2>"$log" &
    pids+=($!)
    port=""
    for _ in $(seq 1 1200); do
        port="$(sed -nE 's/.*listening on http:\/\/127\.0\.0\.1:([0-9]+).*/\1/p' "$log")"
        [ -n "$port" ] && grep -q ready "$log" && break
        grep -q "without libmicrohttpd" "$log" && break
        sleep 0.05
    done
    if [ -z "$port" ] || ! grep -q ready "$log"; then
        echo "leaderboard: bee serve for $m did not start; served models left out:" >&2
        cat "$log" >&2
        break
    fi
    add "$name" "\"type\": \"openai\", \"base_url\": \"http://127.0.0.1:$port\", \"model\": \"$name\", \"timeout_s\": 3600"
    n_serve=$((n_serve + 1))
done
for r in "${remotes[@]}"; do
    n=${r%%=*}
    u=${r#*=}
    [ "$n" != "$r" ] || die "--remote $r: give NAME=URL"
    key=""
    [ -z "${BEE_API_KEY_ENV:-}" ] || key=", \"api_key_env\": \"$BEE_API_KEY_ENV\""
    add "$n" "\"type\": \"openai\", \"base_url\": $(jstr "$u"), \"timeout_s\": 3600$key"
done
{
    echo "["
    for i in "${!entries[@]}"; do
        [ "$i" -gt 0 ] && echo ","
        printf '  %s' "${entries[$i]}"
    done
    echo
    echo "]"
} >"$list"

# ---------------------------------------------------------------- evaluation
echo "leaderboard: ${#entries[@]} models, tasks $tasks, --limit $limit; output in $work" >&2
"$bee" eval --models "$list" --tasks "$tasks" --out "$work" --limit "$limit" -t "$threads" \
    --data-dir "${BEE_DATA_DIR:-../shared/data}" --corpus-dir "$corpus"

# ---------------------------------------------------------------- the tables
mkdir -p "$(dirname "$md")" "$(dirname "$csv")"
{
    echo "# bee leaderboard"
    echo
    echo "Generated by \`$cmdline\` on $(date -u +%Y-%m-%d) (bee eval --limit $limit; work folder $work)."
    echo
    cat "$work/leaderboard.md"
    echo
    echo "Models: $(for e in "${entries[@]}"; do printf '%s; ' "$e"; done | sed 's/; $//')"
    echo
    echo "Tasks whose data was missing were skipped (see docs/EVAL.md). Served models are scored through"
    echo "\`bee serve\`'s echo + logprobs (the same log-likelihoods as the local path); the unigram row is the"
    echo "baseline of docs/EVAL.md (its perplexity counts eval tokens, not model tokens)."
} >"$md.tmp"
mv "$md.tmp" "$md"
{
    echo "# $cmdline"
    cat "$work/leaderboard.csv"
} >"$csv.tmp"
mv "$csv.tmp" "$csv"
echo "leaderboard: wrote $md and $csv" >&2
