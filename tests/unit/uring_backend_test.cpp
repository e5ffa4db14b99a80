// The io_uring path as it really runs on this machine: selection, fixed
// buffers, metadata through the ring, teardown order, and RLIMIT_MEMLOCK
// without CAP_IPC_LOCK.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
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

// ---- failures at ring setup ----

// A ring the kernel refuses (more than 32768 entries is EINVAL) must leave
// the process as it was: in particular, no io_uring_queue_exit() on a ring
// that was never set up, which would close descriptor 0.
TEST(UringSetupFailure, refused_ring_is_an_error_value_and_closes_no_descriptor) {
  REQUIRE_URING_OR_SKIP();
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  const int saved_stdin = dup(0);
  ASSERT_GE(saved_stdin, 0);
  ASSERT_EQ(dup2(pipe_fds[0], 0), 0);  // a descriptor 0 we can tell apart
  IoConfig config = IoConfig::defaults();
  config.sq_entries = 65536;  // beyond IORING_MAX_ENTRIES; validate() is not asked
  {
    auto ring = uring::Ring::create(config, kernel_support());
    EXPECT_FALSE(ring.ok());
    auto backend = uring::UringBackend::create(config, BufferAllocator::anonymous_pages());
    ASSERT_FALSE(backend.ok());
    EXPECT_NE(backend.error().message().find("io_uring_setup"), std::string::npos)
        << backend.error().message();
  }
  const bool stdin_open = fcntl(0, F_GETFD) != -1;
  struct stat now {}, pipe_end {};
  fstat(0, &now);
  fstat(pipe_fds[0], &pipe_end);
  dup2(saved_stdin, 0);
  close(saved_stdin);
  close(pipe_fds[0]);
  close(pipe_fds[1]);
  EXPECT_TRUE(stdin_open) << "descriptor 0 was closed by a failed ring setup";
  EXPECT_EQ(now.st_ino, pipe_end.st_ino) << "descriptor 0 is no longer what the program made it";
}

// ---- teardown with requests still in flight ----

// In a forked child, so that a teardown that never returns fails the test
// instead of hanging it. The child's exit code says what it saw.
enum TeardownVerdict : int {
  kTeardownClean = 0,
  kTeardownNoBackend = 10,
  kTeardownFreedWhileInFlight = 11,
  kTeardownPipeByteTaken = 12,
  kTeardownNothingFreed = 13,  // the memory was abandoned: the cancel did not work
  kTeardownSlow = 14,          // more than 5 s: the cancel did not work, the time limit did
};

void on_signal(int) {}

int abandon_pipe_read_and_tear_down(bool signal_storm) {
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) return kTeardownNoBackend;
  struct Seen {
    uring::UringBackend* backend = nullptr;
    uint32_t in_flight_at_free = 0;
    bool byte_taken = false;
    int frees = 0;
  } seen;
  BufferAllocator allocator = BufferAllocator::anonymous_pages();
  auto base_free = allocator.deallocate;
  allocator.deallocate = [&seen, &pipe_fds, base_free](void* memory, size_t bytes) {
    ++seen.frees;
    // Still in flight here means the kernel may write into this memory.
    seen.in_flight_at_free = std::max(seen.in_flight_at_free, seen.backend->in_flight());
    // A read the kernel still holds would take this byte.
    if (write(pipe_fds[1], "x", 1) == 1) {
      int queued = 0;
      ioctl(pipe_fds[0], FIONREAD, &queued);
      if (queued == 0) seen.byte_taken = true;
      char drain;
      if (queued > 0) (void)!read(pipe_fds[0], &drain, 1);
    }
    base_free(memory, bytes);
  };
  auto created = uring::UringBackend::create(IoConfig::defaults(), allocator);
  if (!created.ok()) return kTeardownNoBackend;
  std::unique_ptr<uring::UringBackend> backend = std::move(created.value());
  seen.backend = backend.get();
  {
    // A fixed read from a pipe nobody writes to: it never completes by itself.
    BufferSlot slot = backend->buffers().checkout();
    if (!slot || !backend->prepare(Request::read(pipe_fds[0], slot.data(), 4096, 0, slot.fixed_index())))
      return kTeardownNoBackend;
    Completion none[1];
    backend->submit_and_reap({none, 0}, 0);
  }  // the caller gives up on it
  std::atomic<bool> tearing_down{true};
  std::thread storm;
  if (signal_storm) {
    struct sigaction action {};
    action.sa_handler = on_signal;  // no SA_RESTART: waits end in EINTR
    sigaction(SIGUSR1, &action, nullptr);
    const pthread_t owner = pthread_self();
    storm = std::thread([&tearing_down, owner] {
      while (tearing_down.load()) {
        pthread_kill(owner, SIGUSR1);
        std::this_thread::sleep_for(std::chrono::microseconds(500));
      }
    });
  }
  const auto started = std::chrono::steady_clock::now();
  backend.reset();
  const auto took = std::chrono::steady_clock::now() - started;
  tearing_down = false;
  if (storm.joinable()) storm.join();
  if (seen.in_flight_at_free != 0) return kTeardownFreedWhileInFlight;
  if (seen.byte_taken) return kTeardownPipeByteTaken;
  if (seen.frees == 0) return kTeardownNothingFreed;
  if (took > std::chrono::seconds(5)) return kTeardownSlow;
  return kTeardownClean;
}

