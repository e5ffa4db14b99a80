// RegisteredBufferGroup: phase-1 telemetry (the six named contract tests),
// slot handling, the pinned-memory budget and refused registrations. The
// group is tested against a recording registrar here; tests with a real ring
// live in the uring backend's tests.
#include "ringio/buffer_group.hpp"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <vector>

#include "core/buffer_registrar.hpp"

namespace ringio {
namespace {

// Records what the group asks of the ring and can refuse it.
class RecordingRegistrar : public BufferRegistrar {
 public:
  bool sparse = true;
  uint32_t cap = 16384;
  int refuse_update_with = 0;  // -errno to return from update_slots that fill
  int refuse_clear_with = 0;   // -errno to return from update_slots that clear
  uint32_t table_slots = 0;
  std::vector<bool> filled;
  uint32_t updates = 0;
  uint32_t registrations = 0;
  uint32_t fixed_in_flight = 0;

  bool supports_sparse_update() const override { return sparse; }
  uint32_t kernel_buffer_cap() const override { return cap; }
  int register_sparse(uint32_t slot_count) override {
    table_slots = slot_count;
    filled.assign(slot_count, false);
    ++registrations;
    return 0;
  }
  int update_slots(uint32_t first, const iovec* iovecs, uint32_t count) override {
    ++updates;
    if (refuse_update_with != 0 && iovecs[0].iov_base != nullptr) return refuse_update_with;
    if (refuse_clear_with != 0 && iovecs[0].iov_base == nullptr) return refuse_clear_with;
    for (uint32_t i = 0; i < count; ++i) filled.at(first + i) = iovecs[i].iov_base != nullptr;
    return static_cast<int>(count);
  }
  int register_table(const iovec*, uint32_t count) override {
    if (refuse_update_with != 0) return refuse_update_with;
    table_slots = count;
    filled.assign(count, true);
    ++registrations;
    return 0;
  }
  int unregister_table() override {
    table_slots = 0;
    filled.clear();
    return 0;
  }
  uint32_t fixed_ops_in_flight() const override { return fixed_in_flight; }
  uint32_t filled_count() const {
    uint32_t n = 0;
    for (bool f : filled) n += f ? 1 : 0;
    return n;
  }
};

BufferGroupOptions fixed_options(uint32_t buffers, PinnedMemoryBudget* budget) {
  BufferGroupOptions options;
  options.buffer_size_bytes = 4096;
  options.initial_buffers = buffers;
  options.min_buffers = 2;
  options.max_buffers = 64;
  options.adaptive = false;
  options.budget = budget;
  return options;
}

class BufferGroupTest : public ::testing::Test {
 protected:
  PinnedMemoryBudget unlimited_{std::nullopt, "unlimited (test)"};
  RecordingRegistrar registrar_;
};

// ---- the six named telemetry tests (DESIGN.md section 2) ----

TEST_F(BufferGroupTest, stats_initially_zero) {
  RegisteredBufferGroup group(fixed_options(4, &unlimited_), &registrar_);
  const RegisteredBufferStats stats = group.stats();
  EXPECT_EQ(stats.total_acquires, 0u);
  EXPECT_EQ(stats.total_misses, 0u);
  EXPECT_EQ(stats.in_use, 0u);
  EXPECT_EQ(stats.peak_in_use, 0u);
  EXPECT_EQ(stats.growths, 0u);
  EXPECT_EQ(stats.shrinks, 0u);
  EXPECT_EQ(stats.buffer_count, 4u);
  EXPECT_EQ(stats.buffer_size, 4096u);
}

TEST_F(BufferGroupTest, stats_count_successful_checkouts) {
  RegisteredBufferGroup group(fixed_options(4, &unlimited_), &registrar_);
  {
    BufferSlot a = group.checkout();
    BufferSlot b = group.checkout();
    BufferSlot c = group.checkout();
    ASSERT_TRUE(a && b && c);
    EXPECT_EQ(group.stats().in_use, 3u);
  }
  const RegisteredBufferStats stats = group.stats();
  EXPECT_EQ(stats.total_acquires, 3u);
  EXPECT_EQ(stats.total_misses, 0u);
  EXPECT_EQ(stats.peak_in_use, 3u);
  EXPECT_EQ(stats.in_use, 0u);
}

TEST_F(BufferGroupTest, stats_count_misses_on_exhaustion) {
  RegisteredBufferGroup group(fixed_options(2, &unlimited_), &registrar_);
  BufferSlot a = group.checkout();
  BufferSlot b = group.checkout();
  ASSERT_TRUE(a && b);
  BufferSlot miss1 = group.checkout();
  BufferSlot miss2 = group.checkout();
  EXPECT_FALSE(miss1);
  EXPECT_FALSE(miss2);
  const RegisteredBufferStats stats = group.stats();
  EXPECT_EQ(stats.total_acquires, 4u);
  EXPECT_EQ(stats.total_misses, 2u);
  EXPECT_DOUBLE_EQ(stats.miss_rate(), 0.5);
}

TEST_F(BufferGroupTest, stats_not_decremented_on_return) {
  RegisteredBufferGroup group(fixed_options(2, &unlimited_), &registrar_);
  {
    BufferSlot a = group.checkout();
    BufferSlot b = group.checkout();
    BufferSlot miss = group.checkout();
    EXPECT_FALSE(miss);
  }  // every buffer given back here
  RegisteredBufferStats stats = group.stats();
  EXPECT_EQ(stats.total_acquires, 3u);
  EXPECT_EQ(stats.total_misses, 1u);
  EXPECT_EQ(stats.in_use, 0u);
  BufferSlot again = group.checkout();  // a retry after a return is a new acquire
  ASSERT_TRUE(again);
  again.release();
  stats = group.stats();
  EXPECT_EQ(stats.total_acquires, 4u);
  EXPECT_EQ(stats.total_misses, 1u);
}

TEST_F(BufferGroupTest, stats_miss_rate_zero_when_no_acquires) {
  RegisteredBufferGroup group(fixed_options(2, &unlimited_), &registrar_);
  EXPECT_EQ(group.stats().miss_rate(), 0.0);
  RegisteredBufferStats empty;
  EXPECT_EQ(empty.miss_rate(), 0.0);
}

TEST_F(BufferGroupTest, stats_miss_rate_all_misses) {
  RegisteredBufferGroup group(fixed_options(2, &unlimited_), &registrar_);
  BufferSlot a = group.checkout();
  BufferSlot b = group.checkout();
  const RegisteredBufferStats before = group.stats();
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(group.checkout());
  const RegisteredBufferStats after = group.stats();
  const uint64_t acquires = after.total_acquires - before.total_acquires;
  const uint64_t misses = after.total_misses - before.total_misses;
  EXPECT_EQ(acquires, 10u);
  EXPECT_EQ(misses, 10u);
  // A group whose every acquire missed reports exactly 1.0.
  RegisteredBufferStats all_missed;
  all_missed.total_acquires = 10;
  all_missed.total_misses = 10;
  EXPECT_DOUBLE_EQ(all_missed.miss_rate(), 1.0);
  EXPECT_DOUBLE_EQ(after.miss_rate(), 10.0 / 12.0);
}

// ---- slots ----

TEST_F(BufferGroupTest, slots_are_page_aligned_distinct_and_registered) {
  RegisteredBufferGroup group(fixed_options(4, &unlimited_), &registrar_);
  EXPECT_TRUE(group.registered());
  EXPECT_EQ(registrar_.table_slots, 64u) << "one sparse table of MAX slots";
  EXPECT_EQ(registrar_.filled_count(), 4u);
  std::vector<BufferSlot> slots;
  for (int i = 0; i < 4; ++i) slots.push_back(group.checkout());
  for (size_t i = 0; i < slots.size(); ++i) {
    ASSERT_TRUE(slots[i]);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(slots[i].data()) % 4096, 0u);
    EXPECT_EQ(slots[i].fixed_index(), static_cast<int32_t>(slots[i].slot()));
    for (size_t j = 0; j < i; ++j) EXPECT_NE(slots[i].data(), slots[j].data());
  }
}

TEST_F(BufferGroupTest, moved_slot_returns_once) {
  RegisteredBufferGroup group(fixed_options(2, &unlimited_), &registrar_);
  BufferSlot a = group.checkout();
  BufferSlot b = std::move(a);
  EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
  EXPECT_EQ(group.in_use(), 1u);
  b.release();
  b.release();
  EXPECT_EQ(group.in_use(), 0u);
}

TEST_F(BufferGroupTest, unregistered_group_keeps_the_same_stats) {
  RegisteredBufferGroup group(fixed_options(2, &unlimited_), nullptr, "posix backend");
  EXPECT_FALSE(group.registered());
  EXPECT_EQ(group.stats().registration_note, "posix backend");
  BufferSlot a = group.checkout();
  BufferSlot b = group.checkout();
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a.fixed_index(), -1);
  EXPECT_FALSE(group.checkout());
  EXPECT_EQ(group.stats().total_acquires, 3u);
  EXPECT_EQ(group.stats().total_misses, 1u);
}

