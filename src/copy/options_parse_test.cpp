#include "copy/options_parse.hpp"

#include <gtest/gtest.h>

namespace ringio {
namespace {

TEST(ParseSize, accepts_plain_and_binary_suffixes) {
  EXPECT_EQ(parse_size("65536"), 65536u);
  EXPECT_EQ(parse_size("64K"), 65536u);
  EXPECT_EQ(parse_size("64k"), 65536u);
  EXPECT_EQ(parse_size("1M"), 1u << 20);
  EXPECT_EQ(parse_size("1MiB"), 1u << 20);
  EXPECT_EQ(parse_size("2G"), 2ull << 30);
}

TEST(ParseSize, rejects_garbage_signs_and_overflow) {
  for (const char* bad : {"", "K", "-1", "+4", "1.5M", "12Q", " 1", "1 ", "99999999999999999999", "17179869184G"})
    EXPECT_FALSE(parse_size(bad).has_value()) << bad;
}

TEST(ParseCount, range_and_digits_only) {
  EXPECT_EQ(parse_count("8", 1, 16), 8u);
  EXPECT_FALSE(parse_count("0", 1, 16));
  EXPECT_FALSE(parse_count("17", 1, 16));
  EXPECT_FALSE(parse_count("8x", 1, 16));
  EXPECT_FALSE(parse_count("", 1, 16));
  EXPECT_FALSE(parse_count("99999999999", 1, 16));
}

TEST(PreserveList, sets_and_clears_items) {
  PreserveSet preserve;
  std::string bad;
  ASSERT_TRUE(apply_preserve_list("mode,timestamps", true, preserve, &bad));
  EXPECT_TRUE(preserve.mode);
  EXPECT_TRUE(preserve.timestamps);
  EXPECT_FALSE(preserve.ownership);
  ASSERT_TRUE(apply_preserve_list("all", true, preserve, &bad));
  EXPECT_TRUE(preserve.links && preserve.xattr && preserve.ownership);
  ASSERT_TRUE(apply_preserve_list("xattr", false, preserve, &bad));
  EXPECT_FALSE(preserve.xattr);
  EXPECT_FALSE(apply_preserve_list("mode,bogus", true, preserve, &bad));
  EXPECT_EQ(bad, "bogus");
  EXPECT_FALSE(apply_preserve_list("", true, preserve, &bad));
}

TEST(QuoteName, quotes_like_cp) {
  EXPECT_EQ(quote_name("plain name"), "'plain name'");
  EXPECT_EQ(quote_name("it's"), "\"it's\"");
  EXPECT_EQ(quote_name("a\nb"), "'a'$'\\n''b'");
  EXPECT_EQ(quote_name("x\x01"), "'x'$'\\x01'''");
  EXPECT_EQ(quote_name("a\nb").find('\n'), std::string::npos);
}

TEST(EscapeUtf8, keeps_valid_and_escapes_invalid_bytes) {
  EXPECT_EQ(escape_invalid_utf8("caf\xc3\xa9"), "caf\xc3\xa9");
  EXPECT_EQ(escape_invalid_utf8("a\xff\xfe"), "a\\xff\\xfe");
  EXPECT_EQ(escape_invalid_utf8("\xc3"), "\\xc3");                 // truncated sequence
  EXPECT_EQ(escape_invalid_utf8("\xc0\xaf"), "\\xc0\\xaf");         // overlong
  EXPECT_EQ(escape_invalid_utf8("\xed\xa0\x80"), "\\xed\\xa0\\x80");  // surrogate
}

}  // namespace
}  // namespace ringio
