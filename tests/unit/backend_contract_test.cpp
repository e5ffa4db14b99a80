// One contract, run against every backend: what a request does, what its
// completion carries, short transfers, errors as -errno, and many requests
// in flight at once.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <map>

#include "ringio/backend.hpp"
#include "support/test_util.hpp"
#include "unit/backend_fixture.hpp"

namespace ringio {
namespace {

using test::TempDir;

using test::uring_required;

class BackendContract : public test::BackendFixture {
};

TEST_P(BackendContract, reports_its_kind) {
  EXPECT_EQ(backend_->kind(),
            GetParam() == EngineChoice::uring ? BackendKind::uring : BackendKind::posix);
  EXPECT_FALSE(backend_->describe().empty());
}

TEST_P(BackendContract, write_then_read_back_through_pool_buffers) {
  const std::string path = dir_ / "data";
  const auto bytes = test::random_bytes(3 * 65536 + 123, 7);
  const int fd = open_file(path, O_RDWR | O_CREAT | O_TRUNC);
  ASSERT_GE(fd, 0);
  RegisteredBufferGroup& pool = backend_->buffers();
  {
    BufferSlot slot = pool.checkout();
    ASSERT_TRUE(slot);
    for (uint64_t offset = 0; offset < bytes.size(); offset += slot.size()) {
      const uint64_t len = std::min<uint64_t>(slot.size(), bytes.size() - offset);
      std::memcpy(slot.data(), bytes.data() + offset, len);
      ASSERT_TRUE(write_full(*backend_, fd, slot.data(), len, offset, slot.fixed_index()).ok());
    }
  }
  std::vector<uint8_t> back(bytes.size());
  {
    BufferSlot slot = pool.checkout();
    for (uint64_t offset = 0; offset < back.size(); offset += slot.size()) {
      auto got = read_full(*backend_, fd, slot.data(), slot.size(), offset, slot.fixed_index());
      ASSERT_TRUE(got.ok());
      ASSERT_EQ(*got, std::min<uint64_t>(slot.size(), back.size() - offset));
      std::memcpy(back.data() + offset, slot.data(), *got);
    }
  }
  EXPECT_EQ(back, bytes);
  EXPECT_EQ(run(Request::close(fd)), 0);
  EXPECT_EQ(test::read_file(path), bytes);

  const OpCounts counts = backend_->op_counts();
  if (backend_->kind() == BackendKind::uring && pool.registered()) {
    EXPECT_GT(counts.fixed_reads, 0u);
    EXPECT_GT(counts.fixed_writes, 0u);
  } else {
    EXPECT_EQ(counts.fixed_reads, 0u);
    EXPECT_GT(counts.plain_reads, 0u);
  }
}

TEST_P(BackendContract, short_read_at_end_of_file_and_zero_past_it) {
  const std::string path = dir_ / "short";
  test::write_file(path, test::random_bytes(1000, 1));
  const int fd = open_file(path, O_RDONLY);
  char buf[4096];
  EXPECT_EQ(run(Request::read(fd, buf, sizeof buf, 900)), 100);
  EXPECT_EQ(run(Request::read(fd, buf, sizeof buf, 1000)), 0);
  EXPECT_EQ(run(Request::read(fd, buf, sizeof buf, 5000)), 0);
  auto got = read_full(*backend_, fd, buf, sizeof buf, 0);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, 1000u);
  EXPECT_EQ(run(Request::close(fd)), 0);
}

// RLIMIT_FSIZE makes the kernel write only up to the limit and return a
// short count, for io_uring's workers as for pwrite: a real short write.
TEST_P(BackendContract, short_write_is_reported_and_resumed_to_an_error) {
  const std::string path = dir_ / "short-write";
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    signal(SIGXFSZ, SIG_IGN);
    rlimit limit{10000, 10000};
    setrlimit(RLIMIT_FSIZE, &limit);
    auto selection = make_backend(GetParam(), IoConfig::defaults());
    if (!selection) _exit(10);
    Backend& backend = *selection->backend;
    const int fd = static_cast<int>(
        run_one(backend, Request::openat(AT_FDCWD, path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644)));
    if (fd < 0) _exit(11);
    BufferSlot slot = backend.buffers().checkout();
    std::memset(slot.data(), 'x', 16384);
    const int64_t written = run_one(backend, Request::write(fd, slot.data(), 16384, 0, slot.fixed_index()));
    if (written != 10000) _exit(12);
    const Status rest = write_full(backend, fd, slot.data(), 16384, 0, slot.fixed_index());
    if (rest.ok() || rest.error().code != EFBIG) _exit(13);
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "10: no backend, 11: open, 12: not a 10000-byte short "
                                       "write, 13: write_full did not end in EFBIG";
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 10000);
}

TEST_P(BackendContract, errors_are_negative_errno) {
  EXPECT_EQ(run(Request::openat(AT_FDCWD, (dir_ / "missing").c_str(), O_RDONLY)), -ENOENT);
  EXPECT_EQ(run(Request::close(-1)), -EBADF);
  char buf[16];
  EXPECT_EQ(run(Request::read(-1, buf, sizeof buf, 0)), -EBADF);
  EXPECT_EQ(run(Request::mkdirat(AT_FDCWD, (dir_ / "no/such/parent").c_str(), 0755)), -ENOENT);
}

