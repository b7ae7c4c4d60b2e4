#!/usr/bin/env bash
# bee train --lora / bee lora merge / bee generate --lora end to end on a
# `bee init` model: the loss falls, only the small adapter is written, a
# stopped + resumed LoRA run ends byte-identical to an uninterrupted one, the
# merged model and the unmerged adapter give the same answer (bee generate
# and bee serve), and bad input gives clear errors.
set -u
. "$(cd "$(dirname "$0")" && pwd)/lib/serve.sh"
B=${BEE_BIN:?BEE_BIN not set}
D=${BEE_TMPDIR:-/tmp}/cli_lora.$$
mkdir -p "$D"
trap 'rm -rf "$D"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$B" init -o "$D/base.gguf" --seed 3 >/dev/null || fail "init"
for i in $(seq 0 59); do
    a=$((i % 10)); b=$((i * 7 % 10))
    echo "{\"input\": \"$a+$b=\", \"<ans>\": \"$((a + b))\"}"
done >"$D/tr.jsonl"

T="train -m $D/base.gguf --data $D/tr.jsonl --lora 4,8 --batch 2 --ctx 32 --lr 1e-2 --warmup 2 --steps 8 -t 2"
"$B" $T -o "$D/a.gguf" --ckpt "$D/a.ckpt" >"$D/out" 2>&1 || { cat "$D/out"; fail "lora train"; }
grep -q "LoRA rank 4 alpha 8: 2048 trainable" "$D/out" || { cat "$D/out"; fail "trainable count"; }
first=$(grep "^step 1/" "$D/out" | sed 's/.*loss \([0-9.]*\).*/\1/')
last=$(grep "last loss" "$D/out" | sed 's/.*last loss //')
awk -v f="$first" -v l="$last" 'BEGIN { exit !(l < f) }' || fail "loss did not fall ($first -> $last)"
size=$(stat -c %s "$D/a.gguf")
[ "$size" -lt 20000 ] || fail "adapter is $size bytes"

# stop after 3, resume for 5: byte-identical adapter and checkpoint
"$B" $T -o "$D/b.gguf" --ckpt "$D/b.ckpt" --stop-after 3 >/dev/null 2>&1 || fail "stop-after"
"$B" $T -o "$D/b.gguf" --ckpt "$D/b.ckpt" --resume >/dev/null 2>&1 || fail "resume"
cmp -s "$D/a.gguf" "$D/b.gguf" || fail "resumed adapter differs"
cmp -s "$D/a.ckpt" "$D/b.ckpt" || fail "resumed checkpoint differs"
# a full-training checkpoint is refused by a LoRA run
"$B" train -m "$D/base.gguf" --data "$D/tr.jsonl" --batch 2 --ctx 32 --steps 1 -t 2 --ckpt "$D/full.ckpt" >/dev/null 2>&1 || fail "full train"
"$B" $T --ckpt "$D/full.ckpt" --resume >"$D/out" 2>&1 && fail "full checkpoint accepted"
grep -q "checkpoint of a full run" "$D/out" || { cat "$D/out"; fail "full ckpt message"; }

"$B" lora merge -m "$D/base.gguf" --lora "$D/a.gguf" -o "$D/m.gguf" >/dev/null || fail "merge"
g1=$("$B" generate -m "$D/base.gguf" --lora "$D/a.gguf" -p "3+4=" --max-length 6 -t 1) || fail "generate --lora"
g2=$("$B" generate -m "$D/m.gguf" -p "3+4=" --max-length 6 -t 1) || fail "generate merged"
[ "$g1" = "$g2" ] || fail "merged '$g2' != unmerged '$g1'"

