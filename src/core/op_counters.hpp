// Per-backend operation counters: which path each operation really took.
// Internal: Backend::op_counts() hands out their values as an OpCounts.
#pragma once

#include <array>

#include "core/counters.hpp"
#include "ringio/backend.hpp"

namespace ringio {

class OpCounters {
 public:
  void count(Op op) { by_op_[static_cast<size_t>(op)].add(); }
  // A request done as a direct syscall rather than through a ring: reads and
  // writes are plain transfers, copy_file_range is data counted by op only,
  // everything else is metadata.
  void count_direct(Op op);
  SingleWriterCounter fixed_reads, fixed_writes, plain_reads, plain_writes;
  SingleWriterCounter ring_metadata_ops, inline_metadata_ops, submit_calls;
  OpCounts snapshot() const;

 private:
  std::array<SingleWriterCounter, kOpCount> by_op_;
};

}  // namespace ringio
