// The contract of the operations the copier used to make as direct system
// calls (directory listing, fchmodat, O_DIRECT switching, cachestat,
// fstatfs, mappings), run against every backend. io_uring has no opcode for
// any of them: the uring backend runs them inline, and counts them so.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "ringio/backend.hpp"
#include "ringio/directory_entries.hpp"
#include "support/test_util.hpp"
#include "unit/backend_fixture.hpp"

namespace ringio {
namespace {

using test::TempDir;

class BackendOpsContract : public test::BackendFixture {
 protected:
  mode_t mode_of(const std::string& path, bool follow = true) {
    struct stat st {};
    EXPECT_EQ(follow ? stat(path.c_str(), &st) : lstat(path.c_str(), &st), 0) << path;
    return st.st_mode & 07777;
  }

};

TEST_P(BackendOpsContract, getdents_lists_every_entry_with_its_type_until_zero) {
  test::write_file(dir_ / "a", {1});
  test::write_file(dir_ / "b", {2});
  ASSERT_EQ(mkdir((dir_ / "c").c_str(), 0755), 0);
  ASSERT_EQ(symlink("a", (dir_ / "l").c_str()), 0);
  struct stat a_stat {};
  ASSERT_EQ(stat((dir_ / "a").c_str(), &a_stat), 0);
  const int dirfd = open_file(dir_.path(), O_RDONLY | O_DIRECTORY);
  const uint64_t inline_before = backend_->op_counts().inline_metadata_ops;

  // A small buffer: the listing takes several requests.
  alignas(8) std::byte buffer[64];
  std::map<std::string, DirectoryEntry> seen;
  uint64_t requests = 0;
  for (;;) {
    const int64_t filled = run(Request::getdents(dirfd, buffer, sizeof buffer));
    ++requests;
    ASSERT_GE(filled, 0) << std::strerror(int(-filled));
    if (filled == 0) break;
    EXPECT_TRUE(for_each_dirent({buffer, size_t(filled)}, [&](const DirectoryEntry& e) {
      EXPECT_TRUE(seen.emplace(std::string(e.name), e).second) << "listed twice: " << e.name;
    }));
  }
  EXPECT_GT(requests, 2u);
  ASSERT_EQ(seen.size(), 6u);
  for (const char* name : {".", "..", "a", "b", "c", "l"}) EXPECT_EQ(seen.count(name), 1u) << name;
  EXPECT_EQ(seen.at("a").inode, a_stat.st_ino);
  EXPECT_EQ(seen.at("a").type, DT_REG);
  EXPECT_EQ(seen.at("c").type, DT_DIR);
  EXPECT_EQ(seen.at("l").type, DT_LNK);

  const OpCounts counts = backend_->op_counts();
  EXPECT_EQ(counts.by_op[size_t(Op::getdents)], requests);
  EXPECT_EQ(counts.inline_metadata_ops - inline_before, requests) << "done inline, as metadata";
  EXPECT_EQ(run(Request::close(dirfd)), 0);
}

TEST_P(BackendOpsContract, getdents_errors) {
  test::write_file(dir_ / "file", {1});
  const int fd = open_file(dir_ / "file", O_RDONLY);
  alignas(8) std::byte buffer[4096];
  EXPECT_EQ(run(Request::getdents(fd, buffer, sizeof buffer)), -ENOTDIR);
  EXPECT_EQ(run(Request::close(fd)), 0);
  const int dirfd = open_file(dir_.path(), O_RDONLY | O_DIRECTORY);
  EXPECT_EQ(run(Request::getdents(dirfd, buffer, 8)), -EINVAL) << "no room for one record";
  EXPECT_EQ(run(Request::close(dirfd)), 0);
  EXPECT_EQ(run(Request::getdents(-1, buffer, sizeof buffer)), -EBADF);
}

TEST_P(BackendOpsContract, fchmodat_by_name_with_and_without_following) {
  test::write_file(dir_ / "f", {1});
  ASSERT_EQ(symlink("f", (dir_ / "link").c_str()), 0);
  const int dirfd = open_file(dir_.path(), O_RDONLY | O_DIRECTORY);
  EXPECT_EQ(run(Request::fchmodat(dirfd, "f", 0640)), 0);
  EXPECT_EQ(mode_of(dir_ / "f"), 0640u);
  EXPECT_EQ(run(Request::fchmodat(dirfd, "link", 0600)), 0) << "follows the symlink";
  EXPECT_EQ(mode_of(dir_ / "f"), 0600u);
  EXPECT_EQ(run(Request::fchmodat(dirfd, "f", 0604, AT_SYMLINK_NOFOLLOW)), 0);
  EXPECT_EQ(mode_of(dir_ / "f"), 0604u);
  // Linux has no symlink modes: the errno is reported, the target untouched.
  EXPECT_EQ(run(Request::fchmodat(dirfd, "link", 0777, AT_SYMLINK_NOFOLLOW)), -EOPNOTSUPP);
  EXPECT_EQ(mode_of(dir_ / "f"), 0604u);
  EXPECT_EQ(run(Request::fchmodat(dirfd, "missing", 0600)), -ENOENT);
  EXPECT_EQ(run(Request::fchmodat(dirfd, "missing", 0600, AT_SYMLINK_NOFOLLOW)), -ENOENT);
  EXPECT_EQ(run(Request::close(dirfd)), 0);
}

TEST_P(BackendOpsContract, set_direct_io_turns_o_direct_on_and_off) {
  const int fd = open_file(dir_ / "direct", O_RDWR | O_CREAT | O_TRUNC);
  const int64_t on = run(Request::set_direct_io(fd, DirectIo::on));
  if (on == -EINVAL) GTEST_SKIP() << dir_.path() << " refuses O_DIRECT (set RINGIO_TEST_DIR to a disk)";
  ASSERT_EQ(on, 0);
  EXPECT_NE(fcntl(fd, F_GETFL) & O_DIRECT, 0);
  EXPECT_EQ(run(Request::set_direct_io(fd, DirectIo::on)), 0) << "already on";
  EXPECT_EQ(run(Request::set_direct_io(fd, DirectIo::off)), 0);
  EXPECT_EQ(fcntl(fd, F_GETFL) & O_DIRECT, 0);
  EXPECT_NE(fcntl(fd, F_GETFL) & O_RDWR, 0) << "the other flags stay";
  EXPECT_EQ(run(Request::close(fd)), 0);
  EXPECT_EQ(run(Request::set_direct_io(fd, DirectIo::on)), -EBADF);
}

TEST_P(BackendOpsContract, cachestat_counts_the_cached_pages) {
  const auto bytes = test::random_bytes(16 * 4096, 5);
  test::write_file(dir_ / "cached", bytes);
  const int fd = open_file(dir_ / "cached", O_RDONLY);
  CacheStat stat;
  const int64_t rc = run(Request::cachestat(fd, 0, 0, &stat));
  if (rc == -ENOSYS) GTEST_SKIP() << "no cachestat(2) in this kernel (Linux 6.5)";
  ASSERT_EQ(rc, 0) << std::strerror(int(-rc));
  // Just written: every page is in the cache (or, under memory pressure,
  // evicted since and remembered as such).
  EXPECT_EQ(stat.nr_cache + stat.nr_evicted, 16u);
  EXPECT_GT(stat.nr_cache, 0u);
  EXPECT_EQ(run(Request::cachestat(fd, 0, 4096, &stat)), 0);
  EXPECT_EQ(stat.nr_cache + stat.nr_evicted, 1u) << "one page asked about";
  EXPECT_EQ(run(Request::close(fd)), 0);
  EXPECT_EQ(run(Request::cachestat(-1, 0, 0, &stat)), -EBADF);
}

// An SQE carries a 32-bit length: a range past 4 GiB must still reach the
// kernel whole. Seen through cachestat: the page at 5 GiB leaves the cache
// only if the advice covered it.
TEST_P(BackendOpsContract, fadvise_covers_a_range_longer_than_4_gib) {
  const int fd = open_file(dir_ / "big-sparse", O_RDWR | O_CREAT | O_TRUNC);
  constexpr uint64_t kFar = 5ull << 30;
  const std::vector<uint8_t> page(4096, 7);
  ASSERT_TRUE(write_full(*backend_, fd, page.data(), page.size(), kFar).ok());
  ASSERT_EQ(run(Request::fsync(fd)), 0) << "clean pages: DONTNEED drops only those";
  CacheStat stat;
  const int64_t rc = run(Request::cachestat(fd, kFar, 4096, &stat));
  if (rc == -ENOSYS) GTEST_SKIP() << "no cachestat(2) in this kernel (Linux 6.5) to observe the cache";
  ASSERT_EQ(rc, 0);
  ASSERT_EQ(stat.nr_cache, 1u);
  EXPECT_EQ(run(Request::fadvise(fd, 0, kFar + 4096, POSIX_FADV_DONTNEED)), 0);
  ASSERT_EQ(run(Request::cachestat(fd, kFar, 4096, &stat)), 0);
  EXPECT_EQ(stat.nr_cache, 0u) << "the advice stopped short of 5 GiB";
  EXPECT_EQ(run(Request::close(fd)), 0);
}

TEST_P(BackendOpsContract, fstatfs_describes_the_filesystem) {
  const int dirfd = open_file(dir_.path(), O_RDONLY | O_DIRECTORY);
  struct statfs got {};
  EXPECT_EQ(run(Request::fstatfs(dirfd, &got)), 0);
  struct statfs expected {};
  ASSERT_EQ(statfs(dir_.path().c_str(), &expected), 0);
  EXPECT_EQ(got.f_type, expected.f_type);
  EXPECT_EQ(got.f_bsize, expected.f_bsize);
  EXPECT_GT(got.f_blocks, 0u);
  EXPECT_EQ(run(Request::close(dirfd)), 0);
  EXPECT_EQ(run(Request::fstatfs(-1, &got)), -EBADF);
}

TEST_P(BackendOpsContract, fstatx_of_an_open_file_with_direct_io_alignment) {
  const auto bytes = test::random_bytes(5000, 6);
  test::write_file(dir_ / "sized", bytes);
  const int fd = open_file(dir_ / "sized", O_RDONLY);
  struct statx stx {};
  ASSERT_EQ(run(Request::fstatx(fd, STATX_BASIC_STATS | STATX_DIOALIGN, &stx)), 0);
  EXPECT_EQ(stx.stx_size, bytes.size());
  EXPECT_TRUE(S_ISREG(stx.stx_mode));
  if ((stx.stx_mask & STATX_DIOALIGN) != 0 && stx.stx_dio_mem_align != 0) {
    EXPECT_GT(stx.stx_dio_offset_align, 0u);
    EXPECT_EQ(stx.stx_dio_offset_align & (stx.stx_dio_offset_align - 1), 0u) << "a power of two";
  }
  // A null name means the descriptor itself too (the kernel refused it before 6.11).
  stx = {};
  EXPECT_EQ(run(Request::statx(fd, nullptr, AT_EMPTY_PATH, STATX_SIZE, &stx)), 0);
  EXPECT_EQ(stx.stx_size, bytes.size());
  EXPECT_EQ(run(Request::statx(fd, "", 0, STATX_SIZE, &stx)), -ENOENT) << "no AT_EMPTY_PATH";
  EXPECT_EQ(run(Request::close(fd)), 0);
  EXPECT_EQ(run(Request::fstatx(fd, STATX_SIZE, &stx)), -EBADF);
}

TEST_P(BackendOpsContract, map_file_reads_back_the_files_bytes) {
  const auto bytes = test::random_bytes(3 * 4096 + 100, 8);
  test::write_file(dir_ / "mapped", bytes);
  const int fd = open_file(dir_ / "mapped", O_RDONLY);
  const int64_t whole = run(Request::map_file(fd, bytes.size(), 0, MADV_SEQUENTIAL));
  ASSERT_GT(whole, 0) << std::strerror(int(-whole));
  EXPECT_EQ(std::memcmp(mapped_address(whole), bytes.data(), bytes.size()), 0);
  // Dropping the page-table entries of a file mapping keeps its content.
  EXPECT_EQ(run(Request::madvise(mapped_address(whole), 4096, MADV_DONTNEED)), 0);
  EXPECT_EQ(std::memcmp(mapped_address(whole), bytes.data(), 4096), 0);
  EXPECT_EQ(run(Request::unmap(mapped_address(whole), bytes.size())), 0);

  const int64_t tail = run(Request::map_file(fd, 4096 + 100, 2 * 4096));
  ASSERT_GT(tail, 0) << std::strerror(int(-tail));
  EXPECT_EQ(std::memcmp(mapped_address(tail), bytes.data() + 2 * 4096, 4096 + 100), 0);
  EXPECT_EQ(run(Request::unmap(mapped_address(tail), 4096 + 100)), 0);
  EXPECT_EQ(run(Request::close(fd)), 0);
}

TEST_P(BackendOpsContract, mapping_errors) {
  test::write_file(dir_ / "m", test::random_bytes(8192, 9));
  const int fd = open_file(dir_ / "m", O_RDONLY);
  EXPECT_EQ(run(Request::map_file(fd, 4096, 100)), -EINVAL) << "offset not page-aligned";
  EXPECT_EQ(run(Request::map_file(fd, 0, 0)), -EINVAL) << "empty mapping";
  EXPECT_EQ(run(Request::map_file(fd, 4096, 0, 12345)), -EINVAL) << "unknown advice";
  EXPECT_EQ(run(Request::map_file(-1, 4096, 0)), -EBADF);
  const int write_only = open_file(dir_ / "m", O_WRONLY);
  EXPECT_EQ(run(Request::map_file(write_only, 4096, 0)), -EACCES);
  const int64_t mapping = run(Request::map_file(fd, 8192, 0));
  ASSERT_GT(mapping, 0);
  EXPECT_EQ(run(Request::madvise(mapped_address(mapping), 4096, 12345)), -EINVAL);
  EXPECT_EQ(run(Request::unmap(mapped_address(mapping) + 1, 4096)), -EINVAL) << "not page-aligned";
  EXPECT_EQ(run(Request::unmap(mapped_address(mapping), 8192)), 0);
  EXPECT_EQ(run(Request::close(write_only)), 0);
  EXPECT_EQ(run(Request::close(fd)), 0);
}

TEST_P(BackendOpsContract, lremovexattr_by_path) {
  const std::string path = dir_ / "x";
  test::write_file(path, {1});
  const int64_t set = run(Request::lsetxattr(path.c_str(), "user.gone", "v", 1));
  if (set == -EOPNOTSUPP) GTEST_SKIP() << "no user xattrs on " << dir_.path();
  ASSERT_EQ(set, 0);
  EXPECT_EQ(run(Request::lremovexattr(path.c_str(), "user.gone")), 0);
  char value[8];
  EXPECT_EQ(run(Request::lgetxattr(path.c_str(), "user.gone", value, sizeof value)), -ENODATA);
  EXPECT_EQ(run(Request::lremovexattr(path.c_str(), "user.gone")), -ENODATA);
}

TEST(OpNames, every_op_has_its_own_name) {
  std::map<std::string, size_t> names;
  for (size_t i = 0; i < kOpCount; ++i) {
    const std::string name = op_name(Op(i));
    EXPECT_NE(name, "invalid");
    EXPECT_TRUE(names.emplace(name, i).second) << name << " twice";
  }
  EXPECT_STREQ(op_name(Op::getdents), "getdents");
  EXPECT_STREQ(op_name(Op::unmap), "unmap");
  EXPECT_STREQ(op_name(Op::count_), "invalid");
}

INSTANTIATE_TEST_SUITE_P(AllBackends, BackendOpsContract,
                         ::testing::Values(EngineChoice::uring, EngineChoice::posix),
                         [](const ::testing::TestParamInfo<EngineChoice>& param_info) {
                           return std::string(param_info.param == EngineChoice::uring ? "uring" : "posix");
                         });

}  // namespace
}  // namespace ringio
