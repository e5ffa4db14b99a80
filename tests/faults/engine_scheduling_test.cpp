// How the copy engine schedules work around the buffer pool and the kernel:
// parked files resume as soon as a buffer is free, also while a shrink
// still has retired buffers checked out; a request the kernel refuses with
// EAGAIN is retried after a growing pause, never in a loop that spins a CPU.
// Each test wraps the real backend in a decorator that shapes what the
// engine sees (run_copy's decorate_backend).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <deque>
#include <memory>
#include <optional>
#include <ostream>
#include <unordered_map>
#include <unordered_set>

#include "ringio/copy.hpp"
#include "support/fault_injection.hpp"
#include "support/test_util.hpp"

namespace ringio {
// Readable parameter values in test names and failure messages.
static void PrintTo(EngineChoice engine, std::ostream* out) {
  *out << (engine == EngineChoice::uring ? "uring" : "posix");
}
}  // namespace ringio

namespace ringio::test {
namespace {

using Clock = std::chrono::steady_clock;

// Forwards everything to the backend it wraps.
class ForwardingBackend : public Backend {
 public:
  explicit ForwardingBackend(std::unique_ptr<Backend> inner) : inner_(std::move(inner)) {}
  BackendKind kind() const override { return inner_->kind(); }
  bool prepare(const Request& request) override { return inner_->prepare(request); }
  int submit_and_reap(std::span<Completion> out, unsigned min_completions) override {
    return inner_->submit_and_reap(out, min_completions);
  }
  uint32_t in_flight() const override { return inner_->in_flight(); }
  int64_t execute_now(const Request& request) override { return inner_->execute_now(request); }
  RegisteredBufferGroup& buffers() override { return inner_->buffers(); }
  OpCounts op_counts() const override { return inner_->op_counts(); }
  std::string describe() const override { return inner_->describe(); }

 protected:
  std::unique_ptr<Backend> inner_;
};

CopyOptions plain_copy_options(EngineChoice engine) {
  CopyOptions options;
  options.recursive = true;
  options.symlinks = SymlinkMode::no_dereference;
  options.engine = engine;
  options.io.adaptive_buffers = AdaptiveBuffers::off;  // only the test resizes
  return options;
}

void expect_identical_files(const std::string& src, const std::string& dst, int count) {
  for (int i = 0; i < count; ++i) {
    const std::string name = "/f" + std::to_string(i);
    EXPECT_EQ(read_file(src + name), read_file(dst + name)) << name;
  }
}

// ------------------------------------------------ parked work and shrinks --

// Once every buffer is checked out, shrinks the pool to kKept buffers: the
// others are retired but still in use. The completions of the requests on
// retired buffers are then held back for as long as the engine has anything
// else to wait for. An engine that resumes parked files on the kept buffers
// finishes every other file first; one that waits for the retired buffers to
// come back (in_use >= buffer_count) gets its next reads only after a held
// completion had to be released.
struct ShrinkObservation {
  bool shrunk = false;
  uint64_t reads_after_a_forced_release = 0;
};

class ShrinkingBackend final : public ForwardingBackend {
 public:
  static constexpr uint32_t kKept = 2;
  ShrinkingBackend(std::unique_ptr<Backend> inner, std::shared_ptr<ShrinkObservation> seen)
      : ForwardingBackend(std::move(inner)), seen_(std::move(seen)) {}

  bool prepare(const Request& request) override {
    if (!inner_->prepare(request)) return false;
    const bool data = request.op == Op::read || request.op == Op::write;
    if (data) buffer_of_[request.user_data] = request.buffer_index;
    if (request.op == Op::read && released_any_) ++seen_->reads_after_a_forced_release;
    return true;
  }

