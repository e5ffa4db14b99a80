// The engine's I/O queue: every request the copier submits goes through
// here, with a record of what it is and who owns it. The record is taken
// from a preallocated table when the request is submitted and handed back
// with its result, so a completion's meaning never depends on what its
// owner is doing when it arrives. Requests the backend has no room for wait
// in an overflow queue; requests the kernel refused with EAGAIN wait for a
// pause that doubles with each refusal in a row.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <vector>

#include "ringio/backend.hpp"

namespace ringio::copy {

enum class OwnerKind : uint8_t { file, chunk, call };

// What one submitted operation is: its owner (a file task slot, a chunk
// index, or a synchronous call's sequence number) and the owner's own name
// for it (`kind`), plus the owner's step when it was submitted.
struct OpRecord {
  OwnerKind owner_kind = OwnerKind::call;
  uint8_t kind = 0;
  uint8_t step = 0;
  uint32_t owner = 0;
};

struct Arrival {
  OpRecord op;
  int64_t result = 0;
};

class IoQueue {
 public:
  using Clock = std::chrono::steady_clock;
  // `expected_in_flight`: the table's size up front; it grows only if more
  // is ever in flight at once.
  IoQueue(Backend& backend, size_t expected_in_flight);

  void submit(const Request& request, const OpRecord& op);
  // The same request again after a pause (the kernel said EAGAIN
  // `refusals_in_a_row` times in a row).
  void submit_later(const Request& request, const OpRecord& op, uint32_t refusals_in_a_row);
  // Runs a request now, on this thread, outside the queue.
  int64_t execute_now(const Request& request) { return backend_.execute_now(request); }

  // Moves due and overflowed requests to the backend, submits, waits for
  // `min_completions`, and appends what arrived to `out`. -errno on a ring
  // failure (EINTR included: the caller just goes round again).
  int reap(unsigned min_completions, std::vector<Arrival>& out);

  bool busy() const { return backend_.in_flight() != 0 || !overflow_.empty(); }
  bool has_deferred() const { return !deferred_.empty(); }
  void submit_due();
  void sleep_until_due() const;
  Backend& backend() { return backend_; }

 private:
  uint64_t take_record(const OpRecord& op);
  void push(const Request& request);
  void flush_overflow();

  Backend& backend_;
  std::vector<OpRecord> records_;
  std::vector<uint32_t> free_records_;
  std::deque<Request> overflow_;  // requests the backend had no room for
  struct Deferred {
    Clock::time_point due;
    Request request;
  };
  std::vector<Deferred> deferred_;
  std::vector<Completion> completions_;
};

}  // namespace ringio::copy
