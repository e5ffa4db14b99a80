// What the running kernel offers io_uring-wise, probed once per process by
// asking the kernel (ring setup, IORING_REGISTER_PROBE, trial registrations),
// never by comparing version numbers.
#pragma once

#include <bitset>
#include <cstdint>
#include <string>

namespace ringio {

struct KernelSupport {
  int setup_errno = 0;               // 0 when a ring could be created
  bool probe_ok = false;             // IORING_REGISTER_PROBE answered
  std::bitset<256> opcodes;          // supported IORING_OP_* values
  uint32_t features = 0;             // io_uring_params.features of the probe ring
  bool single_issuer = false;        // IORING_SETUP_SINGLE_ISSUER accepted
  bool defer_taskrun = false;        // with SINGLE_ISSUER
  bool coop_taskrun = false;
  bool sparse_buffers = false;       // REGISTER_BUFFERS2 sparse + BUFFERS_UPDATE
  uint32_t buffer_cap = 0;           // most registered buffers in one table
  bool iowq_max_workers = false;

  bool ring_available() const { return setup_errno == 0; }
  bool has_opcode(unsigned op) const { return op < opcodes.size() && opcodes.test(op); }
  // The opcodes the engine cannot do without; empty when all are there.
  std::string missing_required_opcodes() const;
  std::string describe() const;
};

// Probed on first use, then cached; thread-safe.
const KernelSupport& kernel_support();

}  // namespace ringio
