// Telemetry-overhead microbenchmark for RegisteredBufferGroup::checkout()
// (DESIGN.md section 2, "Telemetry cost": checkout + return with counters vs a
// build without them must show < 1 % overhead).
//
// The same source is built twice (bench/CMakeLists.txt):
//   bench_checkout               against the normal ringio library (counters on)
//   bench_checkout_no_telemetry  with RINGIO_NO_TELEMETRY, which keeps the
//                                pool's counts (the sizer needs them) in plain
//                                variables no other thread may read
//
// Two modes:
//   default          Google Benchmark (all benchmark flags accepted)
//   --iterations=N   a plain loop of N iterations of one pattern, outside Google
//                    Benchmark, so that instruction counts under
//                    `valgrind --tool=callgrind` are deterministic.
//                    --pattern=hit|miss|mixed|hit_adaptive (default hit).
//
// The group is built without a ring (unregistered buffers): checkout() takes
// the same path, and no io_uring or RLIMIT_MEMLOCK is involved.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ringio/buffer_group.hpp"
#include "ringio/pinned_memory_budget.hpp"

namespace {

using ringio::BufferGroupOptions;
using ringio::BufferSlot;
using ringio::PinnedMemoryBudget;
using ringio::RegisteredBufferGroup;

#ifdef RINGIO_NO_TELEMETRY
constexpr bool kTelemetry = false;
#else
constexpr bool kTelemetry = true;
#endif

constexpr uint32_t kBuffers = 8;
constexpr uint32_t kBufferBytes = 4096;  // never touched; only the pointer is used

BufferGroupOptions make_options(PinnedMemoryBudget& budget, bool adaptive) {
  BufferGroupOptions options;
  options.buffer_size_bytes = kBufferBytes;
  options.initial_buffers = kBuffers;
  options.min_buffers = 2;
  options.max_buffers = 64;
  options.adaptive = adaptive;
  options.budget = &budget;
  return options;
}

// One group per benchmark run, with its own unlimited budget.
struct Fixture {
  explicit Fixture(bool adaptive)
      : budget(std::nullopt, "bench"), group(make_options(budget, adaptive), nullptr, "bench") {}
  PinnedMemoryBudget budget;
  RegisteredBufferGroup group;
};

// Checks out every free buffer and keeps it until destroyed (declared after
// the group, so the slots go back before the group is destroyed).
std::vector<BufferSlot> hold(RegisteredBufferGroup& group, uint32_t count) {
  std::vector<BufferSlot> held;
  held.reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    held.push_back(group.checkout());
    if (!held.back()) {
      std::fprintf(stderr, "bench: could not hold %u buffers\n", count);
      std::abort();
    }
  }
  return held;
}

// ---- the patterns: one iteration each ---------------------------------------

// Hit path: one checkout, the slot goes back through its destructor.
inline void iterate_hit(RegisteredBufferGroup& group) {
  BufferSlot slot = group.checkout();
  benchmark::DoNotOptimize(slot.data());
}

// Miss path: every buffer is held, checkout() returns an empty slot.
inline void iterate_miss(RegisteredBufferGroup& group) {
  BufferSlot slot = group.checkout();
  benchmark::DoNotOptimize(slot.data());
}

// Mixed: N-1 buffers held; take the last one (hit), try another (miss),
// give the first back. Two acquires, one miss per iteration.
inline void iterate_mixed(RegisteredBufferGroup& group) {
  BufferSlot hit = group.checkout();
  benchmark::DoNotOptimize(hit.data());
  BufferSlot miss = group.checkout();
  benchmark::DoNotOptimize(miss.data());
}

// ---- Google Benchmark --------------------------------------------------------

void label(benchmark::State& state) { state.SetLabel(kTelemetry ? "telemetry" : "no_telemetry"); }

void BM_CheckoutRelease_Hit(benchmark::State& state) {
  Fixture f(/*adaptive=*/false);
  for (auto _ : state) iterate_hit(f.group);
  state.SetItemsProcessed(state.iterations());
  label(state);
}
BENCHMARK(BM_CheckoutRelease_Hit);

