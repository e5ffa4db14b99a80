// Unit tests of the sizer policy against the defaults of DESIGN.md section 3:
// EMA alpha 0.2, warm-up 8 samples, grow at EMA >= 10 %, shrink at EMA <= 0.5 % with
// peak in use < count / 2, cooldown 4 windows, MIN 2, MAX 64.
//
// Window indices are 0-based. With the defaults, the first decision is taken on
// window 7 (the 8th sample), and each resize costs cooldown + 1 = 5 windows: the next
// decision is taken on window (resize window + 5).
#include "ringio/adaptive_buffer_sizer.hpp"

#include <gtest/gtest.h>

#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace ringio {
namespace {

constexpr WindowSample kAllMisses{1.0, 0};
constexpr WindowSample kIdle{0.0, 0};

// One grow or shrink: the window it was decided on and the count it asked for.
struct Resize {
  size_t window;
  SizerAction action;
  uint32_t buffer_count;
  bool operator==(const Resize&) const = default;
};

std::ostream& operator<<(std::ostream& out, const Resize& resize) {
  const char* name = resize.action == SizerAction::grow     ? "grow"
                     : resize.action == SizerAction::shrink ? "shrink"
                                                            : "keep";
  return out << "{window " << resize.window << ", " << name << " -> " << resize.buffer_count << "}";
}

// Feeds `windows` samples (window indices first_window, first_window + 1, ...) and
// returns the resizes decided. The sample may depend on the current count, as a
// saturated pool's peak does.
template <typename SampleFor>
std::vector<Resize> feed(AdaptiveBufferSizer& sizer, size_t windows, SampleFor sample_for,
                         size_t first_window = 0) {
  std::vector<Resize> resizes;
  for (size_t window = first_window; window < first_window + windows; ++window) {
    const SizerDecision decision = sizer.on_window(sample_for(sizer.buffer_count()));
    if (decision.action != SizerAction::keep) {
      resizes.push_back({window, decision.action, decision.buffer_count});
    } else {
      EXPECT_EQ(decision.buffer_count, sizer.buffer_count()) << "a keep must not move the count";
    }
  }
  return resizes;
}

std::vector<Resize> feed(AdaptiveBufferSizer& sizer, size_t windows, WindowSample sample,
                         size_t first_window = 0) {
  return feed(
      sizer, windows, [sample](uint32_t) { return sample; }, first_window);
}

TEST(AdaptiveBufferSizer, stays_put_during_warmup) {
  AdaptiveBufferSizer sizer(SizerConfig{}, 8);
  for (int window = 0; window < 7; ++window) {
    EXPECT_FALSE(sizer.warmed_up()) << "window " << window;
    const SizerDecision decision = sizer.on_window({1.0, 8});
    EXPECT_EQ(decision.action, SizerAction::keep) << "window " << window;
    EXPECT_EQ(decision.buffer_count, 8u) << "window " << window;
  }
  EXPECT_EQ(sizer.samples_seen(), 7u);
  EXPECT_EQ(sizer.buffer_count(), 8u);
  EXPECT_DOUBLE_EQ(sizer.ema(), 1.0);

  // The 8th sample completes the warm-up and is decided on.
  const SizerDecision eighth = sizer.on_window({1.0, 8});
  EXPECT_TRUE(sizer.warmed_up());
  EXPECT_EQ(eighth.action, SizerAction::grow);
  EXPECT_EQ(eighth.buffer_count, 16u);

  // An idle pool is not shrunk during the warm-up either.
  AdaptiveBufferSizer idle(SizerConfig{}, 64);
  EXPECT_EQ(feed(idle, 7, kIdle), std::vector<Resize>{});
  EXPECT_EQ(idle.buffer_count(), 64u);
  EXPECT_EQ(idle.on_window(kIdle).action, SizerAction::shrink);
  EXPECT_EQ(idle.buffer_count(), 48u);
}

TEST(AdaptiveBufferSizer, first_sample_seeds_ema_then_blends_with_alpha) {
  AdaptiveBufferSizer sizer(SizerConfig{}, 8);
  EXPECT_DOUBLE_EQ(sizer.ema(), 0.0);
  sizer.on_window({0.5, 8});
  EXPECT_DOUBLE_EQ(sizer.ema(), 0.5);
  sizer.on_window({0.0, 8});
  EXPECT_DOUBLE_EQ(sizer.ema(), 0.4);  // 0.2 * 0.0 + 0.8 * 0.5
  sizer.on_window({1.0, 8});
  EXPECT_DOUBLE_EQ(sizer.ema(), 0.52);  // 0.2 * 1.0 + 0.8 * 0.4
}

TEST(AdaptiveBufferSizer, grows_on_sustained_misses) {
  AdaptiveBufferSizer sizer(SizerConfig{}, 8);
  const std::vector<Resize> expected{
      {7, SizerAction::grow, 16}, {12, SizerAction::grow, 32}, {17, SizerAction::grow, 64}};
  EXPECT_EQ(feed(sizer, 100, kAllMisses), expected);
  EXPECT_EQ(sizer.buffer_count(), 64u);
  EXPECT_EQ(sizer.growths(), 3u);
  EXPECT_EQ(sizer.shrinks(), 0u);
  // At MAX a grow would change nothing: it is a keep and starts no cooldown.
  EXPECT_FALSE(sizer.in_cooldown());
  EXPECT_DOUBLE_EQ(sizer.ema(), 1.0);
}

TEST(AdaptiveBufferSizer, thresholds_are_inclusive) {
  // A steady EMA of exactly 10 % grows, and one of exactly 0.5 % shrinks.
  AdaptiveBufferSizer growing(SizerConfig{}, 8);
  EXPECT_EQ(feed(growing, 8, WindowSample{0.10, 8}),
            (std::vector<Resize>{{7, SizerAction::grow, 16}}));
  AdaptiveBufferSizer shrinking(SizerConfig{}, 8);
  EXPECT_EQ(feed(shrinking, 8, WindowSample{0.005, 3}),
            (std::vector<Resize>{{7, SizerAction::shrink, 6}}));
  // Just inside the dead band, nothing moves.
  AdaptiveBufferSizer steady(SizerConfig{}, 8);
  EXPECT_EQ(feed(steady, 200, WindowSample{0.099, 3}), std::vector<Resize>{});
  EXPECT_EQ(feed(steady, 200, WindowSample{0.0051, 0}, 200), std::vector<Resize>{});
  EXPECT_EQ(steady.buffer_count(), 8u);
}

TEST(AdaptiveBufferSizer, never_exceeds_max) {
  SizerConfig config;
  config.max_buffers = 48;  // not a power of two: the last doubling is capped
  AdaptiveBufferSizer sizer(config, 8);
  const std::vector<Resize> expected{
      {7, SizerAction::grow, 16}, {12, SizerAction::grow, 32}, {17, SizerAction::grow, 48}};
  EXPECT_EQ(feed(sizer, 500, kAllMisses), expected);
  EXPECT_EQ(sizer.buffer_count(), 48u);
  EXPECT_EQ(sizer.growths(), 3u);

  // An initial count above MAX is clamped to MAX, and misses then change nothing.
  AdaptiveBufferSizer above(SizerConfig{}, 1000);
  EXPECT_EQ(above.buffer_count(), 64u);
  EXPECT_EQ(feed(above, 100, kAllMisses), std::vector<Resize>{});
  EXPECT_EQ(above.buffer_count(), 64u);

  // A MAX near the top of uint32_t does not overflow the doubling.
  SizerConfig huge;
  huge.max_buffers = std::numeric_limits<uint32_t>::max();
  AdaptiveBufferSizer big(huge, 3'000'000'000u);
  EXPECT_EQ(feed(big, 8, kAllMisses),
            (std::vector<Resize>{{7, SizerAction::grow, std::numeric_limits<uint32_t>::max()}}));
}

TEST(AdaptiveBufferSizer, refused_grow_is_not_retried) {
  AdaptiveBufferSizer sizer(SizerConfig{}, 8);
  EXPECT_EQ(feed(sizer, 8, kAllMisses), (std::vector<Resize>{{7, SizerAction::grow, 16}}));
  sizer.on_resize_applied(16);
  EXPECT_EQ(sizer.effective_max(), 64u);

  // The grow to 32 is refused (say ENOMEM from the memlock limit): the count stays 16.
  EXPECT_EQ(feed(sizer, 5, kAllMisses, 8), (std::vector<Resize>{{12, SizerAction::grow, 32}}));
  sizer.on_resize_applied(16);
  EXPECT_EQ(sizer.buffer_count(), 16u);
  EXPECT_EQ(sizer.effective_max(), 16u);
  EXPECT_EQ(sizer.refused_grows(), 1u);
  // The cooldown of the refused grow still runs.
  EXPECT_TRUE(sizer.in_cooldown());

  // Sustained misses no longer ask for more than the driver could give.
  EXPECT_EQ(feed(sizer, 200, kAllMisses, 13), std::vector<Resize>{});
  EXPECT_EQ(sizer.buffer_count(), 16u);
  EXPECT_EQ(sizer.growths(), 2u);
  EXPECT_FALSE(sizer.in_cooldown());

  // Shrinking still works below the lowered max, and a later grow stops at it. The EMA
  // decays from 1.0 as 0.8^k over idle windows and first reaches 0.5 % after k = 24
  // (0.8^23 = 0.59 %, 0.8^24 = 0.47 %), on window 213 + 23.
  EXPECT_EQ(feed(sizer, 24, kIdle, 213), (std::vector<Resize>{{236, SizerAction::shrink, 12}}));
  sizer.on_resize_applied(12);
  EXPECT_EQ(feed(sizer, 10, kAllMisses, 237), (std::vector<Resize>{{241, SizerAction::grow, 16}}));
  sizer.on_resize_applied(16);
  EXPECT_EQ(sizer.effective_max(), 16u);
  EXPECT_EQ(sizer.refused_grows(), 1u);
}

TEST(AdaptiveBufferSizer, partly_applied_grow_lowers_max_to_what_was_reached) {
  AdaptiveBufferSizer sizer(SizerConfig{}, 16);
  EXPECT_EQ(feed(sizer, 8, kAllMisses), (std::vector<Resize>{{7, SizerAction::grow, 32}}));
  sizer.on_resize_applied(24);  // the budget held 24 buffers, not 32
  EXPECT_EQ(sizer.buffer_count(), 24u);
  EXPECT_EQ(sizer.effective_max(), 24u);
  EXPECT_EQ(feed(sizer, 100, kAllMisses, 8), std::vector<Resize>{});
  EXPECT_EQ(sizer.buffer_count(), 24u);
}

TEST(AdaptiveBufferSizer, shrinks_on_sustained_idle_pool) {
  AdaptiveBufferSizer sizer(SizerConfig{}, 64);
  // floor(count * 0.75) each step, one decision every cooldown + 1 = 5 windows.
  const std::vector<Resize> expected{
      {7, SizerAction::shrink, 48},  {12, SizerAction::shrink, 36}, {17, SizerAction::shrink, 27},
      {22, SizerAction::shrink, 20}, {27, SizerAction::shrink, 15}, {32, SizerAction::shrink, 11},
      {37, SizerAction::shrink, 8},  {42, SizerAction::shrink, 6},  {47, SizerAction::shrink, 4},
      {52, SizerAction::shrink, 3},  {57, SizerAction::shrink, 2}};
  EXPECT_EQ(feed(sizer, 200, kIdle), expected);
  EXPECT_EQ(sizer.buffer_count(), 2u);
  EXPECT_EQ(sizer.shrinks(), 11u);
  EXPECT_EQ(sizer.growths(), 0u);
  EXPECT_FALSE(sizer.in_cooldown());
}

TEST(AdaptiveBufferSizer, never_goes_below_min) {
  SizerConfig config;
  config.min_buffers = 5;
  AdaptiveBufferSizer sizer(config, 64);
  const std::vector<Resize> expected{
      {7, SizerAction::shrink, 48},  {12, SizerAction::shrink, 36},
      {17, SizerAction::shrink, 27}, {22, SizerAction::shrink, 20},
      {27, SizerAction::shrink, 15}, {32, SizerAction::shrink, 11},
      {37, SizerAction::shrink, 8},  {42, SizerAction::shrink, 6},
      {47, SizerAction::shrink, 5}};  // floor(6 * 0.75) = 4 is below MIN 5
  EXPECT_EQ(feed(sizer, 300, kIdle), expected);
  EXPECT_EQ(sizer.buffer_count(), 5u);

  // An initial count below MIN is clamped up to MIN.
  AdaptiveBufferSizer below(SizerConfig{}, 0);
  EXPECT_EQ(below.buffer_count(), 2u);
  EXPECT_EQ(feed(below, 100, kIdle), std::vector<Resize>{});
  EXPECT_EQ(below.buffer_count(), 2u);
}

TEST(AdaptiveBufferSizer, no_decision_during_cooldown) {
  AdaptiveBufferSizer sizer(SizerConfig{}, 16);
  EXPECT_EQ(feed(sizer, 8, kAllMisses), (std::vector<Resize>{{7, SizerAction::grow, 32}}));
  const double ema_at_resize = sizer.ema();

  // Samples that would grow (all misses) or shrink (idle, peak 0) are both discarded.
  const std::vector<WindowSample> extremes{kIdle, kAllMisses, kIdle, kAllMisses};
  for (size_t i = 0; i < extremes.size(); ++i) {
    EXPECT_TRUE(sizer.in_cooldown()) << "cooldown window " << i;
    const SizerDecision decision = sizer.on_window(extremes[i]);
    EXPECT_EQ(decision.action, SizerAction::keep) << "cooldown window " << i;
    EXPECT_EQ(decision.buffer_count, 32u) << "cooldown window " << i;
    EXPECT_DOUBLE_EQ(sizer.ema(), ema_at_resize) << "cooldown window " << i;
  }
  EXPECT_FALSE(sizer.in_cooldown());
  EXPECT_EQ(sizer.samples_seen(), 12u);

  // The first sample after the cooldown is decided on at once.
  const SizerDecision after = sizer.on_window(kIdle);
  EXPECT_EQ(after.action, SizerAction::shrink);
  EXPECT_EQ(after.buffer_count, 24u);
}

TEST(AdaptiveBufferSizer, ema_restarts_after_resize) {
  AdaptiveBufferSizer sizer(SizerConfig{}, 8);
  EXPECT_EQ(feed(sizer, 12, kAllMisses), (std::vector<Resize>{{7, SizerAction::grow, 16}}));
  EXPECT_DOUBLE_EQ(sizer.ema(), 1.0);

  // Blended into the old EMA of 1.0, 0.03 would give 0.806 and grow again; re-seeded,
  // the EMA is exactly 0.03, between the thresholds, so the size is kept.
  const SizerDecision first = sizer.on_window({0.03, 16});
  EXPECT_DOUBLE_EQ(sizer.ema(), 0.03);
  EXPECT_EQ(first.action, SizerAction::keep);
  // From there on it blends again.
  sizer.on_window({0.08, 16});
  EXPECT_DOUBLE_EQ(sizer.ema(), 0.04);  // 0.03 + 0.2 * (0.08 - 0.03)
  EXPECT_EQ(sizer.buffer_count(), 16u);
  // The warm-up is not repeated after a resize.
  EXPECT_TRUE(sizer.warmed_up());
}

TEST(AdaptiveBufferSizer, peak_in_use_guard_blocks_shrinking) {
  // Idle on average (no misses) but 8 of 16 buffers in use at the peak: 8 < 16 / 2 is
  // false, so the pool keeps its size.
  AdaptiveBufferSizer sizer(SizerConfig{}, 16);
  EXPECT_EQ(feed(sizer, 200, WindowSample{0.0, 8}), std::vector<Resize>{});
  EXPECT_EQ(sizer.buffer_count(), 16u);
  EXPECT_DOUBLE_EQ(sizer.ema(), 0.0);
  // One window whose peak drops to 7 is enough.
  EXPECT_EQ(sizer.on_window({0.0, 7}).action, SizerAction::shrink);
  EXPECT_EQ(sizer.buffer_count(), 12u);

  // count / 2 is exact for an odd count: with 27 buffers a peak of 13 (< 13.5) shrinks
  // and a peak of 14 does not.
  AdaptiveBufferSizer odd(SizerConfig{}, 27);
  EXPECT_EQ(feed(odd, 50, WindowSample{0.0, 14}), std::vector<Resize>{});
  EXPECT_EQ(feed(odd, 1, WindowSample{0.0, 13}, 50),
            (std::vector<Resize>{{50, SizerAction::shrink, 20}}));
}

TEST(AdaptiveBufferSizer, out_of_range_miss_rate_is_clamped) {
  AdaptiveBufferSizer sizer(SizerConfig{}, 8);
  sizer.on_window({std::numeric_limits<double>::quiet_NaN(), 8});
  EXPECT_DOUBLE_EQ(sizer.ema(), 0.0);
  sizer.on_window({7.0, 8});
  EXPECT_DOUBLE_EQ(sizer.ema(), 0.2);  // 0.0 + 0.2 * (1.0 - 0.0)
  sizer.on_window({-3.0, 8});
  EXPECT_DOUBLE_EQ(sizer.ema(), 0.16);  // 0.2 + 0.2 * (0.0 - 0.2)
}

TEST(AdaptiveBufferSizer, validate_rejects_bad_values) {
  EXPECT_EQ(SizerConfig{}.validate(), "");

  struct Case {
    const char* field;  // must appear in the message
    SizerConfig config;
  };
  auto with = [](auto change) {
    SizerConfig config;
    change(config);
    return config;
  };
  const std::vector<Case> cases{
      {"window_acquires", with([](SizerConfig& c) { c.window_acquires = 0; })},
      {"ema_alpha", with([](SizerConfig& c) { c.ema_alpha = 0.0; })},
      {"ema_alpha", with([](SizerConfig& c) { c.ema_alpha = 1.5; })},
      {"ema_alpha", with([](SizerConfig& c) { c.ema_alpha = -0.2; })},
      {"ema_alpha",
       with([](SizerConfig& c) { c.ema_alpha = std::numeric_limits<double>::quiet_NaN(); })},
      {"grow_miss_rate", with([](SizerConfig& c) { c.grow_miss_rate = 0.0; })},
      {"grow_miss_rate", with([](SizerConfig& c) { c.grow_miss_rate = 1.1; })},
      {"shrink_miss_rate", with([](SizerConfig& c) { c.shrink_miss_rate = -0.01; })},
      {"shrink_miss_rate", with([](SizerConfig& c) { c.shrink_miss_rate = 0.10; })},
      {"min_buffers", with([](SizerConfig& c) { c.min_buffers = 0; })},
      {"min_buffers", with([](SizerConfig& c) {
         c.min_buffers = 65;
         c.max_buffers = 64;
       })},
  };
  for (const Case& bad : cases) {
    const std::string message = bad.config.validate();
    EXPECT_NE(message.find(bad.field), std::string::npos)
        << "expected a message naming " << bad.field << ", got '" << message << "'";
    EXPECT_THROW(AdaptiveBufferSizer(bad.config, 8), std::invalid_argument) << bad.field;
  }
  EXPECT_EQ(with([](SizerConfig& c) { c.ema_alpha = 1.5; }).validate(),
            "SizerConfig: ema_alpha must be in (0, 1], got 1.5");
  EXPECT_EQ(with([](SizerConfig& c) {
              c.min_buffers = 65;
              c.max_buffers = 64;
            }).validate(),
            "SizerConfig: min_buffers (65) must not exceed max_buffers (64)");

  // Edge values that are valid: alpha 1 (no smoothing), MIN == MAX, no warm-up, no cooldown.
  EXPECT_EQ(with([](SizerConfig& c) {
              c.ema_alpha = 1.0;
              c.min_buffers = 4;
              c.max_buffers = 4;
              c.warmup_samples = 0;
              c.cooldown_windows = 0;
            }).validate(),
            "");
}

TEST(AdaptiveBufferSizer, zero_cooldown_decides_on_the_next_window) {
  SizerConfig config;
  config.cooldown_windows = 0;
  AdaptiveBufferSizer sizer(config, 8);
  const std::vector<Resize> expected{
      {7, SizerAction::grow, 16}, {8, SizerAction::grow, 32}, {9, SizerAction::grow, 64}};
  EXPECT_EQ(feed(sizer, 20, kAllMisses), expected);
}

}  // namespace
}  // namespace ringio
