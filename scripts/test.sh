#!/usr/bin/env bash
# The whole test suite: installs what it needs, builds the release and the
# AddressSanitizer + UBSan configurations, and runs every test in both.
# Prints the time each part took.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

part_started=0
part() { part_started=$(date +%s); echo "=== $1"; }
done_part() { echo "=== $1 took $(($(date +%s) - part_started)) s"; }

run_ctest() {
  local dir=$1
  # The RLIMIT_MEMLOCK tests share the user's pinned-memory account, so
  # they run one at a time, after the others.
  (cd "$dir" && ctest --output-on-failure -j"$jobs" -E 'Memlock' &&
    ctest --output-on-failure -R 'Memlock')
}

part "dependencies"
scripts/install-deps.sh
done_part "dependencies"

part "release build and tests"
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/release -j"$jobs"
run_ctest build/release
done_part "release build and tests"

part "AddressSanitizer + UBSan build and tests"
cmake -S . -B build/asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DRINGIO_SANITIZE=ON >/dev/null
cmake --build build/asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 run_ctest build/asan
done_part "AddressSanitizer + UBSan build and tests"
