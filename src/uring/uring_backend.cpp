#include "uring/uring_backend.hpp"

#include <linux/fs.h>

#include <algorithm>
#include <cassert>
#include <thread>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "core/teardown_stats.hpp"
#include "posix/syscalls.hpp"

namespace ringio::uring {

namespace {
// IORING_OP_FTRUNCATE (Linux 6.9) has no liburing 2.3 helper or enum value.
constexpr unsigned kOpFtruncate = 55;

// IORING_OP_FADVISE takes its length from the SQE's 32-bit len field
// (liburing 2.3 sets nothing else): a longer range would be cut modulo
// 4 GiB, so such a request runs inline instead.
bool fits_in_sqe(const Request& r) {
  return r.op != Op::fadvise || r.length <= std::numeric_limits<uint32_t>::max();
}
}  // namespace

UringBackend::UringBackend(const IoConfig& config, const KernelSupport& support, std::unique_ptr<Ring> ring)
    : config_(config), support_(support), ring_(std::move(ring)) {}

Result<std::unique_ptr<UringBackend>> UringBackend::create(const IoConfig& config,
                                                           BufferAllocator allocator) {
  const KernelSupport& support = kernel_support();
  // The backend exists only with a ring: nothing below (or in the
  // destructor) has to ask whether there is one.
  auto ring = Ring::create(config, support);
  if (!ring) return ring.error();
  std::unique_ptr<UringBackend> backend(new UringBackend(config, support, std::move(ring.value())));

  // The ring's own memory is charged to RLIMIT_MEMLOCK too; account for it
  // so that buffer registrations see what is really left.
  backend->ring_charge_bytes_ =
      ring_pinned_bytes(backend->ring_->sq_entries(), backend->ring_->cq_entries());
  PinnedMemoryBudget::process().charge(backend->ring_charge_bytes_);

  if (config.iowq_max_workers != 0 && support.iowq_max_workers) {
    unsigned workers[2] = {config.iowq_max_workers, config.iowq_max_workers};
    io_uring_register_iowq_max_workers(backend->ring_->get(), workers);
  }

  const uint32_t capacity = backend->ring_->cq_entries();
  backend->slots_.resize(capacity);
  backend->free_tags_.reserve(capacity);
  for (uint32_t tag = capacity; tag > 0; --tag) backend->free_tags_.push_back(tag - 1);
  backend->inline_done_.reserve(capacity);

  BufferGroupOptions options = BufferGroupOptions::from(config);
  options.allocator = std::move(allocator);
  if (config.register_buffers) {
    backend->group_ = std::make_unique<RegisteredBufferGroup>(options, backend.get());
  } else {
    backend->group_ = std::make_unique<RegisteredBufferGroup>(
        options, nullptr, "buffer registration turned off (register_buffers=false)");
  }
  return backend;
}

UringBackend::~UringBackend() {
  if (group_) print_teardown_stats(kind(), group_->stats(), op_counts());
  // No request may outlive the memory it reads into or writes from.
  const uint32_t stuck = drain_in_flight(kDrainLimit);
  if (group_) {
    // The kernel may still write into buffers of requests it never gave
    // back: leave that memory mapped rather than reuse it.
    if (stuck != 0) group_->abandon_memory();
    // The kernel drops the registration with the ring, which goes first
    // (member order); after that the group must not talk to it.
    group_->detach_registrar();
  }
  PinnedMemoryBudget::process().release(ring_charge_bytes_);
}

uint32_t UringBackend::drain_in_flight(std::chrono::milliseconds limit) {
  inline_done_.clear();  // direct syscalls are done already
  inline_head_ = 0;
  if (ring_in_flight_ == 0) return 0;
  // Whatever is left was abandoned by its caller: cancel it, since some
  // requests never complete by themselves (a read from a pipe with no
  // writer), then wait for every completion, cancelled or not (a disk
  // transfer already under way finishes instead), for at most `limit`.
  // EINTR, ETIME, EAGAIN, EBUSY only delay this; anything else means the
  // ring itself is gone (EBADF, ENXIO, EOWNERDEAD): nothing more completes.
  io_uring* ring = ring_->get();
  cancelling_ = true;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  auto wait_a_little = [&] {
    // Waits without submitting, so a refused submission cannot turn this
    // into a spin. The reaped completions are dropped: nobody waits for them.
    __kernel_timespec wait{0, 20'000'000};
    io_uring_cqe* cqe = nullptr;
    const int rc = io_uring_wait_cqe_timeout(ring, &cqe, &wait);
    Completion scratch[64];
    while (reap_ready(scratch) > 0) {
    }
    if (rc == -EAGAIN || rc == -EBUSY) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return rc >= 0 || rc == -EINTR || rc == -ETIME || rc == -EAGAIN || rc == -EBUSY;
  };
  bool ring_alive = true;
  for (uint32_t tag = 0; tag < slots_.size() && ring_alive; ++tag) {
    if (!slots_[tag].live) continue;
    io_uring_sqe* sqe = io_uring_get_sqe(ring);
    while (sqe == nullptr && ring_alive && std::chrono::steady_clock::now() < deadline) {
      // The SQ is full: hand it to the kernel, or wait for room.
      if (io_uring_submit(ring) <= 0) ring_alive = wait_a_little();
      sqe = io_uring_get_sqe(ring);
    }
    if (sqe == nullptr) break;
    io_uring_prep_cancel64(sqe, tag, 0);
    io_uring_sqe_set_data64(sqe, kCancelTag);
  }
  while (ring_alive && ring_in_flight_ > 0 && std::chrono::steady_clock::now() < deadline) {
    if (io_uring_sq_ready(ring) != 0) {
      const int rc = io_uring_submit(ring);
      if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) break;
    }
    ring_alive = wait_a_little();
  }
  cancelling_ = false;
  return ring_in_flight_;
}