int in_child_with_deadline(int (*scenario)(bool), bool argument, int seconds) {
  const pid_t pid = fork();
  if (pid == 0) _exit(scenario(argument));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;  // did not finish
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -2;
}

class UringTeardownDrain : public ::testing::TestWithParam<bool> {};

TEST_P(UringTeardownDrain, abandoned_request_is_cancelled_before_its_buffer_is_freed) {
  REQUIRE_URING_OR_SKIP();
  const int verdict = in_child_with_deadline(abandon_pipe_read_and_tear_down, GetParam(), 20);
  EXPECT_NE(verdict, -1) << "the teardown waited forever for a read that never completes";
  EXPECT_NE(verdict, kTeardownFreedWhileInFlight) << "buffer memory was freed with the read still in flight";
  EXPECT_NE(verdict, kTeardownPipeByteTaken) << "the kernel still held the read when the buffer was freed";
  EXPECT_NE(verdict, kTeardownNothingFreed) << "the read was never cancelled: its memory was abandoned";
  EXPECT_NE(verdict, kTeardownSlow) << "the read was not cancelled: the teardown waited out its time limit";
  EXPECT_EQ(verdict, kTeardownClean);
}

INSTANTIATE_TEST_SUITE_P(Signals, UringTeardownDrain, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& param_info) {
                           return std::string(param_info.param ? "under_a_signal_storm" : "quiet");
                         });

// ---- the kernel refusing new requests (EAGAIN, EBUSY from io_uring_enter) ----

int g_refusals_left = 0;
int g_refusal = 0;
int refusing_submit(uring::UringBackend& backend, unsigned wait_for) {
  if (g_refusals_left > 0) {
    --g_refusals_left;
    return g_refusal;
  }
  return uring::UringBackend::submit_to_kernel(backend, wait_for);
}

std::unique_ptr<uring::UringBackend> refusing_backend(int refusal, int times) {
  auto created = uring::UringBackend::create(IoConfig::defaults(), BufferAllocator::anonymous_pages());
  if (!created.ok()) return nullptr;
  g_refusal = refusal;
  g_refusals_left = times;
  created.value()->set_submit_for_testing(refusing_submit);
  return std::move(created.value());
}

TEST(UringSubmitRefused, eagain_with_nothing_in_the_kernel_backs_off) {
  REQUIRE_URING_OR_SKIP();
  auto backend = refusing_backend(-EAGAIN, 5);
  ASSERT_NE(backend, nullptr);
  ASSERT_TRUE(backend->prepare(Request::nop()));
  const auto started = std::chrono::steady_clock::now();
  int calls = 0, n = 0;
  Completion out[4];
  while (n == 0 && calls < 1000) {
    n = backend->submit_and_reap(out, 1);
    ASSERT_GE(n, 0) << strerror(-n);
    ++calls;
  }
  const auto elapsed = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(n, 1) << "the NOP completed once the kernel took it";
  EXPECT_EQ(calls, 6) << "five refusals, then the submission";
  // A pause of at least 1 ms after each refusal (1, 2, 4, 8, 16 ms), not a spin.
  EXPECT_GE(elapsed, std::chrono::milliseconds(5));
}

TEST(UringSubmitRefused, ebusy_waits_for_a_request_the_kernel_already_has) {
  REQUIRE_URING_OR_SKIP();
  auto backend = refusing_backend(-EBUSY, 0);
  ASSERT_NE(backend, nullptr);
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  char byte = 0;
  Request read = Request::read(pipe_fds[0], &byte, 1, 0, -1);
  read.user_data = 7;
  ASSERT_TRUE(backend->prepare(read));
  Completion out[4];
  ASSERT_EQ(backend->submit_and_reap(out, 0), 0);  // the read is in the kernel now
  ASSERT_TRUE(backend->prepare(Request::nop()));
  g_refusals_left = 1'000'000;  // the kernel refuses the NOP until told otherwise
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    (void)!write(pipe_fds[1], "y", 1);
  });
  // Each refused call waits for the read (for as long as its back-off
  // pause, which grows) instead of returning at once: a handful of calls
  // in those 30 ms, not a spin.
  int calls = 0, n = 0;
  while (n == 0 && calls < 100'000) {
    n = backend->submit_and_reap(out, 1);
    ++calls;
  }
  writer.join();
  EXPECT_LE(calls, 12) << "submit_and_reap spun while the kernel refused";
  ASSERT_EQ(n, 1);
  EXPECT_EQ(out[0].user_data, 7u);
  EXPECT_EQ(out[0].result, 1);
  // The NOP was kept and goes in once the kernel takes it.
  g_refusals_left = 0;
  int got = 0;
  for (int i = 0; i < 100 && got == 0; ++i) got = backend->submit_and_reap(out, 1);
  EXPECT_EQ(got, 1);
  close(pipe_fds[0]);
  close(pipe_fds[1]);
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
  // ring closes: wait until the user's account is clear, then run once.
  if (!test::wait_for_settled_pinned_memory()) {
    run.child.output = "the user's pinned memory did not settle within 10 s";
    return run;
  }
  run.child = test::run_command(
      {"prlimit", "--memlock=" + std::to_string(limit_bytes), "setpriv", "--inh-caps=-ipc_lock",
       "--bounding-set=-ipc_lock", RINGIO_DEMO_PATH, file},
      {"RINGIO_STATS=1"});
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
