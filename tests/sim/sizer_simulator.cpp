#include "sim/sizer_simulator.hpp"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <random>

namespace ringio::sim {

Trace step_trace(const std::vector<std::pair<double, size_t>>& steps) {
  Trace trace;
  for (const auto& [demand, windows] : steps) {
    const size_t begin = trace.demand.size();
    trace.demand.insert(trace.demand.end(), windows, demand);
    trace.phases.push_back({begin, trace.demand.size()});
  }
  return trace;
}

Trace ramp_trace(double demand_first, double demand_last, size_t windows, size_t phase_count) {
  Trace trace;
  trace.demand.reserve(windows);
  for (size_t i = 0; i < windows; ++i) {
    const double progress =
        windows > 1 ? static_cast<double>(i) / static_cast<double>(windows - 1) : 0.0;
    trace.demand.push_back(demand_first + (demand_last - demand_first) * progress);
  }
  const size_t phase_windows = std::max<size_t>(windows / std::max<size_t>(phase_count, 1), 1);
  for (size_t begin = 0; begin < windows; begin += phase_windows) {
    const bool last = begin + 2 * phase_windows > windows;
    trace.phases.push_back({begin, last ? windows : begin + phase_windows});
    if (last) break;
  }
  return trace;
}

Trace jittered(Trace trace, uint64_t seed, double relative_spread) {
  std::mt19937_64 rng(seed);
  for (double& demand : trace.demand) {
    // The top 53 bits of one draw give a double uniform in [0, 1) with every value exact.
    const double unit = static_cast<double>(rng() >> 11) * 0x1.0p-53;
    demand *= 1.0 - relative_spread + 2.0 * relative_spread * unit;
  }
  return trace;
}

SimulationResult simulate(const std::vector<double>& demand, const SizerConfig& config,
                          uint32_t initial_count, uint32_t driver_limit) {
  AdaptiveBufferSizer sizer(config, initial_count);
  SimulationResult result;
  result.windows.reserve(demand.size());
  uint32_t capacity = sizer.buffer_count();
  for (const double wanted : demand) {
    WindowRecord record;
    record.capacity = capacity;
    record.demand = wanted;
    record.miss_rate = wanted > 0.0 ? std::max(0.0, 1.0 - capacity / wanted) : 0.0;
    record.peak_in_use = static_cast<uint32_t>(
        std::ceil(std::min(static_cast<double>(capacity), std::max(wanted, 0.0))));
    const SizerDecision decision = sizer.on_window({record.miss_rate, record.peak_in_use});
    record.action = decision.action;
    if (decision.action != SizerAction::keep) {
      // A grow past what the driver can hold is refused outright, as a failed
      // registration is: the pool keeps the size it had.
      capacity = decision.buffer_count <= driver_limit ? decision.buffer_count : capacity;
      sizer.on_resize_applied(capacity);
    }
    record.capacity_after = capacity;
    result.resizes += record.resized() ? 1 : 0;
    result.windows.push_back(record);
  }
  result.final_count = capacity;
  return result;
}

namespace {

void assert_inside(const SimulationResult& result, Segment segment) {
  assert(segment.begin <= segment.end && segment.end <= result.windows.size());
  (void)result;
  (void)segment;
}

// Number of windows in `segment` for which `counts` is true.
template <typename Predicate>
size_t count_windows(const SimulationResult& result, Segment segment, Predicate counts) {
  assert_inside(result, segment);
  size_t count = 0;
  for (size_t i = segment.begin; i < segment.end; ++i) count += counts(result.windows[i]) ? 1 : 0;
  return count;
}

// First window w of the segment whose span [w, w + span) lies inside the segment and
// holds at most max_resizes resizes, as an offset from the segment's start.
std::optional<size_t> first_quiet_span(const SimulationResult& result, Segment segment, size_t span,
                                       size_t max_resizes) {
  assert_inside(result, segment);
  for (size_t first = segment.begin; first + span <= segment.end; ++first) {
    if (resizes_in(result, {first, first + span}) <= max_resizes) return first - segment.begin;
  }
  return std::nullopt;
}

}  // namespace

size_t resizes_in(const SimulationResult& result, Segment segment) {
  return count_windows(result, segment, [](const WindowRecord& w) { return w.resized(); });
}

size_t decisions_in(const SimulationResult& result, Segment segment, SizerAction action) {
  return count_windows(result, segment,
                       [action](const WindowRecord& w) { return w.action == action; });
}

size_t max_resizes_per_span(const SimulationResult& result, Segment segment, size_t span) {
  if (segment.size() <= span) return resizes_in(result, segment);
  size_t most = 0;
  for (size_t first = segment.begin; first + span <= segment.end; ++first) {
    most = std::max(most, resizes_in(result, {first, first + span}));
  }
  return most;
}

bool grow_follows_shrink(const SimulationResult& result, Segment segment) {
  assert_inside(result, segment);
  bool shrunk = false;
  for (size_t i = segment.begin; i < segment.end; ++i) {
    const SizerAction action = result.windows[i].action;
    if (action == SizerAction::grow && shrunk) return true;
    shrunk = shrunk || action == SizerAction::shrink;
  }
  return false;
}

double mean_miss_rate(const SimulationResult& result, Segment segment) {
  assert_inside(result, segment);
  if (segment.size() == 0) return 0.0;
  double total = 0.0;
  for (size_t i = segment.begin; i < segment.end; ++i) total += result.windows[i].miss_rate;
  return total / static_cast<double>(segment.size());
}

std::optional<size_t> windows_to_converge(const SimulationResult& result, Segment segment,
                                          size_t span) {
  return first_quiet_span(result, segment, span, 1);
}

std::optional<size_t> windows_to_settle(const SimulationResult& result, Segment segment,
                                        size_t span) {
  return first_quiet_span(result, segment, span, 0);
}

std::optional<size_t> windows_until_always(const SimulationResult& result, Segment segment,
                                           const std::function<bool(const WindowRecord&)>& holds) {
  assert_inside(result, segment);
  std::optional<size_t> first;
  for (size_t i = segment.end; i > segment.begin; --i) {
    if (!holds(result.windows[i - 1])) break;
    first = i - 1 - segment.begin;
  }
  return first;
}

}  // namespace ringio::sim