void BM_Checkout_Miss(benchmark::State& state) {
  Fixture f(/*adaptive=*/false);
  const std::vector<BufferSlot> held = hold(f.group, f.group.buffer_count());
  for (auto _ : state) iterate_miss(f.group);
  state.SetItemsProcessed(state.iterations());
  label(state);
}
BENCHMARK(BM_Checkout_Miss);

void BM_Mixed_HoldNMinus1(benchmark::State& state) {
  Fixture f(/*adaptive=*/false);
  const std::vector<BufferSlot> held = hold(f.group, f.group.buffer_count() - 1);
  for (auto _ : state) iterate_mixed(f.group);
  state.SetItemsProcessed(state.iterations() * 2);
  label(state);
}
BENCHMARK(BM_Mixed_HoldNMinus1);

// For information: the same hit path with the adaptive sizer's window
// bookkeeping (one on_window() every window_acquires checkouts). The sizer's
// decisions are never applied here (no apply_pending_resize()), so the pool
// keeps its size and the loop measures the bookkeeping only.
void BM_CheckoutRelease_Hit_Adaptive(benchmark::State& state) {
  Fixture f(/*adaptive=*/true);
  for (auto _ : state) iterate_hit(f.group);
  state.SetItemsProcessed(state.iterations());
  label(state);
}
BENCHMARK(BM_CheckoutRelease_Hit_Adaptive);

// ---- plain mode (for callgrind) ------------------------------------------------

// noinline so that the loop is one function in callgrind's output.
[[gnu::noinline]] void plain_loop(RegisteredBufferGroup& group, std::string_view pattern,
                                  uint64_t iterations) {
  if (pattern == "miss") {
    for (uint64_t i = 0; i < iterations; ++i) iterate_miss(group);
  } else if (pattern == "mixed") {
    for (uint64_t i = 0; i < iterations; ++i) iterate_mixed(group);
  } else {
    for (uint64_t i = 0; i < iterations; ++i) iterate_hit(group);
  }
}

int run_plain(uint64_t iterations, std::string_view pattern) {
  const bool adaptive = pattern == "hit_adaptive";
  if (pattern != "hit" && pattern != "miss" && pattern != "mixed" && !adaptive) {
    std::fprintf(stderr, "bench: unknown --pattern=%.*s (hit|miss|mixed|hit_adaptive)\n",
                 static_cast<int>(pattern.size()), pattern.data());
    return 2;
  }
  Fixture f(adaptive);
  uint32_t held_count = 0;
  if (pattern == "miss") held_count = f.group.buffer_count();
  if (pattern == "mixed") held_count = f.group.buffer_count() - 1;
  std::vector<BufferSlot> held = hold(f.group, held_count);
  const auto before = f.group.stats();
  plain_loop(f.group, pattern, iterations);
  const auto after = f.group.stats();
  held.clear();
  // Which build ran, and the counter deltas (both builds count).
  std::printf("telemetry=%s pattern=%.*s iterations=%llu acquires=%llu misses=%llu\n",
              kTelemetry ? "on" : "off", static_cast<int>(pattern.size()), pattern.data(),
              static_cast<unsigned long long>(iterations),
              static_cast<unsigned long long>(after.total_acquires - before.total_acquires),
              static_cast<unsigned long long>(after.total_misses - before.total_misses));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<uint64_t> iterations;
  std::string_view pattern = "hit";
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg.starts_with("--iterations=")) {
      char* end = nullptr;
      const char* text = argv[i] + std::strlen("--iterations=");
      iterations = std::strtoull(text, &end, 10);
      if (end == text || *end != '\0') {
        std::fprintf(stderr, "bench: bad %s\n", argv[i]);
        return 2;
      }
    } else if (arg.starts_with("--pattern=")) {
      pattern = arg.substr(std::strlen("--pattern="));
    }
  }
  if (iterations) return run_plain(*iterations, pattern);

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
