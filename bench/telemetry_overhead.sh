#!/usr/bin/env bash
# Telemetry overhead of RegisteredBufferGroup::checkout() + return
# (DESIGN.md section 2, "Telemetry cost": < 1 % vs a build without counters).
#
# usage: bench/telemetry_overhead.sh [build-dir]     (default build/release)
#
# Builds bench_checkout (counters on) and bench_checkout_no_telemetry
# (RINGIO_NO_TELEMETRY) and measures them two ways:
#   1. time: Google Benchmark, both binaries interleaved for ROUNDS rounds:
#      each round runs every benchmark in both binaries back to back (order
#      alternating), REPS repetitions each; the per-run median CPU time is
#      taken. Reported: the overhead on the median of the round medians, the
#      median and min..max of the per-round (paired) overheads, and the
#      overhead between the fastest rounds.
#   2. instructions: valgrind --tool=callgrind on the plain loop
#      (--iterations=N, outside Google Benchmark): Ir(N) - Ir(0) over N gives
#      the exact instructions per iteration, setup and teardown excluded.
# Prints Markdown tables on stdout; raw outputs stay in <build-dir>/bench/telemetry_overhead/.
#
# Environment: ROUNDS (20), REPS (5), MIN_TIME (0.1 s per repetition),
#   ITERATIONS (1000000, callgrind loop), PIN_CPU (1; empty = no taskset).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD="${1:-build/release}"
ROUNDS="${ROUNDS:-20}"
REPS="${REPS:-5}"
MIN_TIME="${MIN_TIME:-0.1}"
ITERATIONS="${ITERATIONS:-1000000}"
PIN_CPU="${PIN_CPU-1}"

if [[ ! -f "$BUILD/CMakeCache.txt" ]]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >&2
fi
cmake --build "$BUILD" --target bench_checkout bench_checkout_no_telemetry >&2

WITH="$BUILD/bench/bench_checkout"
WITHOUT="$BUILD/bench/bench_checkout_no_telemetry"
OUT="$BUILD/bench/telemetry_overhead"
rm -rf "$OUT"
mkdir -p "$OUT"

PIN=()
if [[ -n "$PIN_CPU" ]] && command -v taskset >/dev/null && taskset -c "$PIN_CPU" true 2>/dev/null; then
  PIN=(taskset -c "$PIN_CPU")
fi

# ---- 1. time ------------------------------------------------------------------
# The VM's speed drifts (host contention; it can switch between states ~1.8x
# apart within seconds), so the pairs are kept close in time: every round runs
# each benchmark in both binaries back to back, the order alternating.
BENCHMARKS=(BM_CheckoutRelease_Hit BM_Checkout_Miss BM_Mixed_HoldNMinus1 BM_CheckoutRelease_Hit_Adaptive)
run_gbench() {  # binary benchmark output-file
  "${PIN[@]}" "$1" --benchmark_filter="^$2\$" --benchmark_repetitions="$REPS" \
    --benchmark_report_aggregates_only=true --benchmark_min_time="$MIN_TIME" \
    --benchmark_format=json >"$3"
}
for ((round = 1; round <= ROUNDS; ++round)); do
  echo "time: round $round/$ROUNDS" >&2
  for bench in "${BENCHMARKS[@]}"; do
    if ((round % 2)); then
      run_gbench "$WITH" "$bench" "$OUT/with.$bench.$round.json"
      run_gbench "$WITHOUT" "$bench" "$OUT/without.$bench.$round.json"
    else
      run_gbench "$WITHOUT" "$bench" "$OUT/without.$bench.$round.json"
      run_gbench "$WITH" "$bench" "$OUT/with.$bench.$round.json"
    fi
  done
done

# ---- 2. instructions ----------------------------------------------------------
PATTERNS=(hit miss mixed hit_adaptive)
for variant in with without; do
  binary="$WITH"
  [[ $variant == without ]] && binary="$WITHOUT"
  for pattern in "${PATTERNS[@]}"; do
    for n in 0 "$ITERATIONS"; do
      echo "callgrind: $variant $pattern N=$n" >&2
      valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.$variant.$pattern.$n.out" \
        "$binary" --iterations="$n" --pattern="$pattern" >"$OUT/plain.$variant.$pattern.$n.txt" \
        2>"$OUT/callgrind.$variant.$pattern.$n.log"
      grep -Eo 'Collected : [0-9]+' "$OUT/callgrind.$variant.$pattern.$n.log" | grep -Eo '[0-9]+$' \
        >"$OUT/ir.$variant.$pattern.$n"
    done
  done