void UringBackend::prep_sqe(io_uring_sqe* sqe, const Request& r, bool* fixed) {
  *fixed = false;
  switch (r.op) {
    case Op::nop:
      io_uring_prep_nop(sqe);
      return;
    case Op::read:
    case Op::write: {
      // A single SQE moves at most 2 GiB - 4 KiB, like read(2); the caller
      // sees a short transfer and resumes.
      const unsigned len = static_cast<unsigned>(std::min<uint64_t>(r.length, 0x7ffff000));
      const bool use_fixed = r.buffer_index >= 0 && group_ && group_->registered();
      if (r.op == Op::read) {
        if (use_fixed)
          io_uring_prep_read_fixed(sqe, r.fd, r.buffer, len, r.offset, r.buffer_index);
        else
          io_uring_prep_read(sqe, r.fd, r.buffer, len, r.offset);
      } else {
        if (use_fixed)
          io_uring_prep_write_fixed(sqe, r.fd, r.buffer, len, r.offset, r.buffer_index);
        else
          io_uring_prep_write(sqe, r.fd, r.buffer, len, r.offset);
      }
      *fixed = use_fixed;
      return;
    }
    case Op::openat:
      io_uring_prep_openat(sqe, r.fd, r.path, r.flags, r.mode);
      return;
    case Op::close:
      io_uring_prep_close(sqe, r.fd);
      return;
    case Op::statx:
      io_uring_prep_statx(sqe, r.fd, r.path, r.flags, r.mode, static_cast<struct statx*>(r.buffer));
      return;
    case Op::fsync:
      io_uring_prep_fsync(sqe, r.fd, r.flags != 0 ? IORING_FSYNC_DATASYNC : 0);
      return;
    case Op::mkdirat:
      io_uring_prep_mkdirat(sqe, r.fd, r.path, r.mode);
      return;
    case Op::linkat:
      io_uring_prep_linkat(sqe, r.fd, r.path, r.fd2, r.path2, r.flags);
      return;
    case Op::renameat:
      io_uring_prep_renameat(sqe, r.fd, r.path, r.fd2, r.path2, static_cast<unsigned>(r.flags));
      return;
    case Op::unlinkat:
      io_uring_prep_unlinkat(sqe, r.fd, r.path, r.flags);
      return;
    case Op::symlinkat:
      io_uring_prep_symlinkat(sqe, r.path2, r.fd2, r.path);
      return;
    case Op::fsetxattr:
      io_uring_prep_fsetxattr(sqe, r.fd, r.path, static_cast<const char*>(r.buffer), r.flags,
                              static_cast<unsigned>(r.length));
      return;
    case Op::fgetxattr:
      io_uring_prep_fgetxattr(sqe, r.fd, r.path, static_cast<char*>(r.buffer),
                              static_cast<unsigned>(r.length));
      return;
    case Op::fallocate:
      io_uring_prep_fallocate(sqe, r.fd, r.flags, r.offset, r.length);
      return;
    case Op::ftruncate:
      io_uring_prep_rw(static_cast<int>(kOpFtruncate), sqe, r.fd, nullptr, 0, r.length);
      return;
    case Op::fadvise:
      io_uring_prep_fadvise(sqe, r.fd, r.offset, static_cast<off_t>(r.length),
                            static_cast<int>(r.mode));
      return;
    default:
      assert(false && "prep_sqe called for an op without an opcode");
  }
}