# bee serve --lora: the same greedy answer as the merged model, other token
# scores than the base; --kv-type f16 halves the cache
completion() { # ARGS... -> the /v1/completions body of a greedy "3+4=" with token logprobs
    serve_start "$D/slog" "$B" --threads 1 --parallel 2 "$@" || { cat "$D/slog"; fail "serve $*"; }
    http_body POST /v1/completions '{"prompt":"3+4=","max_tokens":4,"temperature":0,"logprobs":1}'
    kill "$SERVE_PID"; wait "$SERVE_PID" 2>/dev/null
}
text_of() { sed -nE 's/.*"text":"([^"]*)".*/\1/p' <<<"$1"; }
probs_of() { sed -nE 's/.*"token_logprobs":\[([^]]*)\].*/\1/p' <<<"$1"; }
if serve_available "$B"; then
    c_lora=$(completion -m "$D/base.gguf" --lora "$D/a.gguf")
    c_merged=$(completion -m "$D/m.gguf")
    c_base=$(completion -m "$D/base.gguf")
    [ -n "$(probs_of "$c_lora")" ] || fail "no logprobs from serve --lora: $c_lora"
    [ "$(text_of "$c_lora")" = "$(text_of "$c_merged")" ] || fail "serve --lora '$(text_of "$c_lora")' != merged '$(text_of "$c_merged")'"
    [ "$(probs_of "$c_lora")" != "$(probs_of "$c_base")" ] || fail "serve --lora scored like the base model"
    BEE_LORA="$D/base.gguf" "$B" serve -m "$D/base.gguf" --port 0 >"$D/out" 2>&1 && fail "serve with a model as adapter"
    grep -q "not a LoRA adapter" "$D/out" || { cat "$D/out"; fail "serve adapter message"; }
    kv_bytes() { # ARGS... -> bee_kv_cache_bytes after one request (the pool grows on demand)
        serve_start "$D/slog" "$B" --threads 1 --parallel 2 -m "$D/base.gguf" "$@" || { cat "$D/slog"; fail "serve $*"; }
        http_body POST /v1/completions '{"prompt":"3+4=","max_tokens":4}' >/dev/null
        http_body GET /metrics | sed -nE 's/^bee_kv_cache_bytes ([0-9]+).*/\1/p'
        kill "$SERVE_PID"; wait "$SERVE_PID" 2>/dev/null
    }
    f16=$(kv_bytes --kv-type f16)
    f32=$(BEE_KV_TYPE=f32 kv_bytes)
    [ -n "$f16" ] && [ "$f16" -gt 0 ] && [ "$((f16 * 2))" = "$f32" ] || fail "f16 KV cache $f16 bytes, f32 $f32"
    "$B" serve -m "$D/base.gguf" --kv-type q4_0 >"$D/out" 2>&1 && fail "--kv-type q4_0 accepted"
    grep -q -- "--kv-type" "$D/out" || { cat "$D/out"; fail "kv-type message"; }
fi

# errors
"$B" train -m "$D/base.gguf" --data "$D/tr.jsonl" --lora 4 -o "$D/x.gguf" >"$D/out" 2>&1 && fail "--lora 4 accepted"
grep -q "RANK,ALPHA" "$D/out" || fail "bad --lora message"
"$B" generate -m "$D/base.gguf" --lora "$D/base.gguf" -p hi >"$D/out" 2>&1 && fail "model as adapter"
grep -q "not a LoRA adapter" "$D/out" || { cat "$D/out"; fail "arch message"; }
"$B" init -o "$D/small.gguf" --shape small --seed 1 >/dev/null 2>&1 || fail "init small"
"$B" lora merge -m "$D/small.gguf" --lora "$D/a.gguf" -o "$D/x.gguf" >"$D/out" 2>&1 && fail "wrong base accepted"
grep -q "made for another model" "$D/out" || { cat "$D/out"; fail "shape message"; }
head -c 3000 "$D/a.gguf" >"$D/cut.gguf"
"$B" lora merge -m "$D/base.gguf" --lora "$D/cut.gguf" -o "$D/x.gguf" >"$D/out" 2>&1 && fail "truncated accepted"
grep -q "cut.gguf" "$D/out" || { cat "$D/out"; fail "truncated message"; }
echo "ok"
