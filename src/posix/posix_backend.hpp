// The portable backend: every request is a direct syscall run when it is
// prepared; its completion waits in a queue for the next reap. Buffers are
// plain (never registered), so fixed-buffer hints are ignored.
#pragma once

#include <memory>
#include <vector>

#include "core/op_counters.hpp"
#include "ringio/backend.hpp"

namespace ringio::posix {

class PosixBackend final : public Backend {
 public:
  PosixBackend(const IoConfig& config, BufferAllocator allocator, std::string why_posix);
  ~PosixBackend() override;

  BackendKind kind() const override { return BackendKind::posix; }
  bool prepare(const Request& request) override;
  int submit_and_reap(std::span<Completion> out, unsigned min_completions) override;
  uint32_t in_flight() const override { return uint32_t(done_.size() - head_); }
  int64_t execute_now(const Request& request) override;
  RegisteredBufferGroup& buffers() override { return group_; }
  OpCounts op_counts() const override { return counters_.snapshot(); }
  std::string describe() const override { return "posix (" + why_posix_ + ")"; }

 private:
  uint32_t capacity_;
  std::string why_posix_;
  OpCounters counters_;
  std::vector<Completion> done_;
  size_t head_ = 0;
  RegisteredBufferGroup group_;
};

}  // namespace ringio::posix