int UringBackend::opcode_for(Op op) const {
  int opcode = -1;
  switch (op) {
    case Op::nop: opcode = IORING_OP_NOP; break;
    case Op::read: opcode = IORING_OP_READ; break;
    case Op::write: opcode = IORING_OP_WRITE; break;
    case Op::openat: opcode = IORING_OP_OPENAT; break;
    case Op::close: opcode = IORING_OP_CLOSE; break;
    case Op::statx: opcode = IORING_OP_STATX; break;
    case Op::fsync: opcode = IORING_OP_FSYNC; break;
    case Op::mkdirat: opcode = IORING_OP_MKDIRAT; break;      // 5.15
    case Op::linkat: opcode = IORING_OP_LINKAT; break;        // 5.15
    case Op::renameat: opcode = IORING_OP_RENAMEAT; break;    // 5.11
    case Op::unlinkat: opcode = IORING_OP_UNLINKAT; break;    // 5.11
    case Op::symlinkat: opcode = IORING_OP_SYMLINKAT; break;  // 5.15
    case Op::fsetxattr: opcode = IORING_OP_FSETXATTR; break;  // 5.19
    case Op::fgetxattr: opcode = IORING_OP_FGETXATTR; break;  // 5.19
    case Op::fallocate: opcode = IORING_OP_FALLOCATE; break;
    case Op::ftruncate: opcode = static_cast<int>(kOpFtruncate); break;  // 6.9
    case Op::fadvise: opcode = IORING_OP_FADVISE; break;
    default:
      // mknodat, readlinkat, fchmod, fchmodat, fchownat, utimensat,
      // flistxattr, fremovexattr, l*xattr, lseek, FICLONE, copy_file_range,
      // getdents, fcntl (set_direct_io), cachestat, fstatfs, mmap and munmap
      // have no io_uring opcode (madvise has one, but gains nothing from
      // the ring): prepare() runs them inline through posix::execute and
      // counts them as inline metadata ops.
      return -1;
  }
  return ring_has(static_cast<unsigned>(opcode)) ? opcode : -1;
}

int64_t UringBackend::execute_now(const Request& request) {
  counters_.count_direct(request.op);
  return posix::execute(request);
}

bool UringBackend::prepare(const Request& request) {
  // Never accept more than the CQ can hold, so completions cannot overflow.
  if (in_flight() >= slots_.size()) return false;

  if (opcode_for(request.op) < 0 || !fits_in_sqe(request)) {
    counters_.count_direct(request.op);
    inline_done_.push_back(Completion{request.user_data, posix::execute(request)});
    return true;
  }
  io_uring_sqe* sqe = io_uring_get_sqe(ring_->get());
  if (sqe == nullptr) {
    io_uring_submit(ring_->get());
    unsubmitted_ = io_uring_sq_ready(ring_->get());
    sqe = io_uring_get_sqe(ring_->get());
    if (sqe == nullptr) return false;  // SQPOLL has not caught up: reap, then retry
  }
  bool fixed = false;
  prep_sqe(sqe, request, &fixed);
  const uint32_t tag = free_tags_.back();
  free_tags_.pop_back();
  slots_[tag] = InFlight{request, fixed, true};
  io_uring_sqe_set_data64(sqe, tag);
  ++ring_in_flight_;
  ++unsubmitted_;
  if (fixed) ++fixed_in_flight_;
  counters_.count(request.op);
  if (request.op == Op::read) {
    (fixed ? counters_.fixed_reads : counters_.plain_reads).add();
  } else if (request.op == Op::write) {
    (fixed ? counters_.fixed_writes : counters_.plain_writes).add();
  } else {
    counters_.ring_metadata_ops.add();
  }
  return true;
}