// ---- resize mechanism ----

TEST_F(BufferGroupTest, sparse_resize_fills_and_clears_slots_without_quiescing) {
  RegisteredBufferGroup group(fixed_options(4, &unlimited_), &registrar_);
  BufferSlot busy = group.checkout();  // slot 0 stays in use throughout
  EXPECT_EQ(group.resize_to(16), 16u);
  EXPECT_EQ(registrar_.filled_count(), 16u);
  EXPECT_EQ(registrar_.registrations, 1u) << "sparse mode never re-registers";
  EXPECT_EQ(group.resize_to(3), 3u);
  EXPECT_EQ(registrar_.filled_count(), 3u);
  const RegisteredBufferStats stats = group.stats();
  EXPECT_EQ(stats.growths, 1u);
  EXPECT_EQ(stats.shrinks, 1u);
  EXPECT_EQ(stats.quiesces, 0u);
  EXPECT_EQ(stats.buffer_count, 3u);
}

TEST_F(BufferGroupTest, shrink_retires_a_busy_slot_when_it_comes_back) {
  RegisteredBufferGroup group(fixed_options(8, &unlimited_), &registrar_);
  std::vector<BufferSlot> held;
  for (int i = 0; i < 8; ++i) held.push_back(group.checkout());
  EXPECT_EQ(group.resize_to(4), 4u);
  EXPECT_EQ(registrar_.filled_count(), 8u) << "busy slots stay registered";
  held.clear();
  EXPECT_EQ(registrar_.filled_count(), 4u) << "returned slots above the count are cleared";
  for (int i = 0; i < 4; ++i) held.push_back(group.checkout());
  for (const BufferSlot& slot : held) EXPECT_LT(slot.slot(), 4u);
  EXPECT_FALSE(group.checkout());
}

