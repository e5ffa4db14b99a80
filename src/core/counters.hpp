// Telemetry counters with one writer that any thread may read (DESIGN.md
// section 2, "Telemetry cost"). Internal: the public API reports their values
// as plain numbers (RegisteredBufferStats, OpCounts), never the counters.
#pragma once

#include <atomic>
#include <cstdint>

#if defined(__SANITIZE_THREAD__)
#define RINGIO_THREAD_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RINGIO_THREAD_SANITIZER 1
#endif
#endif
#ifndef RINGIO_THREAD_SANITIZER
#define RINGIO_THREAD_SANITIZER 0
#endif

namespace ringio {

// A counter with one writer that other threads may read at any time: the
// increment is never a locked read-modify-write, and reads are race-free.
class SingleWriterCounter {
 public:
#ifndef RINGIO_NO_TELEMETRY
  void add(uint64_t n = 1) {
#if defined(__x86_64__) && defined(__GNUC__) && !RINGIO_THREAD_SANITIZER
    // One unlocked add to memory, the instruction a plain counter compiles
    // to (the compiler never fuses a relaxed load and store into it). The
    // writer is alone and the add's aligned 8-byte store is single-copy
    // atomic on x86-64, so a concurrent relaxed load sees the old or the new
    // value. ThreadSanitizer builds keep the atomic pair, which it can check.
    static_assert(sizeof(value_) == 8 && alignof(std::atomic<uint64_t>) == 8);
    asm volatile("addq %1, %0" : "+m"(value_) : "er"(n));
#else
    value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
#endif
  }
  void set(uint64_t n) { value_.store(n, std::memory_order_relaxed); }
  uint64_t get() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
#else
  // Baseline for the telemetry-overhead benchmark only: the same counts (the
  // sizer needs acquires and misses), in plain variables no other thread may
  // read. PublishedValue is the same in both builds.
  void add(uint64_t n = 1) { value_ += n; }
  void set(uint64_t n) { value_ = n; }
  uint64_t get() const { return value_; }

 private:
  uint64_t value_ = 0;
#endif
};

// A value with one writer, published for other threads (in use, peak, pool
// size): a relaxed store and load, in every build.
class PublishedValue {
 public:
  void set(uint64_t n) { value_.store(n, std::memory_order_relaxed); }
  uint64_t get() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

}  // namespace ringio
