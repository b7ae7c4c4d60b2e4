# Shared by the tests in tests/cli that run `bee serve` (sourced; not a test
# itself: ctest runs tests/cli/*.sh only).

# serve_scratch NAME: a fresh directory under BEE_TMPDIR (default /tmp) in
# SERVE_DIR, removed at exit together with the server serve_start started.
serve_scratch() {
  local base="${BEE_TMPDIR:-/tmp}"
  mkdir -p "$base"
  SERVE_DIR="$(mktemp -d "$base/$1.XXXXXX")"
  SERVE_PID=""
  trap '[ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null; rm -rf "$SERVE_DIR"' EXIT
}

# serve_wait LOG PID [ADDR]: waits until the server whose stderr is LOG says
# it listens on ADDR (default 127.0.0.1) and is ready, for SERVE_WAIT_S
# seconds (default 20); sets SERVE_PORT. Returns 1 when PID exits first or
# time runs out (LOG is left for the caller to show).
serve_wait() {
  local log="$1" pid="$2" addr="${3:-127.0.0.1}" i
  SERVE_PORT=""
  for ((i = 0; i < ${SERVE_WAIT_S:-20} * 20; i++)); do
    SERVE_PORT="$(sed -nE "s/.*listening on http:\/\/${addr//./\\.}:([0-9]+).*/\1/p" "$log")"
    [ -n "$SERVE_PORT" ] && grep -q ready "$log" && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

# serve_start LOG BEE ARGS...: runs `BEE serve --port 0 ARGS...` in the
# background with its stderr in LOG and waits for it (serve_wait); sets
# SERVE_PID and SERVE_PORT. LOG is created first: the loop may read it
# before the background job's redirection has run.
serve_start() {
  local log="$1" bee="$2"
  shift 2
  : >"$log"
  "$bee" serve --port 0 "$@" 2>"$log" &
  SERVE_PID=$!
  serve_wait "$log" "$SERVE_PID"
}

# http_request METHOD PATH [BODY [HEADER_LINES]]: the raw response of one
# request to 127.0.0.1:SERVE_PORT (HEADER_LINES: extra "Name: value\r\n"s).
http_request() {
  local body="${3:-}" n
  n=$(printf '%s' "$body" | wc -c) # bytes, not characters
  exec 3<>"/dev/tcp/127.0.0.1/$SERVE_PORT"
  printf '%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s' \
    "$1" "$2" "${4:-}" "$n" "$body" >&3
  cat <&3
  exec 3<&-
}

# http_body ARGS...: as http_request, the body only.
http_body() { http_request "$@" | sed '1,/^\r$/d'; }

# serve_available BEE: false when BEE was built without libmicrohttpd (its
# `serve` says so before looking at any option).
serve_available() {
  local out
  out="$("$1" serve 2>&1 || true)" # captured first: under pipefail, serve's exit status would decide a pipe
  ! grep -q "without libmicrohttpd" <<<"$out"
}
