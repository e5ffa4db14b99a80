// FaultInjectingBackend: a decorator over any ringio Backend that makes
// chosen operations fail (ENOSPC, EIO, EINTR, EAGAIN), complete short (the
// request is forwarded with a smaller length), or refuses buffer
// registration, so that the real copy engine meets the faults a disk, a
// kernel or a full filesystem can produce.
//
// Determinism: io_uring completes in any order, so a decision must not
// depend on the position of a request in the submission or completion
// stream. Each decision is a hash of (seed, fault kind, operation, the name
// the request is about, its offset, and how many times that same key was
// seen before). The name is a path relative to the "roots" the test names
// (so two runs in different scratch directories agree), the name a file
// descriptor was opened under for descriptor operations, and a per-directory
// sequence number for unnamed O_TMPFILE inodes (they are created in walk
// order). Random temporary names (".ringcp-XXXX") are folded to one name.
// The same seed on the same tree therefore injects the same faults into the
// same operations, whatever the completion order; RINGIO_FAULT_SEED replays
// a seed a failing test printed.
//
// Injected failures are not forwarded: the request completes with the errno
// and its user_data from submit_and_reap(), and in_flight() counts it until
// then. close() and unmap are never failed (not forwarding them would leak
// the descriptor or the mapping, and Linux closes the descriptor even when
// close reports an error). A mapping is named after the file it maps, so
// madvise on part of it is keyed by that name and the offset in it.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/buffer_registrar.hpp"
#include "ringio/backend.hpp"
#include "ringio/buffer_group.hpp"

namespace ringio::test {

enum class FaultKind : uint8_t {
  enospc,        // completes with -ENOSPC
  eio,           // completes with -EIO
  eintr,         // completes with -EINTR (transient: the caller resubmits)
  eagain,        // completes with -EAGAIN (transient)
  short_read,    // forwarded with a smaller length
  short_write,   // forwarded with a smaller length
  registration,  // buffer registration refused (ENOMEM), see RegistrationFault
  enomem,        // completes with -ENOMEM (no address space for a mapping)
  einval,        // completes with -EINVAL (the filesystem refuses O_DIRECT)
  count_,
};
inline constexpr size_t kFaultKindCount = static_cast<size_t>(FaultKind::count_);
const char* fault_kind_name(FaultKind kind);
// The errno a failure of this kind completes with (0 for short transfers).
int errno_of(FaultKind kind);

// A set of operations, one bit per Op.
using OpMask = uint64_t;
static_assert(kOpCount <= 64, "OpMask holds one bit per Op");
constexpr OpMask op_bit(Op op) { return OpMask{1} << static_cast<unsigned>(op); }

// Operations a full filesystem refuses with ENOSPC.
OpMask default_enospc_ops();
// Operations that can fail with EIO and whose failure the engine must
// report (statx included: a failed statx of a *target* may be tolerated).
OpMask default_eio_ops();
// Operations whose failure the copy engine must report as an error:
// default_eio_ops() less statx (the engine may legitimately fall back when a
// target's statx fails; a source's statx failure is still reported).
OpMask must_report_ops();
// Where EINTR/EAGAIN and short transfers are injected: data operations.
OpMask default_transient_ops();
// Where ENOMEM is injected: map_file (mmap runs out of address space or
// of vm.max_map_count).
OpMask default_enomem_ops();
// Where EINVAL is injected: set_direct_io (a filesystem without O_DIRECT).
// A refusal the engine must take as "not here", not as an error.
OpMask default_refusal_ops();
// Operations the engine never has to see fail: close and unmap.
OpMask never_failed_ops();

// How buffer registration fails. The group is created inside the backend
// (UringBackend::create registers with its own ring), so the decorator
// cannot intercept that call; instead it gives the engine its *own*
// RegisteredBufferGroup, built from the same IoConfig with a registrar that
// refuses like the kernel does when RLIMIT_MEMLOCK runs out (ENOMEM, or a
// partial update that stops at the first buffer it cannot pin), and forwards
// every read/write to the inner backend as a plain (unregistered) transfer.
// The group's real fallback code runs: a refused initial registration leaves
// the pool unregistered with a note; a cap below the initial count makes the
// group halve until it fits; a refused growth counts a failed resize.
enum class RegistrationFault : uint8_t {
  none,        // the inner backend's own pool
  refuse_all,  // every registration fails with ENOMEM: unregistered pool
  cap,         // at most registered_buffers_max buffers register, then ENOMEM
};

// A registrar that pins at most `cap` buffers, like the kernel when
// RLIMIT_MEMLOCK runs out: slots are taken in order until one cannot be
// pinned, and the count taken is returned, or refused() (ENOMEM) when not
// even the first fits. Nothing is registered with a ring.
class CappedRegistrar : public BufferRegistrar {
 public:
  explicit CappedRegistrar(uint32_t cap) : cap_(cap) {}
  bool supports_sparse_update() const override { return true; }
  uint32_t kernel_buffer_cap() const override { return 16384; }
  int register_sparse(uint32_t) override { return 0; }
  int update_slots(uint32_t first, const iovec* iovecs, uint32_t count) override;
  int register_table(const iovec* iovecs, uint32_t count) override;
  int unregister_table() override;
  uint32_t fixed_ops_in_flight() const override { return fixed_in_flight; }

