// What a RegisteredBufferGroup needs from a ring to register its buffers.
// Internal: the io_uring backend implements it for its ring, and tests
// implement it to refuse registrations the way the kernel does. The public
// header only forward-declares it (a group built by a user has no ring:
// registrar == nullptr).
#pragma once

#include <sys/uio.h>

#include <cstdint>

namespace ringio {

// All calls return >= 0 or -errno, like liburing.
class BufferRegistrar {
 public:
  virtual ~BufferRegistrar() = default;
  virtual bool supports_sparse_update() const = 0;
  virtual uint32_t kernel_buffer_cap() const = 0;
  virtual int register_sparse(uint32_t slot_count) = 0;
  virtual int update_slots(uint32_t first_slot, const iovec* iovecs, uint32_t count) = 0;
  virtual int register_table(const iovec* iovecs, uint32_t count) = 0;
  virtual int unregister_table() = 0;
  // Fixed-buffer requests submitted and not yet completed.
  virtual uint32_t fixed_ops_in_flight() const = 0;
};

}  // namespace ringio
