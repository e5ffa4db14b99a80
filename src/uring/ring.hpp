// RAII ownership of one io_uring instance, created with the best setup flags
// the kernel accepts and falling back one flag at a time when refused.
#pragma once

#include <liburing.h>

#include <memory>
#include <string>

#include "ringio/config.hpp"
#include "ringio/kernel_support.hpp"
#include "ringio/result.hpp"

namespace ringio::uring {

// The smallest ring worth having: below 8 entries a ring still pins the same
// two pages (one for the rings, one for the SQEs).
constexpr unsigned kMinRingEntries = 8;

// io_uring_queue_init_params, retrying ENOMEM for at most 200 ms in all per
// process (probe and rings together). The memory of a ring closed moments ago,
// by this process or an earlier one of the same user, stays charged to
// RLIMIT_MEMLOCK until the kernel's exit work frees it (10-25 ms measured
// here), so two runs in a row would otherwise see different answers. Returns
// 0 or -errno, as liburing does; on failure `ring` is untouched.
int queue_init_retrying_enomem(unsigned entries, io_uring* ring, io_uring_params* params);

class Ring {
 public:
  // Asks for config.sq_entries; where RLIMIT_MEMLOCK (without CAP_IPC_LOCK)
  // cannot hold a ring that size, a smaller one (down to kMinRingEntries),
  // noted in describe_flags().
  static Result<std::unique_ptr<Ring>> create(const IoConfig& config, const KernelSupport& support);
  ~Ring();
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  io_uring* get() { return &ring_; }
  int fd() const { return ring_.ring_fd; }
  unsigned setup_flags() const { return setup_flags_; }
  unsigned sq_entries() const { return sq_entries_; }
  unsigned cq_entries() const { return cq_entries_; }
  bool defer_taskrun() const { return (setup_flags_ & IORING_SETUP_DEFER_TASKRUN) != 0; }
  // "SINGLE_ISSUER|DEFER_TASKRUN"; notes a refused SQPOLL or a smaller ring.
  std::string describe_flags() const;

 private:
  Ring() = default;
  io_uring ring_{};  // set up only once create() succeeded: ~Ring exits it
  unsigned setup_flags_ = 0;
  unsigned sq_entries_ = 0;
  unsigned cq_entries_ = 0;
  std::string fallback_note_;
};

}  // namespace ringio::uring
