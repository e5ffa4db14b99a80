// RegisteredBufferGroup: a pool of page-aligned I/O buffers registered with
// one ring (fixed buffers), handed out by a checkout() that never blocks and
// never allocates. A miss is a value, not a wait: the caller parks its work
// until a completion gives a buffer back.
//
// The pool belongs to one ring and one thread. Its counters have one writer
// and may be read from any thread at any time (stats()).
#pragma once

#include <cstddef>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ringio/adaptive_buffer_sizer.hpp"
#include "ringio/config.hpp"
#include "ringio/pinned_memory_budget.hpp"

namespace ringio {

enum class Registration : uint8_t {
  registered,    // every active buffer is a registered (fixed) buffer
  unregistered,  // plain buffers: plain READ/WRITE (posix, refused registration, budget)
};

struct RegisteredBufferStats {
  uint64_t total_acquires = 0;  // every checkout(), hit or miss
  uint64_t total_misses = 0;    // checkout() calls that found no free buffer
  uint32_t buffer_count = 0;    // active buffers
  uint32_t buffer_size = 0;     // bytes per buffer
  uint32_t in_use = 0;
  uint32_t peak_in_use = 0;
  uint64_t growths = 0;
  uint64_t shrinks = 0;
  uint64_t failed_resizes = 0;  // grows refused by the budget or the kernel
  uint64_t resize_ns = 0;       // time spent applying resizes
  uint64_t quiesces = 0;        // full re-registrations at a quiescent point
  uint32_t max_buffers = 0;     // effective MAX (config, kernel cap, budget)
  Registration registration = Registration::unregistered;
  std::string registration_note;  // why unregistered, or why the pool is capped

  double miss_rate() const {
    return total_acquires == 0 ? 0.0
                               : static_cast<double>(total_misses) /
                                     static_cast<double>(total_acquires);
  }
};

// One line: "acquires=N misses=M miss_rate=P% growths=G shrinks=S buffers=B ..."
std::string format_stats_line(const RegisteredBufferStats& stats);

// How buffer memory is obtained and given back. Tests inject a deallocator to
// check teardown order (the kernel's pin is invisible to AddressSanitizer).
struct BufferAllocator {
  std::function<void*(size_t bytes)> allocate;            // page-aligned or nullptr
  std::function<void(void* memory, size_t bytes)> deallocate;
  static BufferAllocator anonymous_pages();  // mmap(MAP_ANONYMOUS) / munmap
};

// What the group needs from a ring to register buffers: implemented by the
// io_uring backend, internal to the library. A group built outside a backend
// has no ring and is given nullptr.
class BufferRegistrar;
class RegisteredBufferGroup;

// RAII handle on one checked-out buffer; destroying it gives the buffer back.
// Empty (operator bool false) on a miss.
class BufferSlot {
 public:
  BufferSlot() = default;
  BufferSlot(BufferSlot&& other) noexcept;
  BufferSlot& operator=(BufferSlot&& other) noexcept;
  BufferSlot(const BufferSlot&) = delete;
  BufferSlot& operator=(const BufferSlot&) = delete;
  ~BufferSlot() { release(); }

  explicit operator bool() const { return group_ != nullptr; }
  std::byte* data() const { return data_; }
  uint32_t size() const { return size_; }
  uint32_t slot() const { return slot_; }
  // The registered index for READ_FIXED / WRITE_FIXED, or -1 when the buffer
  // is not registered (use plain READ / WRITE).
  int32_t fixed_index() const { return fixed_index_; }
  void release();

 private:
  friend class RegisteredBufferGroup;
  BufferSlot(RegisteredBufferGroup* group, uint32_t slot, std::byte* data, uint32_t size,
             int32_t fixed_index)
      : group_(group), data_(data), size_(size), slot_(slot), fixed_index_(fixed_index) {}

  RegisteredBufferGroup* group_ = nullptr;
  std::byte* data_ = nullptr;
  uint32_t size_ = 0;
  uint32_t slot_ = 0;
  int32_t fixed_index_ = -1;
};

struct BufferGroupOptions {
  uint32_t buffer_size_bytes = 64 * 1024;
  uint32_t initial_buffers = 8;
  uint32_t min_buffers = 2;
  uint32_t max_buffers = 64;
  bool adaptive = true;
  ResizeMode resize_mode = ResizeMode::sparse;
  SizerConfig sizer;  // min/max are overwritten from the fields above
  BufferAllocator allocator = BufferAllocator::anonymous_pages();
  PinnedMemoryBudget* budget = &PinnedMemoryBudget::process();

