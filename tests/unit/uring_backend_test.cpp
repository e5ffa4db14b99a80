// The io_uring path as it really runs on this machine: selection, fixed
// buffers, metadata through the ring, teardown order, and RLIMIT_MEMLOCK
// without CAP_IPC_LOCK.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "ringio/backend.hpp"
#include "ringio/kernel_support.hpp"
#include "support/test_util.hpp"
#include "uring/uring_backend.hpp"

namespace ringio {
namespace {

using test::TempDir;

using test::uring_required;


TEST(UringSelection, auto_chooses_uring_when_raw_io_uring_setup_works) {
  REQUIRE_URING_OR_SKIP();
  ASSERT_EQ(std::getenv("RINGIO_DISABLE_IOURING"), nullptr)
      << "unset RINGIO_DISABLE_IOURING to run this test";
  auto selection = make_backend(EngineChoice::automatic, IoConfig::defaults());
  ASSERT_TRUE(selection.ok()) << selection.error().message();
  EXPECT_EQ(selection->kind, BackendKind::uring) << "auto chose posix: " << selection->reason;
  EXPECT_EQ(selection->backend->kind(), BackendKind::uring);
  EXPECT_EQ(available_backends().front(), BackendKind::uring);
  EXPECT_EQ(available_backends().back(), BackendKind::posix);
}

TEST(UringSelection, environment_switch_selects_posix_and_says_why) {
  setenv("RINGIO_DISABLE_IOURING", "1", 1);
  auto automatic = make_backend(EngineChoice::automatic, IoConfig::defaults());
  auto explicit_uring = make_backend(EngineChoice::uring, IoConfig::defaults());
  const auto kinds = available_backends();
  unsetenv("RINGIO_DISABLE_IOURING");
  ASSERT_TRUE(automatic.ok());
  EXPECT_EQ(automatic->kind, BackendKind::posix);
  EXPECT_NE(automatic->reason.find("RINGIO_DISABLE_IOURING=1"), std::string::npos)
      << automatic->reason;
  ASSERT_FALSE(explicit_uring.ok()) << "an explicit uring request that cannot run is an error";
  EXPECT_NE(explicit_uring.error().message().find("RINGIO_DISABLE_IOURING"), std::string::npos);
  EXPECT_EQ(kinds, std::vector<BackendKind>{BackendKind::posix});
}

TEST(UringSelection, invalid_config_is_rejected_before_any_ring) {
  IoConfig config = IoConfig::defaults();
  config.buffer_size_bytes = 3000;
  auto selection = make_backend(EngineChoice::automatic, config);
  ASSERT_FALSE(selection.ok());
  EXPECT_NE(selection.error().message().find("buffer_size_bytes"), std::string::npos);
}

TEST(UringProbe, records_what_the_kernel_offers) {
  REQUIRE_URING_OR_SKIP();
  const KernelSupport& support = kernel_support();
  ASSERT_TRUE(support.ring_available());
  EXPECT_TRUE(support.probe_ok);
  EXPECT_EQ(support.missing_required_opcodes(), "");
  EXPECT_TRUE(support.has_opcode(IORING_OP_READ_FIXED));
  EXPECT_GE(support.buffer_cap, 1024u);
  // The cap is a probed fact: the kernel takes a sparse table of that size
  // and refuses one slot more.
  io_uring ring;
  ASSERT_EQ(io_uring_queue_init(4, &ring, 0), 0);
  if (support.sparse_buffers) {
    EXPECT_EQ(io_uring_register_buffers_sparse(&ring, support.buffer_cap), 0);
    io_uring_unregister_buffers(&ring);
    EXPECT_EQ(io_uring_register_buffers_sparse(&ring, support.buffer_cap + 1), -EINVAL);
  }
  io_uring_queue_exit(&ring);
}

class UringBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_URING_OR_SKIP();
    auto selection = make_backend(EngineChoice::uring, IoConfig::defaults());
    ASSERT_TRUE(selection.ok()) << selection.error().message();
    backend_ = std::move(selection->backend);
  }
  std::unique_ptr<Backend> backend_;
  TempDir dir_;
};

