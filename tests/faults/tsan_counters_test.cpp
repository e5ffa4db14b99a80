// The buffer pool's telemetry read from another thread while its owner
// checks buffers out and gives them back (DESIGN.md 2: single writer,
// readable from other threads without a data race; ThreadSanitizer builds
// count with a relaxed load + store, which TSan checks).
//
// These tests pass in every build; they are meant for the ThreadSanitizer
// build (scripts/test.sh, build/tsan), which reports any data race between
// the owner and the reader. Only user-space memory is involved: no ring, so
// no kernel-written memory that TSan cannot see.
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <thread>
#include <vector>

#include "ringio/buffer_group.hpp"
#include "support/fault_injection.hpp"

namespace ringio {
namespace {

BufferGroupOptions small_pool() {
  BufferGroupOptions options;
  options.buffer_size_bytes = 4096;
  options.initial_buffers = 4;
  options.min_buffers = 2;
  options.max_buffers = 16;
  options.adaptive = false;
  options.budget = nullptr;  // set by the caller
  return options;
}

struct ReaderResult {
  std::atomic<uint64_t> reads_published{0};  // for the owner: has the reader run yet?
  uint64_t reads = 0;
  bool monotonic = true;
  uint64_t last_acquires = 0;
  uint64_t last_misses = 0;
};

// The owner starts only once the reader has taken a snapshot, and goes on
// until the reader has taken `reads` more: on a loaded machine the reader's
// thread may otherwise never run while the owner works.
void wait_for_reads(const ReaderResult& result, uint64_t reads) {
  const uint64_t target = result.reads_published.load(std::memory_order_relaxed) + reads;
  while (result.reads_published.load(std::memory_order_relaxed) < target) std::this_thread::yield();
}

// Reads stats() until told to stop; every counter must only grow.
void read_until(const RegisteredBufferGroup& group, const std::atomic<bool>& stop, ReaderResult& result) {
  uint64_t acquires = 0, misses = 0, growths = 0, shrinks = 0;
  while (!stop.load(std::memory_order_acquire)) {
    const RegisteredBufferStats stats = group.stats();
    result.monotonic &= stats.total_acquires >= acquires && stats.total_misses >= misses &&
                        stats.growths >= growths && stats.shrinks >= shrinks;
    result.monotonic &= stats.in_use <= stats.max_buffers || stats.max_buffers == 0;
    acquires = stats.total_acquires;
    misses = stats.total_misses;
    growths = stats.growths;
    shrinks = stats.shrinks;
    ++result.reads;
    result.reads_published.store(result.reads, std::memory_order_relaxed);
  }
  result.last_acquires = acquires;
  result.last_misses = misses;
}

// Runs `owner_work` on this thread while another thread reads stats(); the
// reader's findings go to `result`.
void read_while(const RegisteredBufferGroup& group, ReaderResult& result,
                const std::function<void()>& owner_work) {
  std::atomic<bool> stop{false};
  std::thread reader(read_until, std::cref(group), std::cref(stop), std::ref(result));
  wait_for_reads(result, 1);
  owner_work();
  stop.store(true, std::memory_order_release);
  reader.join();
}

class TsanCounters : public ::testing::Test {
 protected:
  PinnedMemoryBudget budget_{std::nullopt, "test: unlimited"};
};

TEST_F(TsanCounters, stats_read_from_another_thread_while_the_owner_checks_out) {
  BufferGroupOptions options = small_pool();
  options.budget = &budget_;
  RegisteredBufferGroup group(options, nullptr, "test: unregistered");
  constexpr uint64_t kRounds = 50000;
  uint64_t expected_acquires = 0, expected_misses = 0;
  ReaderResult reader_result;
  read_while(group, reader_result, [&] {
    std::vector<BufferSlot> held;
    for (uint64_t round = 0; round < kRounds; ++round) {
      // Take 1..6 buffers of a pool of 4 (up to two misses), then give them back.
      for (uint64_t i = 0; i <= round % 6; ++i) {
        BufferSlot slot = group.checkout();
        ++expected_acquires;
        if (!slot) ++expected_misses;
        else held.push_back(std::move(slot));
      }
      held.clear();
    }
  });

  const RegisteredBufferStats stats = group.stats();
  EXPECT_EQ(stats.total_acquires, expected_acquires);
  EXPECT_EQ(stats.total_misses, expected_misses);
  EXPECT_GT(expected_misses, 0u);
  EXPECT_TRUE(reader_result.monotonic) << "a counter went backwards as seen from the reader";
  EXPECT_GT(reader_result.reads, 0u);
  std::printf("reader took %llu snapshots while the owner made %llu checkouts (%llu misses)\n",
              static_cast<unsigned long long>(reader_result.reads), static_cast<unsigned long long>(expected_acquires),
              static_cast<unsigned long long>(expected_misses));
}

// Growing and shrinking (all accepted) while another thread reads.
TEST_F(TsanCounters, stats_read_while_the_owner_resizes) {
  BufferGroupOptions options = small_pool();
  options.budget = &budget_;
  test::CappedRegistrar registrar(1000);
  RegisteredBufferGroup group(options, &registrar);
  ASSERT_TRUE(group.registered());
  ReaderResult reader_result;
  read_while(group, reader_result, [&] {
    for (int round = 0; round < 3000; ++round) {
      BufferSlot a = group.checkout();
      BufferSlot b = group.checkout();
      group.resize_to(round % 2 == 0 ? 8 : 3);
    }
  });
  EXPECT_TRUE(reader_result.monotonic);
  EXPECT_GT(group.stats().growths, 0u);
  EXPECT_GT(group.stats().shrinks, 0u);
}

// Growth refused (the memlock case) while another thread reads: the
// refusal is recorded in the stats (failed_resizes and the note). The note
// is a std::string: written by the owner and copied by stats() in the
// reader, it must not race either.
TEST_F(TsanCounters, stats_read_while_growth_is_refused) {
  BufferGroupOptions options = small_pool();
  options.budget = &budget_;
  test::CappedRegistrar registrar(5);
  RegisteredBufferGroup group(options, &registrar);
  ASSERT_TRUE(group.registered());
  ReaderResult reader_result;
  read_while(group, reader_result, [&] {
    for (int round = 0; round < 3000; ++round) {
      BufferSlot a = group.checkout();
      group.resize_to(round % 2 == 0 ? 12 : 2);  // 12 > cap: refused past 5
    }
  });
  EXPECT_TRUE(reader_result.monotonic);
  EXPECT_GT(group.stats().failed_resizes, 0u);
  EXPECT_NE(group.stats().registration_note.find("refused"), std::string::npos) << group.stats().registration_note;
}

}  // namespace
}  // namespace ringio
