#!/usr/bin/env bash
# Writes a few seed inputs for a fuzzer into its corpus folder (generated, so
# nothing from ../shared is committed). Usage: fuzz-seeds.sh FUZZER DIR
set -euo pipefail
name="$1"; dir="$2"
case "$name" in
  fuzz_tokenizer)
    printf 'hello <<world>> <mask_0> 今天天气真好' > "$dir/seed1"
    printf 'x < y' > "$dir/seed2" ;;
  fuzz_search_tokenizer)
    printf '北京大学 Running STORES ＡＢＣ１２３\343\200\200カナ 한국 "NEAR(*)" \377' > "$dir/seed1"
    printf '<html><h1>标题 &amp; x</h1><script>a<b</script><p>一&#x4E8C;三</p>\n\n# md\n\ntext' > "$dir/seed2" ;;
  fuzz_dict)
    printf '{"input":"NGC<mask_0>","o":{"<option_0>":"a"},"<ans>":{"<mask_0>":""}}' > "$dir/seed1"
    printf '{"q":{"a":{"b":"c"}},"<ans>":""}' > "$dir/seed2" ;;
  fuzz_safety)
    printf '\003\005ab\n炸药\nASS\nb.a\n中國\000text with 炸 藥, A.S.S and ＡＢ 国' > "$dir/seed1"
    printf '\001\001he\nshe\nhers\n\000ushers \342\200\213she\377' > "$dir/seed2"
    printf '{"default_action":"mask","mask":"#","normalize":{"skip_separators":false},"categories":{"a":{"action":"block","terms":["x","mask"]},"b":{"lexicons":["nope.txt"]}}}' > "$dir/seed3" ;;
  fuzz_request)
    printf '{"prompt":"hello <<x>>","max_tokens":4,"temperature":0.5,"stop":["a","b"],"n":2,"logprobs":1,"stream":true}' > "$dir/seed1"
    printf '{"messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"hi"}]}],"seed":3}' > "$dir/seed2"
    printf '{"data":{"input":"x","<ans>":{"a":""}},"beam_size":2,"max_tokens":5}' > "$dir/seed3"
    printf '{"content":"tok <mask_0>"}' > "$dir/seed4" ;;
  fuzz_digest)
    printf '{"question":"Q？","answers":[{"id":3,"upvotes":2,"text":"内存安全。没有数据竞争！Pi is 3.14. Really?"},{"id":"x","text":"“好。”然后……\\n第二行"}]}' > "$dir/seed1"
    printf '{"question":"q"}\n{"text":"a b c. d e f!","upvotes":1}\n{"id":2,"text":"g h i? j k"}\n' > "$dir/seed2" ;;
  fuzz_shard)
    # header (the harness patches the vocabulary fields), then one 3-token, 1-segment instance
    z() { for _ in $(seq "$1"); do printf '\0'; done; }
    { printf 'BEESHARD\001'; z 15; printf '\001'; z 7; printf '\003'; z 7
      printf '\003\0\0\0\001\0\0\0\006\0\0\0\011\0\0\0\007\0\0\0'; z 24; printf '\001\001\0'; z 4
    } > "$dir/seed1" ;;
  fuzz_gguf)
    bee="build/bee"
    if [ -x "$bee" ] && [ ! -f "$dir/seed.gguf" ]; then
      vocab="$(mktemp)"
      printf '%s\n' '<pad>' '<unk>' '<mask>' '<sep>' '</n>' '</_>' '<s>' '</s>' '<root>' '<ans>' '<option>' a b > "$vocab"
      "$bee" init -o "$dir/seed.gguf" --vocab "$vocab" --dim 8 --heads 2 --dim-head 4 --ff 8 --layers 1 >/dev/null 2>&1 || true
      rm -f "$vocab"
    fi ;;
esac