TEST_P(BackendContract, many_requests_in_flight_complete_once_each) {
  const std::string path = dir_ / "many";
  const auto bytes = test::random_bytes(100 * 512, 3);
  test::write_file(path, bytes);
  const int fd = open_file(path, O_RDONLY);
  std::vector<std::array<uint8_t, 512>> buffers(100);
  uint32_t prepared = 0;
  std::map<uint64_t, int64_t> results;
  while (results.size() < 100) {
    while (prepared < 100) {
      Request read = Request::read(fd, buffers[prepared].data(), 512, prepared * 512ull);
      read.user_data = 1000 + prepared;
      if (!backend_->prepare(read)) break;
      ++prepared;
    }
    Completion completions[16];
    const int n = backend_->submit_and_reap(completions, 1);
    ASSERT_GT(n, 0);
    for (int i = 0; i < n; ++i) {
      EXPECT_TRUE(results.emplace(completions[i].user_data, completions[i].result).second)
          << "completion delivered twice";
    }
  }
  EXPECT_EQ(backend_->in_flight(), 0u);
  for (uint32_t i = 0; i < 100; ++i) {
    EXPECT_EQ(results.at(1000 + i), 512);
    EXPECT_EQ(std::memcmp(buffers[i].data(), bytes.data() + i * 512, 512), 0) << i;
  }
  EXPECT_EQ(run(Request::close(fd)), 0);
}

TEST_P(BackendContract, tmpfile_linked_into_place_appears_complete) {
  const int dirfd = open_file(dir_.path(), O_DIRECTORY | O_RDONLY);
  const int64_t fd = run(Request::openat(dirfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600));
  ASSERT_GE(fd, 0) << std::strerror(int(-fd));
  const char text[] = "complete";
  ASSERT_TRUE(write_full(*backend_, int(fd), text, sizeof text, 0).ok());
  EXPECT_EQ(access((dir_ / "final").c_str(), F_OK), -1) << "nothing under the name before the link";
  EXPECT_EQ(run(Request::linkat(int(fd), "", dirfd, "final", AT_EMPTY_PATH)), 0);
  EXPECT_EQ(run(Request::linkat(int(fd), "", dirfd, "final", AT_EMPTY_PATH)), -EEXIST);
  EXPECT_EQ(run(Request::close(int(fd))), 0);
  const auto content = test::read_file(dir_ / "final");
  EXPECT_EQ(std::string(content.begin(), content.end()), std::string(text, sizeof text));
  EXPECT_EQ(run(Request::close(dirfd)), 0);
}

TEST_P(BackendContract, namespace_operations) {
  const int dirfd = open_file(dir_.path(), O_DIRECTORY | O_RDONLY);
  EXPECT_EQ(run(Request::mkdirat(dirfd, "sub", 0750)), 0);
  EXPECT_EQ(run(Request::mkdirat(dirfd, "sub", 0750)), -EEXIST);
  test::write_file(dir_ / "a", {1, 2, 3});
  EXPECT_EQ(run(Request::renameat(dirfd, "a", dirfd, "sub/b")), 0);
  EXPECT_EQ(run(Request::linkat(dirfd, "sub/b", dirfd, "hard", 0)), 0);
  EXPECT_EQ(run(Request::symlinkat("sub/b", dirfd, "link")), 0);
  char target[64] = {};
  EXPECT_EQ(run(Request::readlinkat(dirfd, "link", target, sizeof target)), 5);
  EXPECT_STREQ(target, "sub/b");
  EXPECT_EQ(run(Request::mknodat(dirfd, "fifo", S_IFIFO | 0640, 0)), 0);

  struct statx stx {};
  EXPECT_EQ(run(Request::statx(dirfd, "hard", AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &stx)), 0);
  EXPECT_EQ(stx.stx_nlink, 2u);
  EXPECT_EQ(stx.stx_size, 3u);
  EXPECT_EQ(run(Request::statx(dirfd, "fifo", AT_SYMLINK_NOFOLLOW, STATX_TYPE, &stx)), 0);
  EXPECT_TRUE(S_ISFIFO(stx.stx_mode));
  EXPECT_EQ(run(Request::statx(dirfd, "link", AT_SYMLINK_NOFOLLOW, STATX_TYPE, &stx)), 0);
  EXPECT_TRUE(S_ISLNK(stx.stx_mode));

  EXPECT_EQ(run(Request::unlinkat(dirfd, "hard", 0)), 0);
  EXPECT_EQ(run(Request::unlinkat(dirfd, "sub", AT_REMOVEDIR)), -ENOTEMPTY);
  EXPECT_EQ(run(Request::unlinkat(dirfd, "sub/b", 0)), 0);
  EXPECT_EQ(run(Request::unlinkat(dirfd, "sub", AT_REMOVEDIR)), 0);
  EXPECT_EQ(run(Request::close(dirfd)), 0);
}