  int submit_and_reap(std::span<Completion> out, unsigned min_completions) override {
    RegisteredBufferGroup& pool = inner_->buffers();
    if (!seen_->shrunk && pool.buffer_count() > kKept && pool.in_use() == pool.buffer_count()) {
      pool.resize_to(kKept);
      seen_->shrunk = true;
      for (const auto& [user_data, index] : buffer_of_)
        if (index >= int32_t(kKept)) hold_.insert(user_data);
    }
    const unsigned wait_for = std::min<unsigned>(min_completions, inner_->in_flight());
    const int n = inner_->submit_and_reap(out, wait_for);
    if (n < 0) return n;
    int kept = 0;
    for (int i = 0; i < n; ++i) {
      buffer_of_.erase(out[i].user_data);
      if (hold_.erase(out[i].user_data) != 0) {
        held_.push_back(out[i]);
      } else {
        out[kept++] = out[i];
      }
    }
    if (kept == 0 && min_completions > 0 && inner_->in_flight() == 0 && !held_.empty()) {
      // The engine waits for nothing but held completions: give one back.
      out[kept++] = held_.front();
      held_.pop_front();
      released_any_ = true;
    }
    return kept;
  }
  uint32_t in_flight() const override { return inner_->in_flight() + uint32_t(held_.size()); }


 private:
  std::shared_ptr<ShrinkObservation> seen_;
  std::unordered_map<uint64_t, int32_t> buffer_of_;  // data requests in flight -> buffer index
  std::unordered_set<uint64_t> hold_;                // in flight on a retired buffer
  std::deque<Completion> held_;
  bool released_any_ = false;
};

TEST(EngineParking, parked_files_resume_on_free_buffers_while_retired_ones_are_still_out) {
  TempDir dir;
  const std::string src = dir / "src", dst = dir / "dst";
  mkdir(src.c_str(), 0755);
  // Small files (one buffer each), more than the pool holds: most park.
  constexpr int kFiles = 24;
  for (int i = 0; i < kFiles; ++i) write_file(src + "/f" + std::to_string(i), random_bytes(3000 + i, uint64_t(i)));

  CopyOptions options = plain_copy_options(EngineChoice::posix);
  auto seen = std::make_shared<ShrinkObservation>();
  CopyCallbacks callbacks;
  std::vector<std::string> errors;
  callbacks.report_error = [&](const std::string& message) { errors.push_back(message); };
  const IoConfig io = options.io;
  callbacks.decorate_backend = [seen, io](std::unique_ptr<Backend> inner) -> std::unique_ptr<Backend> {
    // A registered pool of the decorator's own (no faults injected), so that
    // every request names its buffer's slot.
    FaultSchedule registered;
    registered.registration = RegistrationFault::cap;
    registered.registered_buffers_max = 64;
    auto faulty = std::make_unique<FaultInjectingBackend>(std::move(inner), 0, registered, nullptr,
                                                          std::vector<std::string>{}, io);
    return std::make_unique<ShrinkingBackend>(std::move(faulty), seen);
  };
  const auto report = run_copy({{src, dst}}, options, callbacks);
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_TRUE(errors.empty()) << errors.front();
  EXPECT_EQ(report->files_copied, uint64_t(kFiles));
  ASSERT_TRUE(seen->shrunk) << "the pool was never fully checked out: nothing was tested";
  EXPECT_EQ(report->pool.buffer_count, ShrinkingBackend::kKept);
  EXPECT_EQ(seen->reads_after_a_forced_release, 0u)
      << "parked files waited for retired buffers while kept ones were free";
  expect_identical_files(src, dst, kFiles);
}

// ------------------------------------------------------ EAGAIN backoff --

struct RefusalCount {
  uint64_t refusals = 0;
};

// For the first kRefusingFor after the first data request, every data
// request (read, write, copy_file_range) completes with -EAGAIN without
// reaching the kernel: a kernel with no room for a while.
class RefusingBackend final : public ForwardingBackend {
 public:
  static constexpr std::chrono::milliseconds kRefusingFor{100};
  RefusingBackend(std::unique_ptr<Backend> inner, std::shared_ptr<RefusalCount> count)
      : ForwardingBackend(std::move(inner)), count_(std::move(count)) {}

