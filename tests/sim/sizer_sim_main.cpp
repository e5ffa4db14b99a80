// Runs the sizer simulator (default SizerConfig, 8 initial buffers) over the reference
// traces and prints one Markdown table row per trace, for docs/design.md.
//
// Usage: sizer_sim [JITTER_SEED]   (the seed of the jittered step trace; default below)
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "sim/sizer_simulator.hpp"

namespace {

using ringio::SizerConfig;
using namespace ringio::sim;

constexpr uint64_t kDefaultJitterSeed = 42;
constexpr uint32_t kInitialBuffers = 8;

std::string join(const std::vector<std::string>& parts) {
  std::string joined;
  for (const std::string& part : parts) joined += (joined.empty() ? "" : " / ") + part;
  return joined;
}

std::string windows(std::optional<size_t> count) {
  return count ? std::to_string(*count) : "never";
}

std::string percent(double fraction) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2f %%", 100.0 * fraction);
  return text;
}

void print_row(const std::string& name, const Trace& trace) {
  const SimulationResult result = simulate(trace.demand, SizerConfig{}, kInitialBuffers);
  std::vector<std::string> converge, settle, resizes, end_count, miss;
  for (const Segment& phase : trace.phases) {
    converge.push_back(windows(windows_to_converge(result, phase)));
    settle.push_back(windows(windows_to_settle(result, phase)));
    resizes.push_back(std::to_string(resizes_in(result, phase)));
    end_count.push_back(std::to_string(result.windows[phase.end - 1].capacity_after));
    miss.push_back(percent(mean_miss_rate(result, phase)));
  }
  std::printf("| %s | %s | %s | %s | %s | %u | %s |\n", name.c_str(), join(converge).c_str(),
              join(settle).c_str(), join(resizes).c_str(), join(end_count).c_str(),
              result.final_count, join(miss).c_str());
}

}  // namespace

int main(int argc, char** argv) {
  const uint64_t seed = argc > 1 ? std::strtoull(argv[1], nullptr, 0) : kDefaultJitterSeed;

  std::printf(
      "| trace | windows to converge | windows to settle | resizes | count at phase end "
      "| final count | miss rate |\n");
  std::printf("|---|---|---|---|---|---|---|\n");
  for (const double demand : {2.0, 4.0, 8.0, 16.0, 32.0, 64.0}) {
    print_row("steady " + std::to_string(static_cast<int>(demand)) + " x 400",
              step_trace({{demand, 400}}));
  }
  const Trace step = step_trace({{4, 100}, {48, 100}, {4, 100}});
  print_row("step 4 -> 48 -> 4 (100 each)", step);
  print_row("step 4 -> 48 -> 4, +-20 % jitter (seed " + std::to_string(seed) + ")",
            jittered(step, seed));
  print_row("ramp 2 -> 64 over 400 (4 phases of 100)", ramp_trace(2, 64, 400, 4));
  return 0;
}
