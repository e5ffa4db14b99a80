// The io_uring backend: requests become SQEs when the ring has the opcode
// (probed), direct syscalls otherwise; buffers are registered through the
// ring. It also implements the buffer group's registrar.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/buffer_registrar.hpp"
#include "core/op_counters.hpp"
#include "ringio/backend.hpp"
#include "ringio/kernel_support.hpp"
#include "uring/ring.hpp"

namespace ringio::uring {

class UringBackend final : public Backend, public BufferRegistrar {
 public:
  static Result<std::unique_ptr<UringBackend>> create(const IoConfig& config,
                                                      BufferAllocator allocator);
  ~UringBackend() override;

  BackendKind kind() const override { return BackendKind::uring; }
  bool prepare(const Request& request) override;
  int submit_and_reap(std::span<Completion> out, unsigned min_completions) override;
  uint32_t in_flight() const override { return ring_in_flight_ + uint32_t(inline_done_.size() - inline_head_); }
  int64_t execute_now(const Request& request) override;
  RegisteredBufferGroup& buffers() override { return *group_; }
  OpCounts op_counts() const override;
  std::string describe() const override;

  // BufferRegistrar
  bool supports_sparse_update() const override { return support_.sparse_buffers; }
  uint32_t kernel_buffer_cap() const override { return support_.buffer_cap; }
  int register_sparse(uint32_t slot_count) override;
  int update_slots(uint32_t first_slot, const iovec* iovecs, uint32_t count) override;
  int register_table(const iovec* iovecs, uint32_t count) override;
  int unregister_table() override;
  uint32_t fixed_ops_in_flight() const override { return fixed_in_flight_; }

  int ring_fd() const { return ring_->fd(); }

  // The call that enters the kernel: submit, and wait for `wait_for`
  // completions. Tests replace it to make the kernel answer EAGAIN or EBUSY.
  using SubmitFn = int (*)(UringBackend& backend, unsigned wait_for);
  static int submit_to_kernel(UringBackend& backend, unsigned wait_for);
  void set_submit_for_testing(SubmitFn submit) { submit_ = submit; }

 private:
  UringBackend(const IoConfig& config, const KernelSupport& support, std::unique_ptr<Ring> ring);
  bool ring_has(unsigned opcode) const { return support_.has_opcode(opcode); }
  // The IORING_OP_* that runs `op`, or -1 when this kernel's ring has none
  // (the op then runs as a direct syscall).
  int opcode_for(Op op) const;
  void prep_sqe(io_uring_sqe* sqe, const Request& request, bool* fixed);
  // Moves the completions the CQ holds (up to out.size()) into `out`.
  size_t reap_ready(std::span<Completion> out);
  // Cancels every request still in flight and waits for their completions,
  // for at most `limit`; returns how many are still in the kernel's hands.
  // The destructor does this (kDrainLimit): the ring is closed, and buffer
  // memory freed, only once the kernel is done with them.
  uint32_t drain_in_flight(std::chrono::milliseconds limit);
  static constexpr std::chrono::milliseconds kDrainLimit{10'000};

  struct InFlight {
    Request request;    // kept to run it directly if io-wq could not take it
    bool fixed = false;
    bool live = false;  // submitted (or prepared) and not yet reaped
  };
  // user_data of cancel requests; request tags index slots_.
  // Not ~0: liburing keeps that (LIBURING_UDATA_TIMEOUT) for its own timeouts.
  static constexpr uint64_t kCancelTag = ~uint64_t{0} - 1;

  // A pause that doubles (1 ms to 64 ms) while the kernel keeps refusing
  // new requests with nothing of ours in flight to wait for.
  struct BackOff {
    std::chrono::microseconds delay{1000};
    void wait() const { std::this_thread::sleep_for(delay); }
    void grow() { delay = std::min(delay * 2, std::chrono::microseconds(64'000)); }
    void reset() { delay = std::chrono::microseconds(1000); }
  };

  IoConfig config_;
  const KernelSupport& support_;
  OpCounters counters_;
  uint64_t ring_charge_bytes_ = 0;

  std::vector<InFlight> slots_;       // user_data of ring requests, by tag
  std::vector<uint32_t> free_tags_;
  std::vector<Completion> inline_done_;  // completions of direct syscalls
  size_t inline_head_ = 0;
  uint32_t ring_in_flight_ = 0;
  uint32_t fixed_in_flight_ = 0;
  uint32_t unsubmitted_ = 0;
  bool cancelling_ = false;  // drain_in_flight() cancels on purpose
  BackOff back_off_;
  SubmitFn submit_ = &submit_to_kernel;

  // Declaration order is teardown order in reverse: the ring (and with it the
  // kernel's registration) is released before the group frees buffer memory.
  std::unique_ptr<RegisteredBufferGroup> group_;
  std::unique_ptr<Ring> ring_;
};

}  // namespace ringio::uring
