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

class Ring {
 public:
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
  // "SINGLE_ISSUER|DEFER_TASKRUN"; notes a refused SQPOLL.
  std::string describe_flags() const;

 private:
  Ring() = default;
  io_uring ring_{};
  unsigned setup_flags_ = 0;
  unsigned sq_entries_ = 0;
  unsigned cq_entries_ = 0;
  std::string fallback_note_;
};

}  // namespace ringio::uring
