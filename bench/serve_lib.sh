# Shared by the serving benchmarks (sourced).
#
# bench_setup BUILD_DIR SHAPE_ARGS: sets $bee, $bench and $work (a temporary
# folder removed at exit, with the server $pid killed), and makes the
# random-weight model $work/m.gguf from `bee init SHAPE_ARGS`.
bench_setup() {
  bee="$1/bee"
  bench="$1/serve_bench"
  [ -x "$bee" ] && [ -x "$bench" ] || { echo "build first: cmake --build $1"; exit 1; }
  work="$(mktemp -d)"
  pid=""
  trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"' EXIT
  # shellcheck disable=SC2086
  "$bee" init -o "$work/m.gguf" $2 --seed 1 >/dev/null 2>&1
  "$bee" info "$work/m.gguf" | grep -E "parameters|layers|weight bytes|tensor types" || true
}

# start_server LOG ARGS... starts
# `$bee serve ARGS...` in the background with its stderr in LOG, sets $pid,
# and returns once the server says "ready" (exits with its log if it dies).
start_server() {
  local log="$1"
  shift
  "$bee" serve "$@" 2>"$log" &
  pid=$!
  for _ in $(seq 1 300); do
    grep -q "ready" "$log" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.1
  done
}