TEST_F(UringBackendTest, fixed_buffer_read_and_write_really_run) {
  RegisteredBufferGroup& pool = backend_->buffers();
  ASSERT_TRUE(pool.registered()) << pool.stats().registration_note;
  const auto bytes = test::random_bytes(200000, 11);
  test::write_file(dir_ / "in", bytes);
  const int in = open((dir_ / "in").c_str(), O_RDONLY | O_CLOEXEC);
  const int out = open((dir_ / "out").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(in, 0);
  ASSERT_GE(out, 0);
  const OpCounts before = backend_->op_counts();
  BufferSlot slot = pool.checkout();
  ASSERT_TRUE(slot);
  ASSERT_GE(slot.fixed_index(), 0);
  uint64_t chunks = 0;
  for (uint64_t offset = 0; offset < bytes.size(); offset += slot.size(), ++chunks) {
    auto got = read_full(*backend_, in, slot.data(), slot.size(), offset, slot.fixed_index());
    ASSERT_TRUE(got.ok());
    ASSERT_TRUE(write_full(*backend_, out, slot.data(), *got, offset, slot.fixed_index()).ok());
  }
  slot.release();
  close(in);
  close(out);
  EXPECT_EQ(test::read_file(dir_ / "out"), bytes);
  const OpCounts after = backend_->op_counts();
  EXPECT_GE(after.fixed_reads - before.fixed_reads, chunks);
  EXPECT_GE(after.fixed_writes - before.fixed_writes, chunks);
  EXPECT_EQ(after.plain_reads, before.plain_reads);
  EXPECT_EQ(after.plain_writes, before.plain_writes);
}

TEST_F(UringBackendTest, metadata_goes_through_the_ring_where_it_has_an_opcode) {
  const OpCounts before = backend_->op_counts();
  const int64_t fd = run_one(*backend_, Request::openat(AT_FDCWD, dir_.path().c_str(), O_DIRECTORY | O_RDONLY));
  ASSERT_GE(fd, 0);
  struct statx stx {};
  EXPECT_EQ(run_one(*backend_, Request::statx(int(fd), "", AT_EMPTY_PATH, STATX_BASIC_STATS, &stx)), 0);
  EXPECT_EQ(run_one(*backend_, Request::mkdirat(int(fd), "d", 0755)), 0);
  EXPECT_EQ(run_one(*backend_, Request::fchmod(int(fd), 0755)), 0);  // no opcode: inline
  EXPECT_EQ(run_one(*backend_, Request::close(int(fd))), 0);
  const OpCounts after = backend_->op_counts();
  EXPECT_EQ(after.ring_metadata_ops - before.ring_metadata_ops, 4u);
  EXPECT_EQ(after.inline_metadata_ops - before.inline_metadata_ops, 1u);
  EXPECT_EQ(after.by_op[size_t(Op::statx)] - before.by_op[size_t(Op::statx)], 1u);
}

TEST_F(UringBackendTest, resize_while_fixed_reads_are_in_flight_keeps_data_correct) {
  RegisteredBufferGroup& pool = backend_->buffers();
  ASSERT_TRUE(pool.registered());
  const auto bytes = test::random_bytes(16 * 65536, 5);
  test::write_file(dir_ / "in", bytes);
  const int in = open((dir_ / "in").c_str(), O_RDONLY | O_CLOEXEC);
  std::vector<BufferSlot> slots;
  for (int i = 0; i < 4; ++i) slots.push_back(pool.checkout());
  for (uint32_t i = 0; i < slots.size(); ++i) {
    Request read = Request::read(in, slots[i].data(), 65536, i * 65536ull, slots[i].fixed_index());
    read.user_data = i;
    ASSERT_TRUE(backend_->prepare(read));
  }
  Completion none[1];
  ASSERT_GE(backend_->submit_and_reap({none, 0}, 0), 0);
  // Grow and shrink the table while those reads may still be in flight.
  EXPECT_EQ(pool.resize_to(32), 32u);
  EXPECT_EQ(pool.resize_to(6), 6u);
  uint32_t completed = 0;
  while (completed < slots.size()) {
    Completion completions[8];
    const int n = backend_->submit_and_reap(completions, 1);
    ASSERT_GT(n, 0);
    for (int i = 0; i < n; ++i) {
      EXPECT_EQ(completions[i].result, 65536);
      const auto index = completions[i].user_data;
      EXPECT_EQ(std::memcmp(slots[index].data(), bytes.data() + index * 65536, 65536), 0);
      ++completed;
    }
  }
  close(in);
  EXPECT_EQ(pool.stats().growths, 1u);
  EXPECT_EQ(pool.stats().shrinks, 1u);
  EXPECT_EQ(pool.stats().quiesces, 0u);
}

// The ring (and the kernel's registration with it) must be gone before the
// group frees buffer memory: the deallocator checks that the ring's fd is
// already closed each time it is called.
TEST(UringTeardown, ring_is_released_before_buffer_memory) {
  REQUIRE_URING_OR_SKIP();
  struct Observations {
    int ring_fd = -1;
    int frees = 0;
    int frees_with_ring_open = 0;
  } seen;
  BufferAllocator allocator = BufferAllocator::anonymous_pages();
  auto base_free = allocator.deallocate;
  allocator.deallocate = [&seen, base_free](void* memory, size_t bytes) {
    ++seen.frees;
    if (fcntl(seen.ring_fd, F_GETFD) != -1) ++seen.frees_with_ring_open;
    base_free(memory, bytes);
  };
  {
    auto backend = uring::UringBackend::create(IoConfig::defaults(), allocator);
    ASSERT_TRUE(backend.ok()) << backend.error().message();
    ASSERT_TRUE((*backend)->buffers().registered());
    seen.ring_fd = (*backend)->ring_fd();
    ASSERT_NE(fcntl(seen.ring_fd, F_GETFD), -1);
  }
  EXPECT_EQ(seen.frees, 8) << "every default buffer freed once";
  EXPECT_EQ(seen.frees_with_ring_open, 0);
}

// ---- RLIMIT_MEMLOCK without CAP_IPC_LOCK ----
// The demo runs in a child with a lowered limit and CAP_IPC_LOCK dropped from
// its inheritable and bounding sets (root would ignore the limit otherwise).

struct DemoRun {
  test::ChildResult child;
  std::string stats_line;  // the RINGIO_STATS teardown line
};

DemoRun run_demo_with_memlock(uint64_t limit_bytes, const std::string& file) {
  DemoRun run;
  // Pinned memory of an earlier child is released asynchronously after its
  // ring closes; a ring refused for that reason is retried.
  for (int attempt = 0; attempt < 5; ++attempt) {
    run.child = test::run_command(
        {"prlimit", "--memlock=" + std::to_string(limit_bytes), "setpriv", "--inh-caps=-ipc_lock",
         "--bounding-set=-ipc_lock", RINGIO_DEMO_PATH, file},
        {"RINGIO_STATS=1"});
    if (limit_bytes == 0 || run.child.output.find("Cannot allocate memory") == std::string::npos)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  // The teardown line is the one that names the backend.
  const auto backend_field = run.child.output.find(" backend=");
  if (backend_field != std::string::npos) {
    const auto begin = run.child.output.rfind('\n', backend_field);
    const auto start = begin == std::string::npos ? 0 : begin + 1;
    run.stats_line = run.child.output.substr(start, run.child.output.find('\n', start) - start);
  }
  return run;
}

bool memlock_tools_present() {
  return test::run_command({"setpriv", "--version"}).exit_code == 0 &&
         test::run_command({"prlimit", "--version"}).exit_code == 0;
}

class MemlockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_URING_OR_SKIP();
    if (!memlock_tools_present()) GTEST_SKIP() << "setpriv/prlimit (util-linux) not installed";
    test::write_file(dir_ / "data", test::random_bytes(1 << 20, 9));
  }
  TempDir dir_;
};

