#include "posix/posix_backend.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/teardown_stats.hpp"
#include "posix/syscalls.hpp"

namespace ringio::posix {

namespace {
BufferGroupOptions group_options(const IoConfig& config, BufferAllocator allocator) {
  BufferGroupOptions options = BufferGroupOptions::from(config);
  options.allocator = std::move(allocator);
  return options;
}
}  // namespace

PosixBackend::PosixBackend(const IoConfig& config, BufferAllocator allocator,
                           std::string why_posix)
    // The same bound on outstanding requests as a ring of this size has.
    : capacity_(config.sq_entries * 2),
      why_posix_(std::move(why_posix)),
      group_(group_options(config, std::move(allocator)), nullptr,
             "posix backend: buffers are not registered") {
  done_.reserve(capacity_);
}

PosixBackend::~PosixBackend() {
  print_teardown_stats(kind(), group_.stats(), op_counts());
}

bool PosixBackend::prepare(const Request& request) {
  if (in_flight() >= capacity_) return false;
  counters_.count_direct(request.op);
  done_.push_back(Completion{request.user_data, execute(request)});
  return true;
}

int64_t PosixBackend::execute_now(const Request& request) {
  counters_.count_direct(request.op);
  return execute(request);
}

int PosixBackend::submit_and_reap(std::span<Completion> out, unsigned /*min_completions*/) {
  counters_.submit_calls.add();
  size_t produced = 0;
  while (produced < out.size() && head_ < done_.size()) out[produced++] = done_[head_++];
  if (head_ == done_.size()) {
    done_.clear();
    head_ = 0;
  }
  return static_cast<int>(produced);
}

}  // namespace ringio::posix