  uint32_t fixed_in_flight = 0;  // kept by a backend that runs fixed ops on these buffers

 protected:
  virtual int refused();

 private:
  uint32_t cap_;
  uint32_t registered_ = 0;
};

struct FaultSchedule {
  // Probability per eligible operation, in [0, 1].
  double enospc = 0;
  double eio = 0;
  double eintr = 0;
  double eagain = 0;
  double short_read = 0;
  double short_write = 0;
  double enomem = 0;
  double einval = 0;
  OpMask enospc_ops = default_enospc_ops();
  OpMask eio_ops = default_eio_ops();
  OpMask transient_ops = default_transient_ops();
  OpMask enomem_ops = default_enomem_ops();
  OpMask einval_ops = default_refusal_ops();
  RegistrationFault registration = RegistrationFault::none;
  uint32_t registered_buffers_max = 4;  // for RegistrationFault::cap

  bool any_hard() const { return enospc > 0 || eio > 0; }
  // Whether this schedule can inject `kind` at all.
  bool draws(FaultKind kind) const;
  std::string describe() const;
};

struct FaultCounts {
  std::array<uint64_t, kFaultKindCount> injected{};
  std::array<uint64_t, kFaultKindCount> hit{};  // the engine received the completion
  std::array<uint64_t, kOpCount> injected_by_op{};  // every kind but registration
  uint64_t hard_hits = 0;         // ENOSPC/EIO completions delivered
  uint64_t must_report_hits = 0;  // ... on an operation in must_report_ops()

  uint64_t injected_of(FaultKind kind) const { return injected[size_t(kind)]; }
  uint64_t hit_of(FaultKind kind) const { return hit[size_t(kind)]; }
  FaultCounts& operator+=(const FaultCounts& other);
  std::string describe() const;  // "enospc=3/3 eio=1/1 ..." (injected/hit)
  std::string describe_by_op() const;  // "read=12 getdents=1 ..." (ops with injections)
};

// One injected fault, for replay and for comparing two runs of a seed.
struct FaultRecord {
  FaultKind kind;
  Op op;
  std::string key_name;
  uint64_t offset;
  uint32_t occurrence;
  uint64_t length_before = 0;  // short transfers: requested, then forwarded
  uint64_t length_after = 0;
  std::string describe() const;
};

// Outlives the backend (run_copy destroys it before returning).
struct FaultLog {
  FaultCounts counts;
  std::vector<FaultRecord> records;
  bool keep_records = true;
  // Every decision, injected or not: "op 'name' offset=N #k" -> fault kind
  // or "-". Two runs of a seed agree on every key both have; which keys a
  // run has can differ (work cancelled after a failure depends on timing).
  std::map<std::string, std::string> decisions;
  bool keep_decisions = false;
};

class FaultInjectingBackend final : public Backend {
 public:
  // `roots`: path prefixes replaced by "<0>", "<1>", ... in fault keys, so
  // that runs in different scratch directories make the same decisions.
  // `io` is needed only for a RegistrationFault (the decorator's own pool).
  FaultInjectingBackend(std::unique_ptr<Backend> inner, uint64_t seed, FaultSchedule schedule,
                        std::shared_ptr<FaultLog> log, std::vector<std::string> roots = {},
                        const IoConfig& io = IoConfig::defaults());
  ~FaultInjectingBackend() override;

