// The fault decorator on the operations the copier used to make as direct
// system calls: each can be failed, under a name that does not depend on
// descriptor numbers or mapping addresses, and close and unmap never are.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "ringio/backend.hpp"
#include "support/fault_injection.hpp"
#include "support/test_util.hpp"

namespace ringio::test {
namespace {

class FaultInjectionOps : public ::testing::Test {
 protected:
  void make(const FaultSchedule& schedule) {
    auto selection = make_backend(EngineChoice::posix, IoConfig::defaults());
    ASSERT_TRUE(selection) << selection.error().message();
    log_ = std::make_shared<FaultLog>();
    backend_ = std::make_unique<FaultInjectingBackend>(std::move(selection->backend), 42, schedule, log_,
                                                       std::vector<std::string>{dir_.path()});
  }
  int64_t run(Request request) { return run_one(*backend_, request); }
  int open_path(const std::string& path, int flags) {
    const int64_t fd = run(Request::openat(AT_FDCWD, path.c_str(), flags | O_CLOEXEC, 0644));
    EXPECT_GE(fd, 0) << path;
    return int(fd);
  }
  std::vector<std::string> injected() const {
    std::vector<std::string> lines;
    for (const FaultRecord& record : log_->records) lines.push_back(record.describe());
    return lines;
  }

  TempDir dir_;
  std::shared_ptr<FaultLog> log_;
  std::unique_ptr<FaultInjectingBackend> backend_;
};

TEST(FaultMasks, the_new_operations_are_in_the_default_masks_where_a_filesystem_fails_them) {
  for (Op op : {Op::getdents, Op::fchmodat, Op::cachestat, Op::fstatfs, Op::map_file})
    EXPECT_NE(default_eio_ops() & op_bit(op), 0u) << op_name(op);
  EXPECT_EQ(default_enomem_ops(), op_bit(Op::map_file) | op_bit(Op::madvise));
  EXPECT_EQ(default_refusal_ops(), op_bit(Op::set_direct_io));
  EXPECT_EQ(must_report_ops() & (op_bit(Op::cachestat) | op_bit(Op::fstatfs) | op_bit(Op::map_file)), 0u)
      << "a failed hint or mapping has a plain path to fall back on";
  EXPECT_NE(must_report_ops() & op_bit(Op::getdents), 0u);
  EXPECT_EQ(errno_of(FaultKind::enomem), ENOMEM);
  EXPECT_EQ(errno_of(FaultKind::einval), EINVAL);
}

TEST_F(FaultInjectionOps, eio_reaches_every_new_operation_under_the_files_name) {
  FaultSchedule schedule;
  schedule.eio = 1.0;
  schedule.eio_ops = op_bit(Op::getdents) | op_bit(Op::fchmodat) | op_bit(Op::cachestat) |
                     op_bit(Op::fstatfs) | op_bit(Op::map_file);
  make(schedule);
  write_file(dir_ / "f", {1, 2, 3});
  const int dirfd = open_path(dir_.path(), O_RDONLY | O_DIRECTORY);
  const int fd = open_path(dir_ / "f", O_RDONLY);
  alignas(8) std::byte entries[4096];
  CacheStat cache;
  struct statfs fs {};
  EXPECT_EQ(run(Request::getdents(dirfd, entries, sizeof entries)), -EIO);
  EXPECT_EQ(run(Request::fchmodat(dirfd, "f", 0600)), -EIO);
  EXPECT_EQ(run(Request::cachestat(fd, 0, 0, &cache)), -EIO);
  EXPECT_EQ(run(Request::fstatfs(fd, &fs)), -EIO);
  EXPECT_EQ(run(Request::map_file(fd, 4096, 0)), -EIO);
  EXPECT_EQ(run(Request::close(fd)), 0);
  EXPECT_EQ(run(Request::close(dirfd)), 0);

  const std::vector<std::string> expected = {
      "eio getdents '<0>' offset=0 #0",   "eio fchmodat '<0>/f' offset=0 #0",
      "eio cachestat '<0>/f' offset=0 #0", "eio fstatfs '<0>/f' offset=0 #0",
      "eio map_file '<0>/f' offset=0 #0"};
  EXPECT_EQ(injected(), expected);
  EXPECT_EQ(log_->counts.injected_by_op[size_t(Op::getdents)], 1u);
  EXPECT_EQ(log_->counts.describe_by_op(), "getdents=1 fchmodat=1 cachestat=1 fstatfs=1 map_file=1");
  EXPECT_EQ(log_->counts.hard_hits, 5u);
  EXPECT_EQ(log_->counts.must_report_hits, 2u) << "getdents and fchmodat";
}

TEST_F(FaultInjectionOps, enomem_on_map_file_and_einval_on_set_direct_io) {
  FaultSchedule schedule;
  schedule.enomem = 1.0;
  schedule.einval = 1.0;
  make(schedule);
  write_file(dir_ / "f", {1});
  const int fd = open_path(dir_ / "f", O_RDONLY);
  EXPECT_EQ(run(Request::map_file(fd, 4096, 0)), -ENOMEM);
  EXPECT_EQ(run(Request::set_direct_io(fd, DirectIo::on)), -EINVAL);
  EXPECT_EQ(fcntl(fd, F_GETFL) & O_DIRECT, 0) << "an injected failure is not forwarded";
  EXPECT_EQ(run(Request::close(fd)), 0);
  EXPECT_EQ(log_->counts.injected_of(FaultKind::enomem), 1u);
  EXPECT_EQ(log_->counts.hit_of(FaultKind::einval), 1u);
  EXPECT_EQ(log_->counts.hard_hits, 0u) << "refusals the engine falls back from";
  EXPECT_TRUE(schedule.draws(FaultKind::enomem));
  EXPECT_FALSE(FaultSchedule{}.draws(FaultKind::enomem));
}

TEST_F(FaultInjectionOps, madvise_is_keyed_by_the_mapped_file_and_offset_and_unmap_never_fails) {
  FaultSchedule schedule;
  schedule.eio = 1.0;
  schedule.eio_ops = op_bit(Op::madvise) | op_bit(Op::unmap) | op_bit(Op::close);
  make(schedule);
  write_file(dir_ / "f", random_bytes(8192, 1));
  const int fd = open_path(dir_ / "f", O_RDONLY);
  const int64_t mapping = run(Request::map_file(fd, 8192, 0));
  ASSERT_GT(mapping, 0);
  EXPECT_EQ(run(Request::madvise(mapped_address(mapping) + 4096, 4096, MADV_DONTNEED)), -EIO);
  EXPECT_EQ(run(Request::unmap(mapped_address(mapping), 8192)), 0);
  EXPECT_EQ(run(Request::close(fd)), 0);
  EXPECT_EQ(injected(), std::vector<std::string>{"eio madvise '<0>/f mapping +4096' offset=0 #0"});
}

}  // namespace
}  // namespace ringio::test
