#include "ringio/config.hpp"

#include <gtest/gtest.h>

namespace ringio {
namespace {

TEST(IoConfig, presets_match_the_design_table) {
  const IoConfig d = IoConfig::defaults();
  EXPECT_EQ(d.sq_entries, 64u);
  EXPECT_EQ(d.buffer_size_bytes, 64u * 1024);
  EXPECT_EQ(d.initial_buffers, 8u);
  EXPECT_FALSE(d.sqpoll);
  EXPECT_EQ(d.sqpoll_idle_ms, 1000u);
  EXPECT_EQ(d.adaptive_buffers, AdaptiveBuffers::automatic);
  const IoConfig large = IoConfig::for_large_files();
  EXPECT_EQ(large.sq_entries, 256u);
  EXPECT_EQ(large.buffer_size_bytes, 256u * 1024);
  EXPECT_EQ(large.initial_buffers, 16u);
  const IoConfig small = IoConfig::for_small_files();
  EXPECT_EQ(small.sq_entries, 128u);
  EXPECT_EQ(small.buffer_size_bytes, 16u * 1024);
  EXPECT_EQ(small.initial_buffers, 8u);
  EXPECT_TRUE(d.validate().ok());
  EXPECT_TRUE(large.validate().ok());
  EXPECT_TRUE(small.validate().ok());
}

struct BadValue {
  const char* name;
  void (*apply)(IoConfig&);
  const char* expected_words;
};

TEST(IoConfig, rejects_bad_values_with_a_clear_message) {
  const BadValue cases[] = {
      {"zero entries", [](IoConfig& c) { c.sq_entries = 0; }, "sq_entries"},
      {"too many entries", [](IoConfig& c) { c.sq_entries = 65536; }, "sq_entries"},
      {"size not a power of two", [](IoConfig& c) { c.buffer_size_bytes = 100000; }, "power of two"},
      {"size below a page", [](IoConfig& c) { c.buffer_size_bytes = 512; }, "one page"},
      {"size above 1 GiB", [](IoConfig& c) { c.buffer_size_bytes = 1u << 31; }, "1 GiB"},
      {"zero min", [](IoConfig& c) { c.min_buffers = 0; }, "min_buffers"},
      {"max below min", [](IoConfig& c) { c.max_buffers = 1; }, "max_buffers"},
      {"above kernel cap", [](IoConfig& c) { c.max_buffers = 20000; }, "16384"},
      {"initial out of range", [](IoConfig& c) { c.initial_buffers = 100; }, "initial_buffers"},
  };
  for (const BadValue& bad : cases) {
    IoConfig config = IoConfig::defaults();
    bad.apply(config);
    const Status status = config.validate();
    ASSERT_FALSE(status.ok()) << bad.name;
    EXPECT_NE(status.error().message().find(bad.expected_words), std::string::npos)
        << bad.name << ": " << status.error().message();
    EXPECT_EQ(status.error().message().rfind("invalid config: ", 0), 0u);
  }
}

}  // namespace
}  // namespace ringio