  BackendKind kind() const override { return inner_->kind(); }
  bool prepare(const Request& request) override;
  int64_t execute_now(const Request& request) override;
  int submit_and_reap(std::span<Completion> out, unsigned min_completions) override;
  uint32_t in_flight() const override {
    return inner_->in_flight() + static_cast<uint32_t>(injected_.size());
  }
  RegisteredBufferGroup& buffers() override { return own_group_ ? *own_group_ : inner_->buffers(); }
  OpCounts op_counts() const override { return inner_->op_counts(); }
  std::string describe() const override { return "faulty(" + inner_->describe() + ")"; }

  Backend& inner() { return *inner_; }

 private:
  class RefusingRegistrar;
  struct Pending {
    Op op = Op::nop;
    std::string name;      // for openat: the name the new descriptor gets
    int fd = -1;           // for close: the descriptor that goes away
    uintptr_t address = 0; // for unmap: the mapping that goes away
    uint64_t length = 0;   // for map_file: the mapping's length
    int fault = -1;        // FaultKind of a short transfer, or -1
    bool must_report = false;
    bool fixed = false;    // counted in RefusingRegistrar's fixed ops in flight
  };

  std::string strip_roots(const std::string& path) const;
  std::string fd_name(int fd) const;
  std::string mapping_name(const void* address, uint64_t length) const;
  std::string resolve(int dirfd, const char* path) const;
  std::string tmpfile_directory(const Request& request) const;
  std::string key_name(const Request& request);
  void count_injected(FaultKind kind, Op op);
  static std::string fault_key(const Request& request, const std::string& name);
  double draw(FaultKind kind, const std::string& key, uint32_t occurrence, uint64_t salt = 0) const;
  std::optional<FaultKind> draw_failure(const Request& request, const std::string& key,
                                        uint32_t occurrence) const;
  int draw_short(Request& request, const std::string& key, uint32_t occurrence) const;
  void remember(const Request& request, const std::string& name, int short_kind, bool fixed);
  void record(FaultKind kind, const Request& request, const std::string& name, uint32_t occurrence,
              uint64_t before = 0, uint64_t after = 0);

  // Declared before inner_ so that it is destroyed after it: the inner
  // backend drains its in-flight requests (which may point into this
  // group's buffers) in its destructor.
  std::unique_ptr<RefusingRegistrar> registrar_;
  std::unique_ptr<RegisteredBufferGroup> own_group_;
  std::unique_ptr<Backend> inner_;

  uint64_t seed_;
  FaultSchedule schedule_;
  std::shared_ptr<FaultLog> log_;
  std::vector<std::string> roots_;

  std::unordered_map<int, std::string> fd_names_;
  struct Mapping {
    uint64_t length = 0;
    std::string name;  // the file's
  };
  std::map<uintptr_t, Mapping> mappings_;  // by start address, from map_file to unmap
  std::unordered_map<std::string, uint32_t> tmpfile_sequence_;  // per directory name
  std::unordered_map<std::string, uint32_t> occurrences_;
  std::unordered_map<uint64_t, Pending> pending_;  // by user_data, forwarded requests
  struct Injected {
    Completion completion;
    FaultKind kind;
    Op op;
  };
  std::deque<Injected> injected_;
};

// RINGIO_FAULT_SEED, when set: the seed to replay.
std::optional<uint64_t> replay_seed_from_env();

}  // namespace ringio::test