  bool prepare(const Request& request) override {
    const bool data = request.op == Op::read || request.op == Op::write || request.op == Op::copy_file_range;
    if (data) {
      if (!first_data_) first_data_ = Clock::now();
      if (Clock::now() - *first_data_ < kRefusingFor) {
        refused_.push_back(Completion{request.user_data, -EAGAIN});
        ++count_->refusals;
        return true;
      }
    }
    return inner_->prepare(request);
  }
  int submit_and_reap(std::span<Completion> out, unsigned min_completions) override {
    size_t produced = 0;
    while (produced < out.size() && !refused_.empty()) {
      out[produced++] = refused_.front();
      refused_.pop_front();
    }
    const unsigned wanted = min_completions > produced ? unsigned(min_completions - produced) : 0;
    const int n = inner_->submit_and_reap(out.subspan(produced), std::min<unsigned>(wanted, inner_->in_flight()));
    if (n < 0) return produced > 0 ? int(produced) : n;
    return int(produced) + n;
  }
  uint32_t in_flight() const override { return inner_->in_flight() + uint32_t(refused_.size()); }

 private:
  std::shared_ptr<RefusalCount> count_;
  std::optional<Clock::time_point> first_data_;
  std::deque<Completion> refused_;
};

class EngineBackoff : public ::testing::TestWithParam<EngineChoice> {};

// Without a pause, each refused piece goes back at once and the engine
// spins for the whole window (tens of thousands of refusals); with the
// pause doubling up to a few milliseconds, a piece is refused a few dozen
// times at most.
TEST_P(EngineBackoff, eagain_is_retried_after_a_pause_not_in_a_spin) {
  if (GetParam() == EngineChoice::uring) REQUIRE_URING_OR_SKIP();
  TempDir dir;
  const std::string src = dir / "src", dst = dir / "dst";
  mkdir(src.c_str(), 0755);
  // Buffered pieces (1 MiB in 64 KiB buffers) and, for the file the page
  // cache holds, unbuffered pieces (a mapped or in-kernel copy).
  write_file(src + "/f0", random_bytes(1 << 20, 1));
  write_file(src + "/f1", random_bytes(6 << 20, 2));

  auto count = std::make_shared<RefusalCount>();
  CopyOptions options = plain_copy_options(GetParam());
  CopyCallbacks callbacks;
  std::vector<std::string> errors;
  callbacks.report_error = [&](const std::string& message) { errors.push_back(message); };
  callbacks.decorate_backend = [count](std::unique_ptr<Backend> inner) -> std::unique_ptr<Backend> {
    return std::make_unique<RefusingBackend>(std::move(inner), count);
  };
  const auto started = Clock::now();
  const auto report = run_copy({{src, dst}}, options, callbacks);
  const auto took = Clock::now() - started;
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_TRUE(errors.empty()) << errors.front();
  EXPECT_EQ(report->files_copied, 2u);
  expect_identical_files(src, dst, 2);
  EXPECT_GE(took, RefusingBackend::kRefusingFor) << "the refusals never lasted their window";
  std::printf("%llu refusals in %.0f ms\n", static_cast<unsigned long long>(count->refusals),
              std::chrono::duration<double, std::milli>(took).count());
  EXPECT_GT(count->refusals, 0u);
  // At most 8 buffered pieces and one unbuffered piece wait at a time, each
  // refused about 30 times in 100 ms (pauses of 50 us doubling to 4 ms).
  EXPECT_LT(count->refusals, 1000u) << "EAGAIN was resubmitted without a pause";
}

std::string engine_name(const ::testing::TestParamInfo<EngineChoice>& param_info) {
  return param_info.param == EngineChoice::uring ? "uring" : "posix";
}
INSTANTIATE_TEST_SUITE_P(Engines, EngineBackoff, ::testing::Values(EngineChoice::uring, EngineChoice::posix),
                         engine_name);

}  // namespace
}  // namespace ringio::test
