// The fixture of the backend contract suites: one backend per parameter
// (uring, posix), a scratch directory on a disk filesystem, and run().
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>

#include "ringio/backend.hpp"
#include "support/test_util.hpp"

namespace ringio::test {

class BackendFixture : public ::testing::TestWithParam<EngineChoice> {
 protected:
  void SetUp() override {
    auto selection = make_backend(GetParam(), IoConfig::defaults());
    if (!selection) {
      if (GetParam() == EngineChoice::uring && !uring_required())
        GTEST_SKIP() << "uring backend unavailable here: " << selection.error().message();
      FAIL() << selection.error().message();
    }
    backend_ = std::move(selection->backend);
  }

  int64_t run(Request request) { return run_one(*backend_, request); }
  int open_file(const std::string& path, int flags, mode_t mode = 0644) {
    const int64_t fd = run(Request::openat(AT_FDCWD, path.c_str(), flags | O_CLOEXEC, mode));
    EXPECT_GE(fd, 0) << path << ": " << std::strerror(int(-fd));
    return static_cast<int>(fd);
  }

  std::unique_ptr<Backend> backend_;
  TempDir dir_;  // $RINGIO_TEST_DIR, else /var/tmp: a disk filesystem
};

}  // namespace ringio::test
