// --verify against a copy that reads back wrong: a decorator flips a byte in
// what every read of a destination file returns (as a device that lost a
// write would), in process, on both backends. Every file must fail
// verification, be reported, and never reach its final name; without the
// flip the same copy passes. This is the ordinary fault test of verify; the
// integration suite keeps one that changes a real loop device under the
// page cache (RingcpVerify.rereads_the_destination_from_the_device).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <memory>
#include <string>
#include <unordered_map>

#include "ringio/copy.hpp"
#include "support/test_util.hpp"

namespace ringio::test {
namespace {

// Flips byte 100 of the first read (offset 0) of every file under `root`.
class CorruptingReadsBackend final : public Backend {
 public:
  CorruptingReadsBackend(std::unique_ptr<Backend> inner, std::string root, bool corrupt)
      : inner_(std::move(inner)), root_(std::move(root)), corrupt_(corrupt) {}

  BackendKind kind() const override { return inner_->kind(); }
  bool prepare(const Request& request) override {
    if (!inner_->prepare(request)) return false;
    if (request.op == Op::read && request.offset == 0 && request.length > 100 && under_root(request.fd))
      destination_reads_[request.user_data] = static_cast<unsigned char*>(request.buffer);
    return true;
  }
  int submit_and_reap(std::span<Completion> out, unsigned min_completions) override {
    const int n = inner_->submit_and_reap(out, min_completions);
    for (int i = 0; i < n; ++i) {
      auto it = destination_reads_.find(out[size_t(i)].user_data);
      if (it == destination_reads_.end()) continue;
      ++reads_seen;
      if (corrupt_ && out[size_t(i)].result > 100) it->second[100] ^= 0xff;
      destination_reads_.erase(it);
    }
    return n;
  }
  uint32_t in_flight() const override { return inner_->in_flight(); }
  int64_t execute_now(const Request& request) override { return inner_->execute_now(request); }
  RegisteredBufferGroup& buffers() override { return inner_->buffers(); }
  OpCounts op_counts() const override { return inner_->op_counts(); }
  std::string describe() const override { return inner_->describe(); }

  static inline uint64_t reads_seen = 0;

 private:
  bool under_root(int fd) const {
    char link[PATH_MAX];
    const ssize_t n = readlink(("/proc/self/fd/" + std::to_string(fd)).c_str(), link, sizeof link - 1);
    return n > 0 && std::string(link, size_t(n)).rfind(root_ + "/", 0) == 0;
  }

  std::unique_ptr<Backend> inner_;
  std::string root_;
  bool corrupt_;
  std::unordered_map<uint64_t, unsigned char*> destination_reads_;
};

class VerifyFault : public ::testing::TestWithParam<EngineChoice> {
 protected:
  struct Outcome {
    Result<CopyReport> report = CopyReport{};
    std::vector<std::string> errors;
  };
  Outcome copy(const std::string& src, const std::string& dst, bool corrupt) {
    CopyOptions options;
    options.recursive = true;
    options.verify = true;
    options.engine = GetParam();
    Outcome outcome;
    CopyCallbacks callbacks;
    callbacks.report_error = [&](const std::string& message) { outcome.errors.push_back(message); };
    callbacks.decorate_backend = [dst, corrupt](std::unique_ptr<Backend> inner) -> std::unique_ptr<Backend> {
      return std::make_unique<CorruptingReadsBackend>(std::move(inner), dst, corrupt);
    };
    CorruptingReadsBackend::reads_seen = 0;
    outcome.report = run_copy({{src, dst}}, options, callbacks);
    return outcome;
  }
};

TEST_P(VerifyFault, a_copy_that_reads_back_wrong_is_reported_and_never_published) {
  if (GetParam() == EngineChoice::uring && available_backends().front() != BackendKind::uring)
    GTEST_SKIP() << "io_uring cannot be set up here";
  TempDir dir;
  const std::string src = dir / "src";
  mkdir(src.c_str(), 0755);
  // One buffer, several buffers, and a cached file of 6 MiB (written from a
  // mapping or copied in the kernel, then verified through the pool).
  const std::vector<std::pair<std::string, size_t>> files = {{"small", 5000}, {"medium", 700 * 1024}, {"large", 6 << 20}};
  for (const auto& [name, size] : files) write_file(src + "/" + name, random_bytes(size, size));

  const Outcome good = copy(src, dir / "good", false);
  ASSERT_TRUE(good.report) << good.report.error().message();
  EXPECT_TRUE(good.errors.empty()) << good.errors.front();
  EXPECT_EQ(good.report->files_copied, files.size());
  EXPECT_GE(CorruptingReadsBackend::reads_seen, files.size()) << "verify never read the copies back";
  for (const auto& [name, size] : files) EXPECT_EQ(read_file(dir / ("good/" + name)), read_file(src + "/" + name)) << name;

  const std::string bad = dir / "bad";
  const Outcome corrupted = copy(src, bad, true);
  ASSERT_TRUE(corrupted.report) << corrupted.report.error().message();
  EXPECT_EQ(corrupted.report->errors, files.size());
  EXPECT_EQ(corrupted.report->files_copied, 0u);
  for (const auto& [name, size] : files) {
    struct stat st {};
    EXPECT_NE(lstat((bad + "/" + name).c_str(), &st), 0) << name << " was published although it failed verification";
    bool said = false;
    for (const std::string& message : corrupted.errors)
      said |= message.find("verification failed") != std::string::npos && message.find(name) != std::string::npos;
    EXPECT_TRUE(said) << name << ": no verification failure reported";
  }
}

std::string engine_name(const ::testing::TestParamInfo<EngineChoice>& param) {
  return param.param == EngineChoice::uring ? "uring" : "posix";
}

INSTANTIATE_TEST_SUITE_P(Engines, VerifyFault, ::testing::Values(EngineChoice::uring, EngineChoice::posix), engine_name);

}  // namespace
}  // namespace ringio::test