done

# ---- report -------------------------------------------------------------------
python3 - "$OUT" "$ROUNDS" "$REPS" "$MIN_TIME" "$ITERATIONS" "${PIN[*]:-none}" <<'EOF'
import json, statistics, sys, pathlib

out, rounds, reps, min_time, iterations, pin = sys.argv[1:]
out, rounds, iterations = pathlib.Path(out), int(rounds), int(iterations)

def median_of(path):
    """(cpu_ns, real_ns) of the 'median' aggregate of a one-benchmark run."""
    data = json.loads(path.read_text())
    (b,) = [b for b in data["benchmarks"] if b.get("aggregate_name") == "median"]
    assert b["time_unit"] == "ns", b["time_unit"]
    return b["cpu_time"], b["real_time"]

names = ["BM_CheckoutRelease_Hit", "BM_Checkout_Miss", "BM_Mixed_HoldNMinus1",
         "BM_CheckoutRelease_Hit_Adaptive"]
pct = lambda a, b: (a - b) / b * 100.0

print(f"### Time (Google Benchmark; {rounds} interleaved rounds x {reps} repetitions, "
      f"min_time {min_time} s, pinned: {pin})\n")
print("CPU time per iteration (ns). A round runs one benchmark in both binaries back to back; "
      "its value is the median of its repetitions. Overhead = (with - without) / without.\n")
print("| Benchmark | with: median of rounds | without: median of rounds | overhead | "
      "paired per-round overhead: median [min .. max] | fastest round with / without | "
      "overhead, fastest rounds | rounds range with | rounds range without |")
print("|---|---:|---:|---:|---|---|---:|---|---|")
for name in names:
    w = [median_of(out / f"with.{name}.{r}.json")[0] for r in range(1, rounds + 1)]
    wo = [median_of(out / f"without.{name}.{r}.json")[0] for r in range(1, rounds + 1)]
    paired = [pct(a, b) for a, b in zip(w, wo)]
    mw, mwo = statistics.median(w), statistics.median(wo)
    print(f"| {name} | {mw:.2f} | {mwo:.2f} | {pct(mw, mwo):+.1f} % | "
          f"{statistics.median(paired):+.1f} % [{min(paired):+.1f} .. {max(paired):+.1f}] | "
          f"{min(w):.2f} / {min(wo):.2f} | {pct(min(w), min(wo)):+.1f} % | "
          f"{min(w):.2f} .. {max(w):.2f} | {min(wo):.2f} .. {max(wo):.2f} |")

print(f"\n### Instructions (callgrind Ir, plain loop, N = {iterations:,} iterations)\n")
print("Per iteration = (Ir(N) - Ir(0)) / N: setup, teardown and process start-up cancel out.\n")
print("| Pattern (acquires/iter) | Ir total with, N | Ir total without, N | Ir with, N=0 | Ir without, N=0 "
      "| Ir/iter with | Ir/iter without | extra Ir/iter | overhead |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
acquires = {"hit": 1, "miss": 1, "mixed": 2, "hit_adaptive": 1}
for pattern in ("hit", "miss", "mixed", "hit_adaptive"):
    ir = {(v, n): int((out / f"ir.{v}.{pattern}.{n}").read_text())
          for v in ("with", "without") for n in (0, iterations)}
    per = {v: (ir[(v, iterations)] - ir[(v, 0)]) / iterations for v in ("with", "without")}
    print(f"| {pattern} ({acquires[pattern]}) | {ir[('with', iterations)]:,} | {ir[('without', iterations)]:,} "
          f"| {ir[('with', 0)]:,} | {ir[('without', 0)]:,} | {per['with']:.2f} | {per['without']:.2f} "
          f"| {per['with'] - per['without']:+.2f} | {pct(per['with'], per['without']):+.2f} % |")

# Sanity: the plain runs report which build ran and the counter deltas; both
# builds count every acquire (the sizer needs the counts), only the telemetry
# build makes them readable from other threads.
for pattern in ("hit", "miss", "mixed", "hit_adaptive"):
    for v, flag in (("with", "on"), ("without", "off")):
        line = (out / f"plain.{v}.{pattern}.{iterations}.txt").read_text()
        if f"telemetry={flag} " not in line or "acquires=0 " in line:
            sys.exit(f"unexpected counters for {v}/{pattern}: {line.strip()}")
EOF