TEST_P(BackendContract, metadata_operations) {
  const std::string path = dir_ / "meta";
  const int fd = open_file(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  // Owner before mode: chown clears the setuid bit.
  EXPECT_EQ(run(Request::fchownat(fd, "", getuid(), getgid(), AT_EMPTY_PATH)), 0);
  EXPECT_EQ(run(Request::fchmod(fd, 04750)), 0);
  const struct timespec times[2] = {{1000, 5}, {2000, 123456789}};
  EXPECT_EQ(run(Request::utimensat(fd, "", times, AT_EMPTY_PATH)), 0);
  EXPECT_EQ(run(Request::fsync(fd)), 0);
  EXPECT_EQ(run(Request::fsync(fd, true)), 0);
  struct stat st {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 04750u);
  EXPECT_EQ(st.st_mtim.tv_sec, 2000);
  EXPECT_EQ(st.st_mtim.tv_nsec, 123456789);
  EXPECT_EQ(st.st_atim.tv_sec, 1000);

  // Symlink times are set on the link itself.
  ASSERT_EQ(symlink("meta", (dir_ / "sym").c_str()), 0);
  EXPECT_EQ(run(Request::utimensat(AT_FDCWD, (dir_ / "sym").c_str(), times, AT_SYMLINK_NOFOLLOW)), 0);
  ASSERT_EQ(lstat((dir_ / "sym").c_str(), &st), 0);
  EXPECT_EQ(st.st_mtim.tv_nsec, 123456789);
  EXPECT_EQ(run(Request::close(fd)), 0);
}

TEST_P(BackendContract, extended_attributes) {
  const std::string path = dir_ / "x";
  const int fd = open_file(path, O_RDWR | O_CREAT | O_TRUNC);
  const char value[] = "value-1";
  const int64_t set = run(Request::fsetxattr(fd, "user.ringio", value, sizeof value));
  if (set == -EOPNOTSUPP) GTEST_SKIP() << "no user xattrs on " << dir_.path();
  EXPECT_EQ(set, 0);
  char got[32] = {};
  EXPECT_EQ(run(Request::fgetxattr(fd, "user.ringio", got, sizeof got)), int64_t(sizeof value));
  EXPECT_STREQ(got, value);
  EXPECT_EQ(run(Request::fgetxattr(fd, "user.none", got, sizeof got)), -ENODATA);
  char list[256] = {};
  const int64_t listed = run(Request::flistxattr(fd, list, sizeof list));
  ASSERT_GT(listed, 0);
  EXPECT_NE(std::string(list, size_t(listed)).find("user.ringio"), std::string::npos);
  // By path, without following a symlink.
  EXPECT_EQ(run(Request::lgetxattr(path.c_str(), "user.ringio", got, sizeof got)), int64_t(sizeof value));
  EXPECT_EQ(run(Request::lsetxattr(path.c_str(), "user.second", "2", 1)), 0);
  EXPECT_GT(run(Request::llistxattr(path.c_str(), list, sizeof list)), listed);
  EXPECT_EQ(run(Request::close(fd)), 0);
}

TEST_P(BackendContract, holes_sizes_and_allocation) {
  const std::string path = dir_ / "sparse";
  const int fd = open_file(path, O_RDWR | O_CREAT | O_TRUNC);
  EXPECT_EQ(run(Request::ftruncate(fd, 8 << 20)), 0);
  const char data[] = "data";
  ASSERT_TRUE(write_full(*backend_, fd, data, 4, 4 << 20, -1).ok());
  const int64_t first_data = run(Request::seek_data(fd, 0));
  ASSERT_GE(first_data, 0);
  EXPECT_LE(first_data, 4 << 20);
  EXPECT_GT(first_data, 0) << "the first 4 MiB are a hole";
  const int64_t hole_after = run(Request::seek_hole(fd, uint64_t(first_data)));
  EXPECT_GT(hole_after, 4 << 20);
  EXPECT_EQ(run(Request::seek_data(fd, 7 << 20)), -ENXIO) << "no data after the write";
  EXPECT_EQ(run(Request::fallocate(fd, 0, 0, 65536)), 0);
  struct stat st {};
  ASSERT_EQ(fstat(fd, &st), 0);
  EXPECT_EQ(st.st_size, 8 << 20);
  EXPECT_GE(st.st_blocks * 512, 65536);
  EXPECT_EQ(run(Request::ftruncate(fd, 10)), 0);
  ASSERT_EQ(fstat(fd, &st), 0);
  EXPECT_EQ(st.st_size, 10);
  EXPECT_EQ(run(Request::fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)), 0);
  EXPECT_EQ(run(Request::close(fd)), 0);
}

INSTANTIATE_TEST_SUITE_P(AllBackends, BackendContract,
                         ::testing::Values(EngineChoice::uring, EngineChoice::posix),
                         [](const ::testing::TestParamInfo<EngineChoice>& param_info) {
                           return std::string(param_info.param == EngineChoice::uring ? "uring" : "posix");
                         });

}  // namespace
}  // namespace ringio
