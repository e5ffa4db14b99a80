// The process's pinned-memory budget. Registered buffers (and each ring's own
// memory) are charged by the kernel to RLIMIT_MEMLOCK unless the process has
// CAP_IPC_LOCK. Every ring and buffer group of the process charges this one
// budget first, so our own rings never together ask for more than the limit.
// It is advisory: the limit is per user, so another process of the same user
// can still make the kernel answer ENOMEM, which callers handle the same way.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

namespace ringio {

class PinnedMemoryBudget {
 public:
  // limit_bytes == nullopt: unlimited (CAP_IPC_LOCK, or RLIM_INFINITY).
  explicit PinnedMemoryBudget(std::optional<uint64_t> limit_bytes, std::string source);

  // The process-wide budget, read once from RLIMIT_MEMLOCK and CAP_IPC_LOCK.
  static PinnedMemoryBudget& process();

  // Charges `bytes` if they fit; false (and nothing charged) otherwise.
  bool try_charge(uint64_t bytes);
  // Charges what the kernel has already accepted (a ring's own memory), even
  // past the limit, so later charges see it.
  void charge(uint64_t bytes);
  void release(uint64_t bytes);

  std::optional<uint64_t> limit_bytes() const { return limit_bytes_; }
  uint64_t charged_bytes() const;
  // Bytes that can still be charged; UINT64_MAX when unlimited.
  uint64_t available_bytes() const;
  // "RLIMIT_MEMLOCK 65536 bytes" / "unlimited (CAP_IPC_LOCK)" ...
  const std::string& source() const { return source_; }

 private:
  mutable std::mutex mutex_;  // groups of different threads share it; never on the hot path
  std::optional<uint64_t> limit_bytes_;
  uint64_t charged_bytes_ = 0;
  std::string source_;
};

// Bytes the kernel charges to RLIMIT_MEMLOCK for a ring's SQ/CQ rings and SQE
// array (rounded to pages), so that the budget accounts for rings too.
uint64_t ring_pinned_bytes(uint32_t sq_entries, uint32_t cq_entries);

}  // namespace ringio
