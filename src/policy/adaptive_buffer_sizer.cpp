#include "ringio/adaptive_buffer_sizer.hpp"

#include <algorithm>
#include <sstream>
#include <stdexcept>

namespace ringio {

std::string SizerConfig::validate() const {
  std::ostringstream message;
  message << "SizerConfig: ";
  // The negated comparisons also reject NaN, which compares false with everything.
  if (window_acquires == 0) {
    message << "window_acquires must be at least 1, got 0";
  } else if (!(ema_alpha > 0.0 && ema_alpha <= 1.0)) {
    message << "ema_alpha must be in (0, 1], got " << ema_alpha;
  } else if (!(grow_miss_rate > 0.0 && grow_miss_rate <= 1.0)) {
    message << "grow_miss_rate must be in (0, 1], got " << grow_miss_rate;
  } else if (!(shrink_miss_rate >= 0.0 && shrink_miss_rate < grow_miss_rate)) {
    // With shrink >= grow, one EMA value could ask for both, and the pool would flap.
    message << "shrink_miss_rate must be in [0, grow_miss_rate = " << grow_miss_rate << "), got "
            << shrink_miss_rate;
  } else if (min_buffers < 1) {
    message << "min_buffers must be at least 1, got 0";
  } else if (min_buffers > max_buffers) {
    message << "min_buffers (" << min_buffers << ") must not exceed max_buffers (" << max_buffers
            << ")";
  } else {
    return {};
  }
  return message.str();
}

namespace {

const SizerConfig& checked(const SizerConfig& config) {
  if (std::string error = config.validate(); !error.empty()) {
    throw std::invalid_argument(error);
  }
  return config;
}

}  // namespace

AdaptiveBufferSizer::AdaptiveBufferSizer(const SizerConfig& config, uint32_t initial_count)
    : config_(checked(config)),
      buffer_count_(std::clamp(initial_count, config.min_buffers, config.max_buffers)),
      effective_max_(config.max_buffers) {}

SizerDecision AdaptiveBufferSizer::on_window(const WindowSample& sample) {
  ++samples_seen_;

  // Samples taken during a cooldown mix the old size with the new one, so they are
  // discarded: they neither decide nor touch the EMA.
  if (cooldown_windows_left_ > 0) {
    --cooldown_windows_left_;
    return {SizerAction::keep, buffer_count_};
  }

  // A miss rate is a fraction; anything else (including NaN) is a driver bug that must
  // not poison the EMA for the rest of the run, so it is clamped.
  double miss_rate = sample.miss_rate;
  if (!(miss_rate >= 0.0)) miss_rate = 0.0;
  if (miss_rate > 1.0) miss_rate = 1.0;

  // The first sample of the run, and the first after each cooldown, seeds the EMA, so
  // the next decision reflects only the current size and not the history before a resize.
  if (ema_needs_seed_) {
    ema_miss_rate_ = miss_rate;
    ema_needs_seed_ = false;
  } else {
    // alpha * x + (1 - alpha) * ema, written as a correction so that a steady miss rate
    // leaves the EMA exactly equal to it: no rounding drift across the thresholds.
    ema_miss_rate_ += config_.ema_alpha * (miss_rate - ema_miss_rate_);
  }

  // The warm-up counts samples from the start of the run only: a resize can happen only
  // after it, so it happens once.
  if (!warmed_up()) {
    return {SizerAction::keep, buffer_count_};
  }
  return decide(sample);
}

SizerDecision AdaptiveBufferSizer::decide(const WindowSample& sample) {
  if (ema_miss_rate_ >= config_.grow_miss_rate) {
    // 64-bit so that doubling cannot overflow whatever max the caller configured.
    const uint64_t doubled = uint64_t{buffer_count_} * 2;
    const auto target = static_cast<uint32_t>(std::min<uint64_t>(doubled, effective_max_));
    // At the (effective) max a grow would change nothing: it is a keep and starts no
    // cooldown, so the sizer keeps watching every window.
    if (target > buffer_count_) {
      start_resize(SizerAction::grow, target);
      return {SizerAction::grow, target};
    }
    return {SizerAction::keep, buffer_count_};
  }

  // The peak guard keeps a pool that is idle on average but fully used in bursts: shrink
  // only when the window never used even half the buffers. `2 * peak < count` is
  // `peak < count / 2` in exact arithmetic (an odd count is not rounded down).
  const bool half_idle = uint64_t{sample.peak_in_use} * 2 < buffer_count_;
  if (ema_miss_rate_ <= config_.shrink_miss_rate && half_idle) {
    // floor(count * 0.75) computed in integers, so no rounding of a double is involved.
    const auto three_quarters = static_cast<uint32_t>(uint64_t{buffer_count_} * 3 / 4);
    const uint32_t target = std::max(three_quarters, config_.min_buffers);
    if (target < buffer_count_) {
      start_resize(SizerAction::shrink, target);
      return {SizerAction::shrink, target};
    }
  }
  return {SizerAction::keep, buffer_count_};
}

void AdaptiveBufferSizer::start_resize(SizerAction action, uint32_t target_count) {
  if (action == SizerAction::grow) {
    ++growths_;
    pending_grow_target_ = target_count;
  } else {
    ++shrinks_;
    pending_grow_target_ = 0;
  }
  buffer_count_ = target_count;
  cooldown_windows_left_ = config_.cooldown_windows;
  ema_needs_seed_ = true;
}

void AdaptiveBufferSizer::on_resize_applied(uint32_t actual_count) {
  // The driver is trusted to stay within [min, max]; clamping keeps the sizer's own
  // invariant even if it does not.
  actual_count = std::clamp(actual_count, config_.min_buffers, config_.max_buffers);
  if (pending_grow_target_ != 0 && actual_count < pending_grow_target_) {
    // The registration was refused (memlock limit, EPERM, ...) or only partly done: what
    // was reached is, for this run, the most the driver can deliver. Remembering it stops
    // a refused grow from being retried after every cooldown.
    effective_max_ = actual_count;
    ++refused_grows_;
  }
  pending_grow_target_ = 0;
  buffer_count_ = actual_count;
  // The count the driver really holds is, by definition, reachable.
  effective_max_ = std::max(effective_max_, buffer_count_);
}

}  // namespace ringio