TEST_F(BufferGroupTest, reregister_mode_waits_for_a_quiescent_point) {
  BufferGroupOptions options = fixed_options(4, &unlimited_);
  options.resize_mode = ResizeMode::reregister;
  RegisteredBufferGroup group(options, &registrar_);
  EXPECT_EQ(registrar_.registrations, 1u);
  BufferSlot busy = group.checkout();
  EXPECT_EQ(group.resize_to(8), 4u) << "not quiescent: the resize waits";
  EXPECT_TRUE(group.resize_pending());
  EXPECT_FALSE(group.checkout()) << "draining: no new checkouts";
  busy.release();
  registrar_.fixed_in_flight = 1;
  EXPECT_EQ(group.apply_pending_resize(), 4u) << "a fixed request is still in flight";
  registrar_.fixed_in_flight = 0;
  EXPECT_EQ(group.apply_pending_resize(), 8u);
  EXPECT_EQ(registrar_.registrations, 2u);
  EXPECT_EQ(registrar_.filled_count(), 8u);
  EXPECT_EQ(group.stats().quiesces, 1u);
  EXPECT_TRUE(group.checkout());
}

// ---- pinned-memory budget ----

TEST_F(BufferGroupTest, budget_caps_the_pool) {
  PinnedMemoryBudget budget(5 * 4096, "test limit 5 pages");
  RegisteredBufferGroup group(fixed_options(8, &budget), &registrar_);
  const RegisteredBufferStats stats = group.stats();
  EXPECT_TRUE(group.registered());
  EXPECT_EQ(stats.buffer_count, 5u);
  EXPECT_EQ(stats.max_buffers, 5u);
  EXPECT_NE(stats.registration_note.find("pool capped"), std::string::npos)
      << stats.registration_note;
  EXPECT_EQ(budget.charged_bytes(), 5u * 4096);
}

TEST_F(BufferGroupTest, budget_below_min_runs_unregistered) {
  PinnedMemoryBudget budget(1 * 4096, "test limit 1 page");
  RegisteredBufferGroup group(fixed_options(8, &budget), &registrar_);
  const RegisteredBufferStats stats = group.stats();
  EXPECT_FALSE(group.registered());
  EXPECT_EQ(stats.buffer_count, 8u) << "plain buffers are not limited by the budget";
  EXPECT_NE(stats.registration_note.find("running unregistered"), std::string::npos)
      << stats.registration_note;
  EXPECT_EQ(budget.charged_bytes(), 0u);
  EXPECT_EQ(registrar_.updates, 0u) << "refused before the syscall";
}

