#!/usr/bin/env bash
# Runs every test: a release build, brief libFuzzer runs of each parser
# harness (clang), and the suite under AddressSanitizer + UndefinedBehaviorSanitizer.
# Golden-parity tests read ../shared (BEE_SHARED_DIR) and skip with a message when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="$(nproc)"
fuzz_seconds="${BEE_FUZZ_SECONDS:-30}"

echo "== release build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"

if command -v clang >/dev/null 2>&1 && [ "$fuzz_seconds" != 0 ]; then
  echo "== fuzzing each parser for ${fuzz_seconds}s"
  cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBEE_FUZZ=ON -DBEE_TESTS=OFF >/dev/null
  cmake --build build-fuzz -j"$jobs"
  for f in build-fuzz/fuzz_*; do
    name="$(basename "$f")"
    corpus="build-fuzz/corpus/$name"
    mkdir -p "$corpus"
    scripts/fuzz-seeds.sh "$name" "$corpus"
    echo "-- $name"
    "$f" -max_total_time="$fuzz_seconds" -rss_limit_mb=2048 -print_final_stats=0 "$corpus" 2>build-fuzz/"$name".log ||
      { tail -40 build-fuzz/"$name".log; echo "fuzzer $name failed"; exit 1; }
    grep -E "^Done|#[0-9]+ *DONE" build-fuzz/"$name".log | tail -1 || true
  done
else
  echo "== fuzzing skipped (no clang, or BEE_FUZZ_SECONDS=0)"
fi

echo "== tests under ASan + UBSan"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBEE_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --test-dir build-asan --output-on-failure -j"$jobs" -LE image

echo "== tests (release)"
ctest --test-dir build --output-on-failure -j"$jobs"
