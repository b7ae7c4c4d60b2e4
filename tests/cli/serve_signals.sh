#!/usr/bin/env bash
# bee serve as a process: env-var options, port 0, /health over a raw
# socket, and SIGTERM draining an in-flight request before a clean exit.
# Skips (77) when bee was built without libmicrohttpd.
set -euo pipefail
. "$(cd "$(dirname "$0")" && pwd)/lib/serve.sh"
bee="${BEE_BIN:-build/bee}"
base="${BEE_TMPDIR:-/tmp}"
mkdir -p "$base"
dir="$(mktemp -d "$base/serve.XXXXXX")"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
pid=""

"$bee" init -o "$dir/m.gguf" --seed 3 >/dev/null 2>&1
serve_available "$bee" || { echo "SKIP: bee built without libmicrohttpd"; exit 77; }

# options from the environment: an ephemeral port, 2 slots. The log exists
# before the server starts: the background job's redirection may not have
# run yet when the loop first reads it (a failed sed here ends the script).
: >"$dir/log"
BEE_PORT=0 BEE_PARALLEL=2 BEE_THREADS=1 "$bee" serve -m "$dir/m.gguf" 2>"$dir/log" &
pid=$!
serve_wait "$dir/log" "$pid" || { echo "no port in log:"; cat "$dir/log"; exit 1; }

http_request GET /health | grep -q '"status":"ok"' || { echo "health failed"; exit 1; }
http_request GET /health | grep -q '"slots":2' || { echo "BEE_PARALLEL not applied"; exit 1; }

# a request in flight when SIGTERM arrives is still answered
http_request POST /v1/completions '{"prompt":"drain me","max_tokens":400,"temperature":0,"ignore_eos":true}' >"$dir/resp" &
client=$!
for _ in $(seq 1 400); do # until the request holds a slot
  http_request GET /metrics | grep -q '^bee_active_slots 1' && break
  sleep 0.025
done
kill -TERM "$pid"
wait "$client"
rc=0; wait "$pid" || rc=$?
pid=""
grep -q "HTTP/1.1 200" "$dir/resp" || { echo "in-flight request not answered:"; cat "$dir/resp"; exit 1; }
grep -q '"completion_tokens":400' "$dir/resp" || { echo "in-flight request cut short:"; cat "$dir/resp"; exit 1; }
[ "$rc" -eq 0 ] || { echo "exit status $rc after SIGTERM"; cat "$dir/log"; exit 1; }
grep -q "stopped" "$dir/log" || { echo "no clean stop:"; cat "$dir/log"; exit 1; }
echo "ok"
