#include "copy/file_policy.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cerrno>

#include "copy/exclude_matcher.hpp"

namespace ringio::copy {
namespace {

DataPathFacts large_plain_file() {
  DataPathFacts facts;
  facts.size_bytes = 64 << 20;
  facts.buffer_size_bytes = 1 << 20;
  facts.source_direct_alignment = 512;
  facts.target_direct_alignment = 4096;
  return facts;
}

TEST(DataPathPolicy, small_unknown_or_sparse_files_go_through_the_pool_without_measuring) {
  DataPathFacts facts = large_plain_file();
  facts.size_bytes = kLargeFileBytes - 1;
  EXPECT_FALSE(data_path_needs_facts(facts));
  EXPECT_EQ(choose_data_path(facts, {}), DataPath::pooled);
  facts = large_plain_file();
  facts.size_unknown = true;
  EXPECT_EQ(choose_data_path(facts, {}), DataPath::pooled);
  facts = large_plain_file();
  facts.one_extent_from_start = false;
  EXPECT_EQ(choose_data_path(facts, {}), DataPath::pooled);
}

TEST(DataPathPolicy, a_cached_large_file_is_written_from_its_mapping_else_copied_in_the_kernel) {
  DataPathFacts facts = large_plain_file();
  facts.mostly_cached = true;
  EXPECT_EQ(choose_data_path(facts, {}), DataPath::mapped_direct_write);
  facts.target_direct_alignment = 0;  // the target refuses O_DIRECT
  EXPECT_EQ(choose_data_path(facts, {}), DataPath::in_kernel);
  DataPathRules rules;
  rules.reflink_never = true;  // copy_file_range may share extents
  EXPECT_EQ(choose_data_path(facts, rules), DataPath::pooled);
  rules = {};
  rules.copy_in_kernel = false;
  EXPECT_EQ(choose_data_path(facts, rules), DataPath::pooled);
  facts.target_direct_alignment = 4096;
  rules = {};
  rules.direct_io = false;
  EXPECT_EQ(choose_data_path(facts, rules), DataPath::in_kernel);
}

TEST(DataPathPolicy, an_uncached_large_file_is_read_with_o_direct_where_the_buffers_align) {
  DataPathFacts facts = large_plain_file();
  EXPECT_EQ(choose_data_path(facts, {}), DataPath::direct_read);
  facts.source_direct_alignment = 0;
  EXPECT_EQ(choose_data_path(facts, {}), DataPath::pooled);
  facts.source_direct_alignment = 3 << 20;  // does not divide the buffer size
  EXPECT_EQ(choose_data_path(facts, {}), DataPath::pooled);
  facts.source_direct_alignment = 512;
  DataPathRules rules;
  rules.direct_io = false;
  EXPECT_EQ(choose_data_path(facts, rules), DataPath::pooled);
}

TEST(DataPathPolicy, a_path_that_cannot_be_set_up_falls_back) {
  EXPECT_EQ(fallback_data_path(DataPath::mapped_direct_write, {}), DataPath::in_kernel);
  EXPECT_EQ(fallback_data_path(DataPath::direct_read, {}), DataPath::pooled);
  DataPathRules rules;
  rules.copy_in_kernel = false;
  EXPECT_EQ(fallback_data_path(DataPath::mapped_direct_write, rules), DataPath::pooled);
}

struct statx stat_of(uint64_t size, int64_t mtime_sec, uint32_t mtime_nsec = 0) {
  struct statx st {};
  st.stx_mode = S_IFREG | 0644;
  st.stx_size = size;
  st.stx_mtime.tv_sec = mtime_sec;
  st.stx_mtime.tv_nsec = mtime_nsec;
  return st;
}

TEST(FilePolicy, skip_decisions_follow_cp_and_rsync) {
  const struct statx older = stat_of(10, 100), newer = stat_of(10, 200), same = stat_of(10, 100);
  EXPECT_FALSE(should_skip(ClobberMode::overwrite, newer, older));
  EXPECT_TRUE(should_skip(ClobberMode::no_clobber, newer, older));
  EXPECT_FALSE(should_skip(ClobberMode::update_older, newer, older));
  EXPECT_TRUE(should_skip(ClobberMode::update_older, older, newer));
  EXPECT_TRUE(should_skip(ClobberMode::update_older, same, older));  // not newer: skipped
  EXPECT_TRUE(should_skip(ClobberMode::skip_unchanged, same, older));
  EXPECT_FALSE(should_skip(ClobberMode::skip_unchanged, stat_of(11, 100), older));
  EXPECT_FALSE(should_skip(ClobberMode::skip_unchanged, stat_of(10, 100, 1), older));
}

TEST(FilePolicy, target_mode_drops_the_umask_and_special_bits_unless_preserved) {
  struct statx st = stat_of(0, 0);
  st.stx_mode = S_IFREG | 04775;
  EXPECT_EQ(target_mode(st, false, 022), 0755u);
  EXPECT_EQ(target_mode(st, false, 077), 0700u);
  EXPECT_EQ(target_mode(st, true, 077), 04775u);
}

TEST(FilePolicy, fallback_errors_are_named) {
  EXPECT_TRUE(is_link_refused(EMLINK));
  EXPECT_FALSE(is_link_refused(ENOSPC));
  EXPECT_TRUE(is_clone_unsupported(EXDEV));
  EXPECT_FALSE(is_clone_unsupported(EIO));
  EXPECT_TRUE(is_tmpfile_unsupported(EOPNOTSUPP));
  EXPECT_FALSE(is_tmpfile_unsupported(ENOSPC));
  EXPECT_TRUE(is_copy_range_unsupported(EXDEV));
  EXPECT_FALSE(is_copy_range_unsupported(EIO));
  EXPECT_TRUE(is_attribute_not_kept(EPERM));
  EXPECT_FALSE(is_attribute_not_kept(EIO));
}

TEST(ExcludeMatcher, names_match_at_any_depth_and_patterns_with_a_slash_match_the_path) {
  const ExcludeMatcher matcher({"*.o", "build/", "/top.txt", "sub/c.txt"});
  EXPECT_TRUE(matcher.excluded("a/b/x.o", false));
  EXPECT_FALSE(matcher.excluded("a/b/x.c", false));
  EXPECT_TRUE(matcher.excluded("a/build", true));
  EXPECT_FALSE(matcher.excluded("a/build", false));  // "build/": directories only
  EXPECT_TRUE(matcher.excluded("top.txt", false));
  EXPECT_TRUE(matcher.excluded("sub/c.txt", false));
  EXPECT_FALSE(ExcludeMatcher({}).excluded("anything", false));
}

}  // namespace
}  // namespace ringio::copy