TEST_F(MemlockTest, limit_64k_runs_unregistered_and_says_why) {
  const DemoRun run = run_demo_with_memlock(64 * 1024, dir_ / "data");
  ASSERT_EQ(run.child.exit_code, 0) << run.child.output;
  EXPECT_NE(run.child.output.find("backend: uring"), std::string::npos) << run.child.output;
  EXPECT_NE(run.child.output.find("1048576 bytes"), std::string::npos) << "the read completed";
  EXPECT_NE(run.stats_line.find("registered=no"), std::string::npos) << run.stats_line;
  EXPECT_NE(run.stats_line.find("RLIMIT_MEMLOCK 65536"), std::string::npos) << run.stats_line;
  EXPECT_NE(run.stats_line.find("fixed_reads=0"), std::string::npos) << run.stats_line;
}

TEST_F(MemlockTest, limit_256k_caps_the_registered_pool) {
  const DemoRun run = run_demo_with_memlock(256 * 1024, dir_ / "data");
  ASSERT_EQ(run.child.exit_code, 0) << run.child.output;
  EXPECT_NE(run.child.output.find("backend: uring"), std::string::npos) << run.child.output;
  EXPECT_NE(run.stats_line.find("registered=yes"), std::string::npos) << run.stats_line;
  EXPECT_NE(run.stats_line.find("pool capped"), std::string::npos) << run.stats_line;
  // 256 KiB less the ring's own pages leaves room for 3 buffers of 64 KiB.
  EXPECT_NE(run.stats_line.find("buffers=3 "), std::string::npos) << run.stats_line;
  EXPECT_EQ(run.stats_line.find("fixed_reads=0 "), std::string::npos) << run.stats_line;
}

TEST_F(MemlockTest, limit_zero_falls_back_to_posix_and_says_so) {
  const DemoRun run = run_demo_with_memlock(0, dir_ / "data");
  ASSERT_EQ(run.child.exit_code, 0) << run.child.output;
  EXPECT_NE(run.child.output.find("backend: posix"), std::string::npos) << run.child.output;
  EXPECT_NE(run.child.output.find("RLIMIT_MEMLOCK"), std::string::npos) << run.child.output;
  EXPECT_NE(run.child.output.find("1048576 bytes"), std::string::npos);
  EXPECT_NE(run.stats_line.find("backend=posix"), std::string::npos) << run.stats_line;
}

}  // namespace
}  // namespace ringio
