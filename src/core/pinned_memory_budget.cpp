#include "ringio/pinned_memory_budget.hpp"

#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <limits>

namespace ringio {

namespace {

bool has_cap_ipc_lock() {
  __user_cap_header_struct header{};
  header.version = _LINUX_CAPABILITY_VERSION_3;
  header.pid = 0;
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
  if (syscall(SYS_capget, &header, data) != 0) return false;
  return (data[CAP_IPC_LOCK / 32].effective & (1u << (CAP_IPC_LOCK % 32))) != 0;
}

uint64_t round_up_pages(uint64_t bytes) {
  const uint64_t page = 4096;
  return (bytes + page - 1) / page * page;
}

}  // namespace

PinnedMemoryBudget::PinnedMemoryBudget(std::optional<uint64_t> limit_bytes, std::string source)
    : limit_bytes_(limit_bytes), source_(std::move(source)) {}

PinnedMemoryBudget& PinnedMemoryBudget::process() {
  static PinnedMemoryBudget budget = [] {
    if (has_cap_ipc_lock()) return PinnedMemoryBudget(std::nullopt, "unlimited (CAP_IPC_LOCK)");
    rlimit limit{};
    if (getrlimit(RLIMIT_MEMLOCK, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY)
      return PinnedMemoryBudget(std::nullopt, "unlimited (RLIMIT_MEMLOCK)");
    return PinnedMemoryBudget(static_cast<uint64_t>(limit.rlim_cur),
                              "RLIMIT_MEMLOCK " + std::to_string(limit.rlim_cur) + " bytes");
  }();
  return budget;
}

bool PinnedMemoryBudget::try_charge(uint64_t bytes) {
  std::lock_guard lock(mutex_);
  if (limit_bytes_ && (bytes > *limit_bytes_ || charged_bytes_ > *limit_bytes_ - bytes))
    return false;
  charged_bytes_ += bytes;
  return true;
}

void PinnedMemoryBudget::charge(uint64_t bytes) {
  std::lock_guard lock(mutex_);
  charged_bytes_ += bytes;
}

void PinnedMemoryBudget::release(uint64_t bytes) {
  std::lock_guard lock(mutex_);
  charged_bytes_ = bytes > charged_bytes_ ? 0 : charged_bytes_ - bytes;
}

uint64_t PinnedMemoryBudget::charged_bytes() const {
  std::lock_guard lock(mutex_);
  return charged_bytes_;
}

uint64_t PinnedMemoryBudget::available_bytes() const {
  std::lock_guard lock(mutex_);
  if (!limit_bytes_) return std::numeric_limits<uint64_t>::max();
  return *limit_bytes_ > charged_bytes_ ? *limit_bytes_ - charged_bytes_ : 0;
}

uint64_t ring_pinned_bytes(uint32_t sq_entries, uint32_t cq_entries) {
  // io_uring_setup(2): the SQ and CQ rings share one mapping (a small header,
  // the CQE array and the SQ index array); the SQE array is a second one.
  // Both are charged in whole pages.
  const uint64_t header_bytes = 64 * 5;  // struct io_rings, rounded generously
  const uint64_t rings_bytes = header_bytes + uint64_t{cq_entries} * 16 + uint64_t{sq_entries} * 4;
  const uint64_t sqes_bytes = uint64_t{sq_entries} * 64;
  return round_up_pages(rings_bytes) + round_up_pages(sqes_bytes);
}

}  // namespace ringio
