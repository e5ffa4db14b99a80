// Small helpers shared by the tests: a scratch directory that removes itself,
// whole-file read/write, deterministic random bytes, and a child-process
// runner that captures output.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <cstring>

#include "ringio/backend.hpp"

namespace ringio::test {

// Removes a tree, making its directories writable first (tests leave
// read-only directories behind). Errors are ignored.
void remove_tree(const std::string& path);

// A new directory, removed with everything in it.
class TempDir {
 public:
  // Under $RINGIO_TEST_DIR, else /var/tmp (a disk filesystem, not tmpfs).
  TempDir();
  explicit TempDir(const std::string& base);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::vector<uint8_t> random_bytes(size_t size, uint64_t seed);
void write_file(const std::string& path, const std::vector<uint8_t>& bytes);
std::vector<uint8_t> read_file(const std::string& path);

struct ChildResult {
  int exit_code = -1;  // -1: killed by a signal
  std::string output;  // stdout and stderr together
};
// In a forked child: execvp(argv), or report why not on stderr and _exit(127).
[[noreturn]] void exec_argv(const std::vector<std::string>& argv);

// Runs argv (argv[0] looked up in PATH) and captures its output.
ChildResult run_command(const std::vector<std::string>& argv,
                        const std::vector<std::string>& extra_env = {});

// "uring" / "posix" backends for parameterized suites; uring is skipped by
// the caller when the machine cannot run it.
BackendSelection make_test_backend(EngineChoice choice, IoConfig config = IoConfig::defaults());

// True when a raw io_uring_setup(2) succeeds, independent of ringio's probe.
bool raw_io_uring_setup_works(int* error_out = nullptr);

// Runs tests/support/memlock_probe_main.cpp's MODE ("ring-fits" or "settle")
// under RLIMIT_MEMLOCK = limit_bytes without CAP_IPC_LOCK; true when it
// reports the state within timeout_ms.
bool memlock_probe(const std::string& mode, uint64_t limit_bytes, int timeout_ms);
// Waits (up to 10 s) until nothing is charged to this user's pinned-memory
// account: rings closed by earlier tests are released asynchronously, and a
// test that measures RLIMIT_MEMLOCK must not see them.
bool wait_for_settled_pinned_memory();

// RINGIO_REQUIRE_URING=1 (set by CI): a test that would skip for lack of
// io_uring fails instead.
bool uring_required();

}  // namespace ringio::test

// Skips (or fails, under RINGIO_REQUIRE_URING=1) when io_uring cannot run.
#define REQUIRE_URING_OR_SKIP()                                                            \
  do {                                                                                     \
    int setup_errno = 0;                                                                   \
    if (!::ringio::test::raw_io_uring_setup_works(&setup_errno)) {                         \
      if (::ringio::test::uring_required())                                                \
        FAIL() << "RINGIO_REQUIRE_URING=1 but io_uring_setup fails: " << strerror(setup_errno); \
      GTEST_SKIP() << "io_uring_setup fails here: " << strerror(setup_errno);              \
    }                                                                                      \
  } while (0)