int UringBackend::submit_and_reap(std::span<Completion> out, unsigned min_completions) {
  size_t produced = 0;
  while (produced < out.size() && inline_head_ < inline_done_.size())
    out[produced++] = inline_done_[inline_head_++];
  if (inline_head_ == inline_done_.size()) {
    inline_done_.clear();
    inline_head_ = 0;
  }

  io_uring* ring = ring_->get();
  const unsigned wanted = min_completions > produced ? unsigned(min_completions - produced) : 0;
  const unsigned wait_for = std::min<unsigned>(wanted, ring_in_flight_);
  if (unsubmitted_ != 0 || wait_for != 0 || ring_->defer_taskrun()) {
    counters_.submit_calls.add();
    const int rc = submit_(*this, wait_for);
    unsubmitted_ = io_uring_sq_ready(ring);
    if (rc == -EAGAIN || rc == -EBUSY) {
      // The kernel cannot take more now (no memory for requests, or
      // completions it could not post yet). Never spin: wait for one of ours
      // to complete if the kernel has any, for as long as the back-off's
      // pause at most, or sleep that pause.
      const uint32_t in_kernel = ring_in_flight_ - unsubmitted_;
      const auto pause = std::chrono::duration_cast<std::chrono::nanoseconds>(back_off_.delay).count();
      __kernel_timespec wait{pause / 1'000'000'000, pause % 1'000'000'000};
      io_uring_cqe* cqe = nullptr;
      const int waited = in_kernel == 0 ? -EAGAIN : io_uring_wait_cqe_timeout(ring, &cqe, &wait);
      if (waited == -EAGAIN || waited == -EBUSY) back_off_.wait();
      if (waited < 0) back_off_.grow();
    } else if (rc < 0 && rc != -EINTR && rc != -ETIME) {
      return rc;
    } else {
      back_off_.reset();
      if (rc == -EINTR && produced == 0 && io_uring_cq_ready(ring) == 0) return -EINTR;
    }
  }
  return static_cast<int>(produced + reap_ready(out.subspan(produced)));
}

size_t UringBackend::reap_ready(std::span<Completion> out) {
  io_uring* ring = ring_->get();
  size_t produced = 0;
  io_uring_cqe* cqes[64];
  while (produced < out.size()) {
    const auto batch = static_cast<unsigned>(std::min<size_t>(out.size() - produced, 64));
    const unsigned n = io_uring_peek_batch_cqe(ring, cqes, batch);
    if (n == 0) break;
    for (unsigned i = 0; i < n; ++i) {
      const uint64_t tag = io_uring_cqe_get_data64(cqes[i]);
      // A cancel request's own completion, or one of liburing's internal
      // timeouts (io_uring_wait_cqe_timeout on kernels without EXT_ARG).
      if (tag == kCancelTag || tag == LIBURING_UDATA_TIMEOUT) continue;
      --ring_in_flight_;
      InFlight& entry = slots_[tag];
      if (entry.fixed) --fixed_in_flight_;
      entry.live = false;
      int64_t result = cqes[i]->res;
      if (result == -ECANCELED && !cancelling_) {
        // Nothing of ours cancels it: the kernel could not start an io-wq
        // worker for it (RLIMIT_NPROC) and dropped it unrun. Run it here.
        result = posix::execute(entry.request);
      }
      out[produced++] = Completion{entry.request.user_data, result};
      free_tags_.push_back(static_cast<uint32_t>(tag));
    }
    io_uring_cq_advance(ring, n);
  }
  return produced;
}

int UringBackend::submit_to_kernel(UringBackend& backend, unsigned wait_for) {
  io_uring* ring = backend.ring_->get();
  if (wait_for != 0) return io_uring_submit_and_wait(ring, wait_for);
  // With DEFER_TASKRUN completions are only posted when we enter the kernel
  // asking for events.
  if (backend.ring_->defer_taskrun()) return io_uring_submit_and_get_events(ring);
  return io_uring_submit(ring);
}

OpCounts UringBackend::op_counts() const {
  OpCounts counts = counters_.snapshot();
  counts.quiesces = group_ ? group_->stats().quiesces : 0;
  return counts;
}

std::string UringBackend::describe() const {
  return "uring (" + ring_->describe_flags() + "; " + support_.describe() + ")";
}

int UringBackend::register_sparse(uint32_t slot_count) {
  return io_uring_register_buffers_sparse(ring_->get(), slot_count);
}

int UringBackend::update_slots(uint32_t first_slot, const iovec* iovecs, uint32_t count) {
  // Tag 0: no release CQE. Only free slots are cleared or replaced, so no
  // request can still be using the buffer that leaves the table.
  static const __u64 kZeroTags[64] = {};
  int done = 0;
  while (count > 0) {
    const uint32_t batch = std::min<uint32_t>(count, 64);
    const int rc = io_uring_register_buffers_update_tag(ring_->get(), first_slot, iovecs, kZeroTags, batch);
    if (rc < 0) return done > 0 ? done : rc;
    done += rc;
    // The kernel stops at the first buffer it cannot register (ENOMEM from
    // RLIMIT_MEMLOCK, ...) and reports only the slots it took: stop there
    // too, so that the caller sees exactly which prefix is registered.
    if (static_cast<uint32_t>(rc) < batch) return done;
    first_slot += batch;
    iovecs += batch;
    count -= batch;
  }
  return done;
}

int UringBackend::register_table(const iovec* iovecs, uint32_t count) {
  return io_uring_register_buffers(ring_->get(), iovecs, count);
}

int UringBackend::unregister_table() { return io_uring_unregister_buffers(ring_->get()); }

}  // namespace ringio::uring
