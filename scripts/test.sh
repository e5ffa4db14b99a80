#!/usr/bin/env bash
# The whole test suite: installs what it needs, builds the release, the
# AddressSanitizer + UBSan, the ThreadSanitizer and the fuzzing
# configurations, and runs every test. Prints the time each part took
# against its budget (2 cores; the whole script stays well under 20 min).
# A failing part does not stop the others; the exit status says whether
# any part failed.
#
# Environment: RINGIO_FAULT_SCHEDULES (fault schedules in the release
# build, default 200), RINGIO_FAULT_SCHEDULES_ASAN (default 40),
# RINGIO_FUZZ_SECONDS (default 60), RINGIO_BUILD_ROOT (where the build
# directories go, default build: build/release, build/asan, build/tsan,
# build/fuzz).
set -uo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
b=${RINGIO_BUILD_ROOT:-build}

part_started=0
part_budget=0
failed_parts=()
summary=()
part() {
  part_started=$(date +%s)
  part_budget=$2
  echo "=== $1 (budget ${part_budget} s)"
}
done_part() {
  local took=$(($(date +%s) - part_started)) verdict=ok
  [[ ${2:-0} -ne 0 ]] && verdict=FAILED && failed_parts+=("$1")
  local over=""
  ((took > part_budget)) && over=" OVER BUDGET"
  echo "=== $1 took ${took} s (budget ${part_budget} s)${over}: ${verdict}"
  summary+=("$(printf '%-42s %4d s  (budget %4d s)%s  %s' "$1" "$took" "$part_budget" "$over" "$verdict")")
}

# Long suites with parts of their own.
long_suites='FaultProperty|RealFaults'

run_ctest() {
  local dir=$1 exclude=${2:-$long_suites}
  # The RLIMIT_MEMLOCK tests share the user's pinned-memory account, so
  # they run one at a time, after the others.
  (cd "$dir" &&
    ctest --output-on-failure -j"$jobs" -E "Memlock|$exclude"; parallel=$?
    ctest --output-on-failure -R 'Memlock' -E "$exclude" --no-tests=ignore; serial=$?
    ((parallel == 0 && serial == 0)))
}

part "dependencies" 120
scripts/install-deps.sh
done_part "dependencies" $?

part "release build and tests" 420
{ cmake -S . -B "$b/release" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
  cmake --build "$b/release" -j"$jobs" &&
  run_ctest "$b/release"; }
done_part "release build and tests" $?

# The copier reaches the kernel only through the Backend (nm -u), no source
# file over 600 lines, no copier function over 80 (clang-tidy).
part "structure checks" 120
scripts/check_structure.sh "$b/release"
done_part "structure checks" $?

# Seeded fault schedules on the real engine (tests/faults/property_test.cpp).
part "fault schedules (release)" 90
(cd "$b/release" &&
 RINGIO_FAULT_SCHEDULES=${RINGIO_FAULT_SCHEDULES:-200} ctest --output-on-failure -V -R 'FaultProperty' |
   grep -E '^[0-9]+: (fault schedules|  [a-z_]+ +injected|FAILED|  violation|  replay|  faults)|Passed|Failed|tests passed')
done_part "fault schedules (release)" $?

# ENOSPC, SIGKILL/SIGTERM, seccomp, RLIMIT_MEMLOCK, a changing source,
# permissions, bad input: the ringcp binary on real trees.
part "real-fault tests (release)" 150
(cd "$b/release" &&
  ctest --output-on-failure -j"$jobs" -R 'RealFaults' -E 'Memlock'; parallel=$?
  ctest --output-on-failure -R 'MemlockRealFaults'; serial=$?
  ((parallel == 0 && serial == 0)))
done_part "real-fault tests (release)" $?

part "AddressSanitizer + UBSan build and tests" 480
{ cmake -S . -B "$b/asan" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DRINGIO_SANITIZE=ON >/dev/null &&
  cmake --build "$b/asan" -j"$jobs" &&
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    RINGIO_FAULT_SCHEDULES=${RINGIO_FAULT_SCHEDULES_ASAN:-40} run_ctest "$b/asan" 'RealFaultsKill|ChangingSource'; }
done_part "AddressSanitizer + UBSan build and tests" $?

# ThreadSanitizer: the pool's counters read from another thread while the
# owner checks out and resizes, and the backend contract (posix, uring).
# TSan sees user-space accesses only: memory the kernel writes for io_uring
# (completions, read data) is invisible to it, so nothing there is reported,
# falsely or not; the multi-threaded part is the counters test.
part "ThreadSanitizer subset" 240
{ cmake -S . -B "$b/tsan" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRINGIO_BUILD_BENCH=OFF \
    -DCMAKE_CXX_FLAGS="-fsanitize=thread -fno-omit-frame-pointer" -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread >/dev/null &&
  cmake --build "$b/tsan" -j"$jobs" --target ringio_concurrency_tests &&
  (cd "$b/tsan" && TSAN_OPTIONS=halt_on_error=0:exitcode=66 \
     ctest --output-on-failure -j"$jobs" -R 'TsanCounters|BackendContract'); }
done_part "ThreadSanitizer subset" $?

# libFuzzer (clang): option values, IoConfig, placement, quoting. The seed
# corpus is tests/fuzz/corpus; what the fuzzer finds goes to $b/fuzz/corpus.
part "fuzzing (${RINGIO_FUZZ_SECONDS:-60} s)" $((${RINGIO_FUZZ_SECONDS:-60} + 60))
{ CXX=clang++ cmake -S tests/fuzz -B "$b/fuzz" -G Ninja >/dev/null &&
  cmake --build "$b/fuzz" -j"$jobs" &&
  mkdir -p "$b/fuzz"/corpus "$b/fuzz"/artifacts &&
  "$b/fuzz"/ringcp_cli_fuzz -max_total_time="${RINGIO_FUZZ_SECONDS:-60}" -max_len=512 -print_final_stats=1 \
    -artifact_prefix="$b/fuzz/artifacts/" "$b/fuzz"/corpus tests/fuzz/corpus 2>&1 |
    grep -E '^(stat::number_of_executed_units|stat::new_units_added|Done|==[0-9]+==ERROR|SUMMARY|oracle failed|artifact_prefix)'; }
done_part "fuzzing (${RINGIO_FUZZ_SECONDS:-60} s)" $?

echo "=== summary"
printf '%s\n' "${summary[@]}"
if ((${#failed_parts[@]} != 0)); then
  echo "=== failed: ${failed_parts[*]}"
  exit 1
fi
