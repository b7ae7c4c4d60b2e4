# Shared by the serving benchmarks (sourced): start_server LOG ARGS... starts
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
