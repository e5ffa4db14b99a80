// One probe per process: create a small ring and ask the kernel what it
// takes. Each check answers from the kernel's own errno, never a version.
#include <liburing.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "ringio/kernel_support.hpp"
#include "ringio/pinned_memory_budget.hpp"
#include "uring/ring.hpp"

namespace ringio {

namespace {

// Opcodes the copy engine cannot work without. Others (MKDIRAT, LINKAT, ...)
// run as direct syscalls when the ring lacks them.
struct RequiredOpcode {
  unsigned opcode;
  const char* name;
};
constexpr RequiredOpcode kRequiredOpcodes[] = {
    {IORING_OP_NOP, "NOP"},                // 5.1
    {IORING_OP_READ_FIXED, "READ_FIXED"},  // 5.1
    {IORING_OP_WRITE_FIXED, "WRITE_FIXED"},
    {IORING_OP_READ, "READ"},    // 5.6
    {IORING_OP_WRITE, "WRITE"},  // 5.6
    {IORING_OP_OPENAT, "OPENAT"},
    {IORING_OP_CLOSE, "CLOSE"},
    {IORING_OP_STATX, "STATX"},
};

// One ring tells which setup flags the kernel takes: a refused flag is
// EINVAL at once, before anything is charged. Best first; the accepted set's
// flags are the supported ones (DEFER_TASKRUN needs SINGLE_ISSUER, and
// COOP_TASKRUN (5.19) predates SINGLE_ISSUER (6.0)). Probing with one ring
// instead of one per flag matters under a small RLIMIT_MEMLOCK: a closed
// ring's memory is released asynchronously, so the next one could be refused.
constexpr unsigned kProbeFlags[] = {
    IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_COOP_TASKRUN,
    IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
    IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN,
    IORING_SETUP_COOP_TASKRUN,
    IORING_SETUP_SINGLE_ISSUER,
    0,
};

KernelSupport probe_kernel() {
  KernelSupport support;
  io_uring ring{};
  io_uring_params params{};
  int rc = -ENOMEM;
  // Where the budget cannot hold even this ring, an ENOMEM is final at once
  // instead of waited out (a kernel that does not charge rings takes it).
  const bool may_fit = ring_pinned_bytes(uring::kMinRingEntries, 2 * uring::kMinRingEntries) <=
                       PinnedMemoryBudget::process().available_bytes();
  for (unsigned flags : kProbeFlags) {
    params = io_uring_params{};
    params.flags = flags;
    rc = may_fit ? uring::queue_init_retrying_enomem(uring::kMinRingEntries, &ring, &params)
                 : io_uring_queue_init_params(uring::kMinRingEntries, &ring, &params);
    if (rc != -EINVAL) break;
  }
  if (rc < 0) {
    support.setup_errno = -rc;
    return support;
  }
  support.features = params.features;
  support.single_issuer = (params.flags & IORING_SETUP_SINGLE_ISSUER) != 0;
  support.defer_taskrun = (params.flags & IORING_SETUP_DEFER_TASKRUN) != 0;
  support.coop_taskrun = (params.flags & IORING_SETUP_COOP_TASKRUN) != 0;

  if (io_uring_probe* probe = io_uring_get_probe_ring(&ring)) {
    support.probe_ok = true;
    for (unsigned op = 0; op <= probe->last_op && op < support.opcodes.size(); ++op)
      if (io_uring_opcode_supported(probe, static_cast<int>(op))) support.opcodes.set(op);
    io_uring_free_probe(probe);
  }

  // The registered-buffer cap: 16384 since 5.13 (1024 before). A sparse
  // table of the cap registers; one more slot is EINVAL.
  for (uint32_t slots : {16384u, 1024u}) {
    if (io_uring_register_buffers_sparse(&ring, slots) == 0) {
      iovec empty{nullptr, 0};
      __u64 tag = 0;
      support.sparse_buffers = io_uring_register_buffers_update_tag(&ring, 0, &empty, &tag, 1) == 1;
      io_uring_unregister_buffers(&ring);
      support.buffer_cap = slots;
      break;
    }
  }
  if (support.buffer_cap == 0) support.buffer_cap = 1024;  // no sparse tables: the old cap

  unsigned workers[2] = {0, 0};  // 0 = read the current values
  support.iowq_max_workers = io_uring_register_iowq_max_workers(&ring, workers) == 0;
  io_uring_queue_exit(&ring);
  return support;
}

}  // namespace

std::string KernelSupport::missing_required_opcodes() const {
  std::string missing;
  if (!probe_ok) return "IORING_REGISTER_PROBE";
  for (const RequiredOpcode& required : kRequiredOpcodes) {
    if (has_opcode(required.opcode)) continue;
    if (!missing.empty()) missing += ",";
    missing += required.name;
  }
  return missing;
}

std::string KernelSupport::describe() const {
  if (!ring_available())
    return std::string("io_uring_setup failed: ") + std::strerror(setup_errno);
  std::string text = "io_uring: " + std::to_string(opcodes.count()) + " opcodes";
  if (single_issuer) text += ", SINGLE_ISSUER";
  if (defer_taskrun) text += ", DEFER_TASKRUN";
  if (coop_taskrun) text += ", COOP_TASKRUN";
  text += sparse_buffers ? ", sparse buffers" : ", no sparse buffers";
  text += ", buffer cap " + std::to_string(buffer_cap);
  return text;
}

const KernelSupport& kernel_support() {
  static const KernelSupport support = probe_kernel();
  return support;
}

}  // namespace ringio