  static BufferGroupOptions from(const IoConfig& config);
};

class RegisteredBufferGroup {
 public:
  // registrar == nullptr: no ring to register with (posix backend); the pool
  // then runs with plain buffers and says so in its stats.
  RegisteredBufferGroup(BufferGroupOptions options, BufferRegistrar* registrar,
                        std::string unregistered_reason = {});
  ~RegisteredBufferGroup();
  RegisteredBufferGroup(const RegisteredBufferGroup&) = delete;
  RegisteredBufferGroup& operator=(const RegisteredBufferGroup&) = delete;

  // Never blocks, never allocates. Counts one acquire, and a miss when every
  // active buffer is in use (or the pool is draining for a re-registration).
  BufferSlot checkout();

  RegisteredBufferStats stats() const;
  uint32_t buffer_count() const { return active_count_; }
  uint32_t buffer_size() const { return options_.buffer_size_bytes; }
  uint32_t in_use() const { return in_use_; }
  // True when checkout() would hand out a buffer now: a free active slot and
  // no re-registration draining the pool. in_use() cannot say this: it
  // also counts slots a shrink retired that are still checked out.
  bool can_checkout() const { return !draining_ && !free_slots_.empty(); }
  bool registered() const { return registration_ == Registration::registered; }

  // The resize driver. apply_pending_resize() is called by the owner of the
  // ring between batches (never from checkout): it applies what the sizer
  // decided at the last window boundary. resize_to() is the same mechanism
  // driven by hand (tests, --buffers=N). Both return the active count reached.
  uint32_t apply_pending_resize();
  uint32_t resize_to(uint32_t target_count);
  bool resize_pending() const { return pending_target_ != 0; }

  // The ring is going away: drop the registration bookkeeping (the kernel
  // releases the table with the ring). Memory stays until destruction.
  void detach_registrar();
  // The kernel may still write into this memory (requests it never gave
  // back): never free or reuse it. It stays mapped until the process ends.
  void abandon_memory();

 private:
  friend class BufferSlot;
  struct SlotState {
    std::byte* memory = nullptr;
    bool in_use = false;
    bool retiring = false;  // above the active count; freed once given back
    bool registered = false;
    // Retired, but the kernel refused to clear its table entry: the table
    // still points at this memory, so it stays allocated and charged until
    // the registration goes (or a growth takes the slot back as it is).
    bool uncleared = false;
  };

  void give_back(uint32_t slot);
  void end_window();
  uint32_t grow_to(uint32_t target_count);
  // Allocates, charges and registers slots [first, first + count); returns
  // how many it added (a prefix), each pushed on the free stack.
  uint32_t fill_slots(uint32_t first, uint32_t count);
  uint32_t shrink_to(uint32_t target_count);
  bool register_initial();
  bool reregister_all();
  void retire_slot(uint32_t slot);
  void release_all_slots();
  void free_slot_memory(uint32_t slot);
  uint32_t budget_limited_max(std::string* why) const;

  BufferGroupOptions options_;
  BufferRegistrar* registrar_;
  Registration registration_ = Registration::unregistered;
  std::string registration_note_;
  // What stats() reports of the fields above, copied by the owner after each
  // change (constructor, resize): another thread may read stats() any time.
  void publish_state();
  mutable std::mutex published_mutex_;
  Registration published_registration_ = Registration::unregistered;
  std::string published_note_;
  uint32_t published_max_ = 0;

  std::vector<SlotState> slots_;       // capacity = max_buffers, fixed up front
  std::vector<uint32_t> free_slots_;   // stack of free active slots, reserved up front
  uint32_t active_count_ = 0;
  uint32_t in_use_ = 0;
  uint32_t max_count_ = 0;
  uint64_t charged_bytes_ = 0;
  std::chrono::steady_clock::time_point released_at_{};  // pinned pages last let go
  bool enomem_retry_may_help_ = true;  // see retrying_enomem()

  std::unique_ptr<AdaptiveBufferSizer> sizer_;
  // The sizer's windows are cut from the telemetry counters acquires_ and
  // misses_: one count serves both.
  uint64_t window_first_acquire_ = 0;
  uint64_t window_first_miss_ = 0;
  uint32_t window_peak_in_use_ = 0;
  uint32_t pending_target_ = 0;
  bool pending_from_sizer_ = false;  // pending_target_ is the sizer's decision
  bool draining_ = false;  // re-registration waits for a quiescent point

  // The telemetry counters (acquires, misses, peak in use, growths, ...),
  // defined in buffer_group.cpp. They have one writer (the owner) and are
  // read by stats() from any thread. Stored in place, not behind a pointer:
  // checkout() counts every acquire.
  struct Telemetry;
  static constexpr size_t kTelemetryBytes = 10 * sizeof(uint64_t);
  Telemetry& telemetry();
  const Telemetry& telemetry() const;
  alignas(uint64_t) std::byte telemetry_storage_[kTelemetryBytes];
};

}  // namespace ringio