TEST_F(BufferGroupTest, budget_is_shared_by_groups_and_released) {
  PinnedMemoryBudget budget(6 * 4096, "test limit 6 pages");
  {
    RecordingRegistrar second;
    RegisteredBufferGroup first_group(fixed_options(4, &budget), &registrar_);
    RegisteredBufferGroup second_group(fixed_options(4, &budget), &second);
    EXPECT_EQ(first_group.buffer_count(), 4u);
    EXPECT_EQ(second_group.buffer_count(), 2u) << "only 2 pages were left";
    EXPECT_EQ(budget.charged_bytes(), 6u * 4096);
  }
  EXPECT_EQ(budget.charged_bytes(), 0u);
}

TEST_F(BufferGroupTest, kernel_enomem_degrades_to_unregistered) {
  registrar_.refuse_update_with = -ENOMEM;
  RegisteredBufferGroup group(fixed_options(8, &unlimited_), &registrar_);
  EXPECT_FALSE(group.registered());
  EXPECT_EQ(group.buffer_count(), 8u);
  EXPECT_NE(group.stats().registration_note.find("Cannot allocate memory"), std::string::npos)
      << group.stats().registration_note;
  BufferSlot slot = group.checkout();
  ASSERT_TRUE(slot);
  EXPECT_EQ(slot.fixed_index(), -1);
}

TEST_F(BufferGroupTest, refused_growth_keeps_size_and_counts_a_failure) {
  PinnedMemoryBudget budget(6 * 4096, "test limit 6 pages");
  RegisteredBufferGroup group(fixed_options(4, &budget), &registrar_);
  EXPECT_EQ(group.stats().max_buffers, 6u);
  budget.charge(2 * 4096);  // another group of the process took the rest
  EXPECT_EQ(group.resize_to(6), 4u);
  EXPECT_EQ(group.stats().failed_resizes, 1u);
  EXPECT_EQ(group.stats().growths, 0u);
  EXPECT_TRUE(group.checkout());
}

TEST_F(BufferGroupTest, refused_clear_keeps_the_slot_memory_and_its_charge) {
  PinnedMemoryBudget budget(16 * 4096, "test limit 16 pages");
  BufferGroupOptions options = fixed_options(8, &budget);
  std::vector<void*> freed;
  const BufferAllocator pages = BufferAllocator::anonymous_pages();
  options.allocator.allocate = pages.allocate;
  options.allocator.deallocate = [&](void* memory, size_t bytes) {
    freed.push_back(memory);
    pages.deallocate(memory, bytes);
  };
  {
    RegisteredBufferGroup group(options, &registrar_);
    registrar_.refuse_clear_with = -EBUSY;
    EXPECT_EQ(group.resize_to(4), 4u);
    EXPECT_TRUE(freed.empty()) << "memory the kernel's table still points at was freed";
    EXPECT_EQ(budget.charged_bytes(), 8u * 4096) << "the kernel still pins the uncleared slots";
    const RegisteredBufferStats stats = group.stats();
    EXPECT_GE(stats.failed_resizes, 1u);
    EXPECT_NE(stats.registration_note.find("clearing buffer slot"), std::string::npos)
        << stats.registration_note;

    // A growth takes the uncleared slots back as they are, registered.
    registrar_.refuse_clear_with = 0;
    EXPECT_EQ(group.resize_to(8), 8u);
    EXPECT_TRUE(freed.empty());
    std::vector<BufferSlot> held;
    for (int i = 0; i < 8; ++i) {
      held.push_back(group.checkout());
      ASSERT_TRUE(held.back());
      EXPECT_EQ(held.back().fixed_index(), int32_t(held.back().slot()));
    }
    EXPECT_FALSE(group.checkout());
    held.clear();

    // Clearing works again: a shrink frees what it clears, and uncharges it.
    EXPECT_EQ(group.resize_to(4), 4u);
    EXPECT_EQ(freed.size(), 4u);
    EXPECT_EQ(budget.charged_bytes(), 4u * 4096);
  }
  EXPECT_EQ(freed.size(), 8u);
  EXPECT_EQ(budget.charged_bytes(), 0u);
}

TEST(StatsLine, starts_with_the_contract_fields_in_order) {
  RegisteredBufferStats stats;
  stats.total_acquires = 200;
  stats.total_misses = 50;
  stats.growths = 1;
  stats.shrinks = 2;
  stats.buffer_count = 16;
  const std::string line = format_stats_line(stats);
  EXPECT_EQ(line.rfind("acquires=200 misses=50 miss_rate=25.00% growths=1 shrinks=2 buffers=16", 0),
            0u)
      << line;
}

}  // namespace
}  // namespace ringio
