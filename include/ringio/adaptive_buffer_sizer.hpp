// AdaptiveBufferSizer: the policy that decides how many registered buffers a
// ring's pool should have (DESIGN.md section 3).
//
// The sizer is a pure function of the samples it is fed: it makes no system
// calls, reads no clock and does no I/O, so it compiles and is tested on every
// platform. A separate resize driver forms the windows (one sample per
// `window_acquires` checkouts), calls on_window() once per completed window,
// applies grow/shrink decisions to the ring, and reports the size it really
// reached through on_resize_applied().
#pragma once

#include <cstdint>
#include <string>

namespace ringio {

// Tuning of the sizer. The defaults are the binding numbers of DESIGN.md
// section 3; the named tests run against them.
struct SizerConfig {
  // Checkouts per window; the driver takes one sample per completed window.
  uint32_t window_acquires = 256;
  // Weight of the newest sample in the exponential moving average of miss rates.
  double ema_alpha = 0.2;
  // Samples needed before the first decision; the warm-up happens once, at the start.
  uint32_t warmup_samples = 8;
  // EMA at or above this -> grow: count = min(count * 2, effective max).
  double grow_miss_rate = 0.10;
  // EMA at or below this, and the window's peak in use < count / 2 ->
  // shrink: count = max(floor(count * 0.75), min_buffers).
  double shrink_miss_rate = 0.005;
  // Windows after a resize whose samples are discarded, because they mix the
  // old and the new size (and, on the fallback path, the cost of re-registering).
  uint32_t cooldown_windows = 4;
  uint32_t min_buffers = 2;
  // The caller passes min(64, kernel cap, pinned-memory budget / buffer size).
  uint32_t max_buffers = 64;

  // Returns an empty string when the configuration is valid, else a message
  // that names the offending field, its value and the accepted range.
  std::string validate() const;
};

// What the driver measured over one completed window.
struct WindowSample {
  double miss_rate;      // misses / acquires in the window, in [0, 1]
  uint32_t peak_in_use;  // most buffers checked out at once during the window
};

enum class SizerAction : uint8_t { keep, grow, shrink };

struct SizerDecision {
  SizerAction action;
  uint32_t buffer_count;  // the target count after the decision (unchanged for keep)
};

class AdaptiveBufferSizer {
 public:
  // Throws std::invalid_argument with the message of config.validate() when the
  // configuration is invalid: a bad config is a programmer error, caught at start-up.
  // initial_count is clamped to [min_buffers, max_buffers].
  AdaptiveBufferSizer(const SizerConfig& config, uint32_t initial_count);

  // Feeds the sample of one completed window and returns the decision taken on it.
  // A grow/shrink decision immediately becomes buffer_count() and starts the cooldown.
  SizerDecision on_window(const WindowSample& sample);

  // The resize driver reports the count it really reached after a grow/shrink
  // decision. The sizer adopts actual_count (clamped to [min_buffers, max_buffers]).
  // When a grow fell short of its target (a refused registration leaves the count
  // unchanged), the effective max is lowered to actual_count, so the sizer does not
  // retry the same failing grow every window; the cooldown still runs.
  void on_resize_applied(uint32_t actual_count);

  uint32_t buffer_count() const { return buffer_count_; }
  // max_buffers, lowered to the count reached by a grow that fell short; raised again
  // only if the driver later reports holding more buffers than that.
  uint32_t effective_max() const { return effective_max_; }
  // Current EMA of window miss rates (0 before the first sample).
  double ema() const { return ema_miss_rate_; }
  bool warmed_up() const { return samples_seen_ >= config_.warmup_samples; }
  bool in_cooldown() const { return cooldown_windows_left_ > 0; }
  // Every on_window() call, cooldown samples included.
  uint64_t samples_seen() const { return samples_seen_; }
  // Grow and shrink decisions issued (a grow the driver could not apply still counts here).
  uint64_t growths() const { return growths_; }
  uint64_t shrinks() const { return shrinks_; }
  // Grows the driver reported as not (fully) applied.
  uint64_t refused_grows() const { return refused_grows_; }
  const SizerConfig& config() const { return config_; }

 private:
  SizerDecision decide(const WindowSample& sample);
  void start_resize(SizerAction action, uint32_t target_count);

  SizerConfig config_;
  uint32_t buffer_count_;
  uint32_t effective_max_;
  double ema_miss_rate_ = 0.0;
  uint64_t samples_seen_ = 0;
  uint32_t cooldown_windows_left_ = 0;
  // The next sample after a cooldown replaces the EMA instead of blending into it.
  bool ema_needs_seed_ = true;
  // Set by a grow decision until the driver reports the result; holds its target.
  uint32_t pending_grow_target_ = 0;
  uint64_t growths_ = 0;
  uint64_t shrinks_ = 0;
  uint64_t refused_grows_ = 0;
};

}  // namespace ringio
