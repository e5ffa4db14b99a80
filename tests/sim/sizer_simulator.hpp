// Deterministic simulator of the adaptive buffer sizer (DESIGN.md section 3,
// "Simulation model"). Test support only: it feeds an AdaptiveBufferSizer one
// sample per window from a demand trace and records what the pool would do.
//
// Model of one window with demand d buffers and capacity c buffers:
//   miss rate   = max(0, 1 - c / d), and 0 when d == 0;
//   peak in use = min(c, d), rounded up to whole buffers (ceil), because a demand of
//                 3.2 buffers has 4 buffers checked out at its peak. Rounding up is the
//                 conservative choice for the shrink guard (peak < count / 2).
// Decisions are applied at once: the capacity of the next window is the count after
// the decision of this one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <utility>
#include <vector>

#include "ringio/adaptive_buffer_sizer.hpp"

namespace ringio::sim {

// Windows in which the size must stay within one resize step to count as converged.
inline constexpr size_t kConvergenceSpanWindows = 50;

// A half-open range [begin, end) of window indices, e.g. one phase of a step trace.
struct Segment {
  size_t begin = 0;
  size_t end = 0;
  size_t size() const { return end - begin; }
};

struct WindowRecord {
  uint32_t capacity = 0;                   // buffers in the pool during the window
  double demand = 0.0;                     // buffers the workload wanted during the window
  double miss_rate = 0.0;                  // fed to the sizer
  uint32_t peak_in_use = 0;                // fed to the sizer
  SizerAction action = SizerAction::keep;  // decision taken at the end of the window
  uint32_t capacity_after = 0;             // buffers once the driver applied that decision
  bool resized() const { return capacity_after != capacity; }
};

struct SimulationResult {
  std::vector<WindowRecord> windows;
  uint64_t resizes = 0;  // windows after which the capacity really changed
  uint32_t final_count = 0;
  Segment all() const { return {0, windows.size()}; }
};

// A demand trace cut into phases, so results can be judged phase by phase.
struct Trace {
  std::vector<double> demand;  // buffers wanted, one entry per window
  std::vector<Segment> phases;
};

// Phases of constant demand, e.g. {{4, 100}, {48, 100}, {4, 100}}: (demand, windows).
Trace step_trace(const std::vector<std::pair<double, size_t>>& steps);
// Demand going linearly from demand_first (first window) to demand_last (last window),
// cut into phase_count phases of equal length (the last one takes the remainder).
Trace ramp_trace(double demand_first, double demand_last, size_t windows, size_t phase_count = 1);
// Multiplies every window's demand by an independent factor uniform in
// [1 - relative_spread, 1 + relative_spread), drawn from std::mt19937_64 seeded with
// `seed`. The factor is built from the raw 64-bit output (not a std:: distribution,
// whose algorithm differs between standard libraries), so a seed replays everywhere.
Trace jittered(Trace trace, uint64_t seed, double relative_spread = 0.2);

// The driver of the simulation can hold at most driver_limit buffers (a pinned-memory
// budget the sizer is not told about): a grow past it is refused, the count stays, and
// the sizer hears so through on_resize_applied(). By default every decision succeeds.
SimulationResult simulate(const std::vector<double>& demand, const SizerConfig& config,
                          uint32_t initial_count,
                          uint32_t driver_limit = std::numeric_limits<uint32_t>::max());

// Number of windows in `segment` after which the capacity changed.
size_t resizes_in(const SimulationResult& result, Segment segment);
// Number of windows in `segment` whose decision was `action`.
size_t decisions_in(const SimulationResult& result, Segment segment, SizerAction action);
// Largest number of resizes in any `span` consecutive windows inside `segment`
// (the whole segment when it is shorter than `span`).
size_t max_resizes_per_span(const SimulationResult& result, Segment segment, size_t span);
// True when some grow decision in `segment` comes after a shrink decision in it.
bool grow_follows_shrink(const SimulationResult& result, Segment segment);
// Mean of the window miss rates over `segment`. Every window has the same number of
// acquires, so this is also the segment's aggregate miss rate (misses / acquires).
double mean_miss_rate(const SimulationResult& result, Segment segment);

// Convergence (DESIGN.md): the first window after which the size stays within one
// resize step for 50 windows. Precisely: window w converges when at most one resize
// happens in the `span` windows w, w+1, ..., w+span-1, i.e. the capacity over those
// windows and just after them takes at most two values, one resize step apart. The
// span must lie inside the segment. Returns w - segment.begin, or nullopt when no
// window of the segment qualifies.
std::optional<size_t> windows_to_converge(const SimulationResult& result, Segment segment,
                                          size_t span = kConvergenceSpanWindows);
// Stricter than convergence: the first window w from which no resize at all happens
// in the `span` windows w .. w+span-1 (inside the segment). The size the pool then has
// is the one the sizer settled on. Returns w - segment.begin, or nullopt.
std::optional<size_t> windows_to_settle(const SimulationResult& result, Segment segment,
                                        size_t span = kConvergenceSpanWindows);
// The first window w of `segment` such that `holds` is true for every window from w to
// the end of the segment. Returns w - segment.begin, or nullopt when even the last
// window fails.
std::optional<size_t> windows_until_always(const SimulationResult& result, Segment segment,
                                           const std::function<bool(const WindowRecord&)>& holds);

}  // namespace ringio::sim
