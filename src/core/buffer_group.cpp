#include "ringio/buffer_group.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cstring>
#include <string>
#include <new>
#include <thread>
#include <type_traits>

#include "core/buffer_registrar.hpp"
#include "core/counters.hpp"

namespace ringio {

// The group's counters, in the storage the public class reserves for them
// (the class layout is the one a member list would give: no indirection on
// checkout()).
struct RegisteredBufferGroup::Telemetry {
  SingleWriterCounter acquires;
  SingleWriterCounter misses;
  PublishedValue peak_in_use;
  SingleWriterCounter growths;
  SingleWriterCounter shrinks;
  SingleWriterCounter failed_resizes;
  SingleWriterCounter resize_ns;
  SingleWriterCounter quiesces;
  PublishedValue published_in_use;
  PublishedValue published_count;
};
inline RegisteredBufferGroup::Telemetry& RegisteredBufferGroup::telemetry() {
  return *std::launder(reinterpret_cast<Telemetry*>(telemetry_storage_));
}

inline const RegisteredBufferGroup::Telemetry& RegisteredBufferGroup::telemetry() const {
  return *std::launder(reinterpret_cast<const Telemetry*>(telemetry_storage_));
}

namespace {

// A registration the budget allowed but the kernel refused with ENOMEM,
// shortly after this group let pinned pages go, is asked again for a short
// while before the refusal counts: pages are unpinned when the kernel drops
// its last reference to them, which can come after the completions that
// used them were reaped. A refusal with no release before it (another
// process of the user holds the memory) counts at once, and so does every
// refusal once waiting did not help (`retry_may_help` turns false): at most
// one wait in a group's life is spent on a refusal that lasts.
constexpr std::chrono::milliseconds kEnomemRetry{25};
constexpr std::chrono::milliseconds kRecentRelease{100};

template <class Register>
int retrying_enomem(std::chrono::steady_clock::time_point released_at, bool& retry_may_help,
                    Register&& attempt) {
  const auto now = std::chrono::steady_clock::now();
  const bool wait = retry_may_help && now - released_at < kRecentRelease;
  const auto deadline = wait ? now + kEnomemRetry : now;
  for (;;) {
    const int rc = attempt();
    if (rc != -ENOMEM) return rc;
    if (std::chrono::steady_clock::now() >= deadline) {
      if (wait) retry_may_help = false;
      return rc;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace


// ---------------------------------------------------------------- helpers --

std::string format_stats_line(const RegisteredBufferStats& stats) {
  char rate[32];
  std::snprintf(rate, sizeof rate, "%.2f", stats.miss_rate() * 100.0);
  std::string line = "acquires=" + std::to_string(stats.total_acquires) +
                     " misses=" + std::to_string(stats.total_misses) + " miss_rate=" + rate +
                     "% growths=" + std::to_string(stats.growths) +
                     " shrinks=" + std::to_string(stats.shrinks) +
                     " buffers=" + std::to_string(stats.buffer_count);
  line += " buffer_size=" + std::to_string(stats.buffer_size);
  line += " peak_in_use=" + std::to_string(stats.peak_in_use);
  line += " max_buffers=" + std::to_string(stats.max_buffers);
  line += " failed_resizes=" + std::to_string(stats.failed_resizes);
  line += " resize_us=" + std::to_string(stats.resize_ns / 1000);
  line += " quiesces=" + std::to_string(stats.quiesces);
  line += stats.registration == Registration::registered ? " registered=yes" : " registered=no";
  if (!stats.registration_note.empty()) line += " note=\"" + stats.registration_note + "\"";
  return line;
}

BufferAllocator BufferAllocator::anonymous_pages() {
  BufferAllocator allocator;
  // Anonymous mappings are page-aligned (O_DIRECT-safe) and are the only
  // memory the kernel lets us register without restrictions.
  allocator.allocate = [](size_t bytes) -> void* {
    void* memory = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return memory == MAP_FAILED ? nullptr : memory;
  };
  allocator.deallocate = [](void* memory, size_t bytes) { munmap(memory, bytes); };
  return allocator;
}

BufferGroupOptions BufferGroupOptions::from(const IoConfig& config) {
  BufferGroupOptions options;
  options.buffer_size_bytes = config.buffer_size_bytes;
  options.initial_buffers = config.initial_buffers;
  options.min_buffers = config.min_buffers;
  options.max_buffers = config.max_buffers;
  options.adaptive = config.adaptive_buffers == AdaptiveBuffers::automatic;
  options.resize_mode = config.resize_mode;
  return options;
}

// ------------------------------------------------------------- BufferSlot --

BufferSlot::BufferSlot(BufferSlot&& other) noexcept { *this = std::move(other); }

BufferSlot& BufferSlot::operator=(BufferSlot&& other) noexcept {
  if (this != &other) {
    release();
    group_ = std::exchange(other.group_, nullptr);
    data_ = std::exchange(other.data_, nullptr);
    size_ = other.size_;
    slot_ = other.slot_;
    fixed_index_ = other.fixed_index_;
  }
  return *this;
}

void BufferSlot::release() {
  if (group_ != nullptr) std::exchange(group_, nullptr)->give_back(slot_);
  data_ = nullptr;
}

// -------------------------------------------------- RegisteredBufferGroup --

RegisteredBufferGroup::RegisteredBufferGroup(BufferGroupOptions options,
                                             BufferRegistrar* registrar,
                                             std::string unregistered_reason)
    : options_(std::move(options)), registrar_(registrar) {
  // The header reserves the storage; the destructor need not end its life.
  static_assert(sizeof(Telemetry) == kTelemetryBytes && alignof(Telemetry) <= alignof(uint64_t));
  static_assert(std::is_trivially_destructible_v<Telemetry>);
  new (telemetry_storage_) Telemetry();
  assert(options_.min_buffers >= 1 && options_.min_buffers <= options_.max_buffers);
  options_.initial_buffers =
      std::clamp(options_.initial_buffers, options_.min_buffers, options_.max_buffers);
  max_count_ = options_.max_buffers;
  if (registrar_ != nullptr) max_count_ = std::min(max_count_, registrar_->kernel_buffer_cap());
  max_count_ = std::max(max_count_, options_.min_buffers);
  // Every container is sized up front so that checkout() never allocates.
  slots_.resize(max_count_);
  free_slots_.reserve(max_count_);

  if (registrar_ == nullptr || !register_initial()) {
    registrar_ = nullptr;
    registration_ = Registration::unregistered;
    if (registration_note_.empty())
      registration_note_ = unregistered_reason.empty() ? "no ring to register with"
                                                       : std::move(unregistered_reason);
    grow_to(options_.initial_buffers);
  }
  telemetry().growths.set(0);  // the initial fill is not a growth

  if (options_.adaptive) {
    SizerConfig sizer_config = options_.sizer;
    sizer_config.min_buffers = options_.min_buffers;
    sizer_config.max_buffers = std::max(max_count_, options_.min_buffers);
    sizer_ = std::make_unique<AdaptiveBufferSizer>(sizer_config, active_count_);
  }
  publish_state();
}

RegisteredBufferGroup::~RegisteredBufferGroup() {
  assert(in_use_ == 0 && "a BufferSlot outlived its group");
  for (uint32_t slot = 0; slot < slots_.size(); ++slot) free_slot_memory(slot);
  if (charged_bytes_ != 0) options_.budget->release(charged_bytes_);
}

uint32_t RegisteredBufferGroup::budget_limited_max(std::string* why) const {
  const uint64_t size = options_.buffer_size_bytes;
  const uint64_t affordable = (charged_bytes_ + options_.budget->available_bytes()) / size;
  if (affordable < max_count_) {
    if (why != nullptr)
      *why = "pinned-memory budget " + options_.budget->source() + " allows " +
             std::to_string(affordable) + " buffers of " + std::to_string(size) + " bytes";
    return static_cast<uint32_t>(affordable);
  }
  return max_count_;
}

bool RegisteredBufferGroup::register_initial() {
  std::string why;
  const uint32_t affordable = budget_limited_max(&why);
  if (affordable < options_.min_buffers) {
    registration_note_ = why + ", fewer than the minimum " +
                         std::to_string(options_.min_buffers) + ": running unregistered";
    return false;
  }
  if (affordable < max_count_) {
    max_count_ = affordable;
    registration_note_ = why + ": pool capped";
  }

  const bool sparse =
      options_.resize_mode == ResizeMode::sparse && registrar_->supports_sparse_update();
  if (!sparse) options_.resize_mode = ResizeMode::reregister;
  registration_ = Registration::registered;
  if (sparse) {
    // One sparse table of MAX slots, registered once: growing fills slots,
    // shrinking clears them, and in-flight I/O is never stalled.
    const int rc = registrar_->register_sparse(max_count_);
    if (rc < 0) {
      registration_note_ = std::string("sparse buffer registration refused: ") + strerror(-rc) +
                           ": running unregistered";
      return false;
    }
    // The kernel may refuse the whole initial set (ENOMEM from another
    // process of the same user): halve until it fits or MIN is reached.
    uint32_t want = std::min(options_.initial_buffers, max_count_);
    for (;;) {
      if (grow_to(want) >= options_.min_buffers) return true;
      release_all_slots();
      if (want <= options_.min_buffers) break;
      want = std::max(want / 2, options_.min_buffers);
    }
    registrar_->unregister_table();
    // The table is gone: slots whose clearing was refused can go now too.
    for (uint32_t slot = 0; slot < slots_.size(); ++slot) free_slot_memory(slot);
    options_.budget->release(charged_bytes_);
    charged_bytes_ = 0;
    registration_note_ += ": running unregistered";
    return false;
  }
  pending_target_ = std::min(options_.initial_buffers, max_count_);
  const bool ok = reregister_all();
  pending_target_ = 0;
  return ok;
}

void RegisteredBufferGroup::release_all_slots() {
  for (uint32_t slot = 0; slot < active_count_; ++slot) retire_slot(slot);
  free_slots_.clear();
  active_count_ = 0;
  telemetry().published_count.set(0);
}

BufferSlot RegisteredBufferGroup::checkout() {
  Telemetry& counts = telemetry();
  counts.acquires.add();
  BufferSlot slot;
  if (draining_ || free_slots_.empty()) {
    counts.misses.add();
  } else {
    const uint32_t index = free_slots_.back();
    free_slots_.pop_back();
    SlotState& state = slots_[index];
    state.in_use = true;
    // A local copy: the counters' stores would otherwise make the compiler
    // load in_use_ again (it cannot tell they do not overlap it).
    const uint32_t in_use = ++in_use_;
    counts.published_in_use.set(in_use);
    if (in_use > counts.peak_in_use.get()) counts.peak_in_use.set(in_use);
    window_peak_in_use_ = std::max(window_peak_in_use_, in_use);
    const int32_t fixed = state.registered ? static_cast<int32_t>(index) : -1;
    slot = BufferSlot(this, index, state.memory, options_.buffer_size_bytes, fixed);
  }
  if (sizer_ && counts.acquires.get() - window_first_acquire_ >= options_.sizer.window_acquires)
    end_window();
  return slot;
}

void RegisteredBufferGroup::end_window() {
  const uint64_t acquires = telemetry().acquires.get();
  const uint64_t misses = telemetry().misses.get();
  const WindowSample sample{static_cast<double>(misses - window_first_miss_) /
                                static_cast<double>(acquires - window_first_acquire_),
                            window_peak_in_use_};
  const SizerDecision decision = sizer_->on_window(sample);
  if (decision.action != SizerAction::keep) {
    pending_target_ = decision.buffer_count;
    pending_from_sizer_ = true;
  }
  window_first_acquire_ = acquires;
  window_first_miss_ = misses;
  window_peak_in_use_ = in_use_;
}

void RegisteredBufferGroup::give_back(uint32_t slot) {
  SlotState& state = slots_[slot];
  assert(state.in_use);
  state.in_use = false;
  --in_use_;
  telemetry().published_in_use.set(in_use_);
  if (state.retiring) {
    retire_slot(slot);
  } else {
    free_slots_.push_back(slot);
  }
}

uint32_t RegisteredBufferGroup::resize_to(uint32_t target_count) {
  if (sizer_ && pending_from_sizer_) {
    // The sizer's decision is superseded, not refused: close it at its own
    // target, or the sizer would take the count reached below for a refused
    // grow and stop growing for the rest of the run.
    sizer_->on_resize_applied(sizer_->buffer_count());
  }
  pending_from_sizer_ = false;
  pending_target_ = std::clamp(target_count, options_.min_buffers, max_count_);
  return apply_pending_resize();
}

uint32_t RegisteredBufferGroup::apply_pending_resize() {
  if (pending_target_ == 0) return active_count_;
  const auto started = std::chrono::steady_clock::now();
  const uint32_t target = std::clamp(pending_target_, options_.min_buffers, max_count_);
  const uint32_t before = active_count_;
  if (target != before) {
    if (registered() && options_.resize_mode == ResizeMode::reregister) {
      // The whole table is replaced at a quiescent point: no checkout is
      // served until every buffer is back and no fixed request is in flight.
      if (in_use_ != 0 || registrar_->fixed_ops_in_flight() != 0) {
        draining_ = true;
        return active_count_;
      }
      pending_target_ = target;
      telemetry().quiesces.add();
      if (!reregister_all()) grow_to(target);
    } else if (target > before) {
      grow_to(target);
    } else {
      shrink_to(target);
    }
    if (active_count_ > before) telemetry().growths.add();
    if (active_count_ < before) telemetry().shrinks.add();
    if (target > before && active_count_ < target) telemetry().failed_resizes.add();
  }
  draining_ = false;
  pending_target_ = 0;
  pending_from_sizer_ = false;
  if (sizer_) sizer_->on_resize_applied(active_count_);
  const auto spent = std::chrono::steady_clock::now() - started;
  telemetry().resize_ns.add(static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(spent).count()));
  publish_state();
  return active_count_;
}

uint32_t RegisteredBufferGroup::grow_to(uint32_t target_count) {
  target_count = std::min(target_count, max_count_);
  while (active_count_ < target_count) {
    const uint32_t first = active_count_;
    SlotState& state = slots_[first];
    if (state.retiring || state.uncleared) {
      // Retired by an earlier shrink but still checked out (its I/O in
      // flight), or free but still in the table: it has its memory and its
      // registration, so growing over it only cancels the retirement. It
      // comes back as an active slot.
      if (state.uncleared) free_slots_.push_back(first);
      state.retiring = false;
      state.uncleared = false;
      ++active_count_;
      continue;
    }
    uint32_t end = first + 1;
    while (end < target_count && !slots_[end].retiring && !slots_[end].uncleared) ++end;
    const uint32_t added = fill_slots(first, end - first);
    active_count_ = first + added;
    if (added < end - first) break;
  }
  telemetry().published_count.set(active_count_);
  return active_count_;
}

uint32_t RegisteredBufferGroup::fill_slots(uint32_t first, uint32_t count) {
  const size_t size = options_.buffer_size_bytes;
  const bool pin = registration_ == Registration::registered && registrar_ != nullptr;
  if (pin) {
    // Refuse before the syscall what the budget cannot hold.
    const uint64_t affordable = options_.budget->available_bytes() / size;
    if (affordable < count) count = static_cast<uint32_t>(affordable);
    if (count == 0) return 0;
  }
  uint32_t allocated = 0;
  for (; allocated < count; ++allocated) {
    SlotState& state = slots_[first + allocated];
    assert(state.memory == nullptr && !state.in_use);
    state.memory = static_cast<std::byte*>(options_.allocator.allocate(size));
    if (state.memory == nullptr) break;
  }
  count = allocated;
  if (pin && count != 0) {
    const uint64_t bytes = uint64_t{count} * size;
    int rc = options_.budget->try_charge(bytes) ? 0 : -ENOMEM;
    const bool charged = rc == 0;
    uint32_t done = 0;
    iovec iovecs[64];
    while (rc >= 0 && done < count) {
      const uint32_t batch = std::min<uint32_t>(count - done, 64);
      for (uint32_t i = 0; i < batch; ++i)
        iovecs[i] = iovec{slots_[first + done + i].memory, size};
      rc = retrying_enomem(released_at_, enomem_retry_may_help_, [&] { return registrar_->update_slots(first + done, iovecs, batch); });
      // The kernel may take only the first rc slots of a batch (it stops at
      // the first buffer it cannot pin): count those, and let the next call
      // on the rest report why.
      if (rc > 0) done += std::min(static_cast<uint32_t>(rc), batch);
      if (rc == 0) rc = -EIO;  // no progress and no errno: stop
    }
    if (rc < 0) {
      // Keep what the kernel took; the rest is freed and uncharged.
      registration_note_ = std::string("growth refused: ") + strerror(-rc) +
                           (charged ? "" : " (pinned-memory budget)");
      if (charged) options_.budget->release(uint64_t{count - done} * size);
      for (uint32_t i = done; i < count; ++i) free_slot_memory(first + i);
      count = done;
    }
    charged_bytes_ += uint64_t{count} * size;
    for (uint32_t i = 0; i < count; ++i) slots_[first + i].registered = true;
  }
  for (uint32_t i = count; i > 0; --i) free_slots_.push_back(first + i - 1);
  return count;
}

uint32_t RegisteredBufferGroup::shrink_to(uint32_t target_count) {
  target_count = std::max(target_count, options_.min_buffers);
  if (target_count >= active_count_) return active_count_;
  // Retire the highest slots: free ones now, busy ones when they come back.
  for (uint32_t slot = target_count; slot < active_count_; ++slot) {
    SlotState& state = slots_[slot];
    if (state.in_use) {
      state.retiring = true;
    } else {
      free_slots_.erase(std::find(free_slots_.begin(), free_slots_.end(), slot));
      retire_slot(slot);
    }
  }
  active_count_ = target_count;
  telemetry().published_count.set(active_count_);
  return active_count_;
}

void RegisteredBufferGroup::retire_slot(uint32_t slot) {
  SlotState& state = slots_[slot];
  state.retiring = false;
  if (state.registered && registrar_ != nullptr) {
    // Clear the slot in the table before its memory goes: nothing is in
    // flight on it (it is free), and the kernel no longer references it.
    iovec empty{nullptr, 0};
    const int rc = registrar_->update_slots(slot, &empty, 1);
    if (rc != 1) {
      // Freeing memory the table still points at would let a fixed request
      // on this slot reach it: keep it (and its charge) out of service.
      state.uncleared = true;
      telemetry().failed_resizes.add();
      registration_note_ = "clearing buffer slot " + std::to_string(slot) + " refused: " +
                           strerror(rc < 0 ? -rc : EIO) + "; its memory stays until the table goes";
      publish_state();
      return;
    }
    charged_bytes_ -= options_.buffer_size_bytes;
    released_at_ = std::chrono::steady_clock::now();
    options_.budget->release(options_.buffer_size_bytes);
  }
  free_slot_memory(slot);
}

void RegisteredBufferGroup::free_slot_memory(uint32_t slot) {
  SlotState& state = slots_[slot];
  if (state.memory != nullptr) options_.allocator.deallocate(state.memory, options_.buffer_size_bytes);
  state.memory = nullptr;
  state.registered = false;
  state.uncleared = false;
}

bool RegisteredBufferGroup::reregister_all() {
  // Fallback path for kernels without sparse tables: replace the whole table
  // at a quiescent point. The caller guarantees nothing is in use.
  const uint32_t target = pending_target_;
  const uint32_t previous = active_count_;
  if (previous != 0) {
    registrar_->unregister_table();
    released_at_ = std::chrono::steady_clock::now();
  }
  options_.budget->release(charged_bytes_);
  charged_bytes_ = 0;
  free_slots_.clear();
  for (uint32_t slot = target; slot < previous; ++slot) free_slot_memory(slot);
  for (uint32_t slot = 0; slot < target; ++slot) slots_[slot].registered = false;
  active_count_ = 0;

  const size_t size = options_.buffer_size_bytes;
  for (uint32_t want : {target, previous, options_.min_buffers}) {
    if (want == 0 || want > target) continue;
    for (uint32_t slot = 0; slot < slots_.size(); ++slot) {
      if (slot >= want && slots_[slot].memory != nullptr) free_slot_memory(slot);
    }
    bool allocated = true;
    std::vector<iovec> iovecs(want);
    for (uint32_t slot = 0; slot < want && allocated; ++slot) {
      if (slots_[slot].memory == nullptr)
        slots_[slot].memory = static_cast<std::byte*>(options_.allocator.allocate(size));
      allocated = slots_[slot].memory != nullptr;
      iovecs[slot] = iovec{slots_[slot].memory, size};
    }
    if (!allocated || !options_.budget->try_charge(uint64_t{want} * size)) continue;
    const int rc = retrying_enomem(released_at_, enomem_retry_may_help_, [&] { return registrar_->register_table(iovecs.data(), want); });
    if (rc < 0) {
      options_.budget->release(uint64_t{want} * size);
      // A refused growth of a registered pool reads as in sparse mode; the
      // fallback below re-registers the previous size.
      registration_note_ = std::string(previous != 0 && want > previous ? "growth refused: "
                                                                         : "registration refused: ") +
                           strerror(-rc);
      continue;
    }
    charged_bytes_ = uint64_t{want} * size;
    for (uint32_t slot = want; slot > 0; --slot) {
      slots_[slot - 1].registered = true;
      free_slots_.push_back(slot - 1);
    }
    active_count_ = want;
    telemetry().published_count.set(active_count_);
    return true;
  }
  // Nothing could be registered: the caller refills the pool with plain
  // buffers.
  registrar_ = nullptr;
  registration_ = Registration::unregistered;
  if (registration_note_.empty()) registration_note_ = "buffer registration refused";
  registration_note_ += ": running unregistered";
  for (uint32_t slot = 0; slot < slots_.size(); ++slot) free_slot_memory(slot);
  return false;
}

void RegisteredBufferGroup::detach_registrar() { registrar_ = nullptr; }

void RegisteredBufferGroup::abandon_memory() {
  for (SlotState& state : slots_) state.memory = nullptr;
  free_slots_.clear();
}

void RegisteredBufferGroup::publish_state() {
  std::lock_guard lock(published_mutex_);
  published_registration_ = registration_;
  published_note_ = registration_note_;
  published_max_ = max_count_;
}

RegisteredBufferStats RegisteredBufferGroup::stats() const {
  const Telemetry& counts = telemetry();
  RegisteredBufferStats stats;
  stats.total_acquires = counts.acquires.get();
  stats.total_misses = counts.misses.get();
  stats.buffer_count = static_cast<uint32_t>(counts.published_count.get());
  stats.buffer_size = options_.buffer_size_bytes;
  stats.in_use = static_cast<uint32_t>(counts.published_in_use.get());
  stats.peak_in_use = static_cast<uint32_t>(counts.peak_in_use.get());
  stats.growths = counts.growths.get();
  stats.shrinks = counts.shrinks.get();
  stats.failed_resizes = counts.failed_resizes.get();
  stats.resize_ns = counts.resize_ns.get();
  stats.quiesces = counts.quiesces.get();
  std::lock_guard lock(published_mutex_);
  stats.max_buffers = published_max_;
  stats.registration = published_registration_;
  stats.registration_note = published_note_;
  return stats;
}

}  // namespace ringio
