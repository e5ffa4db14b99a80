#include "copy/io_queue.hpp"

#include <time.h>

#include <algorithm>
#include <cassert>

namespace ringio::copy {

namespace {

// A request refused with EAGAIN goes again after a pause that doubles with
// each refusal in a row, between these bounds.
constexpr std::chrono::microseconds kRetryPauseMin{50};
constexpr std::chrono::microseconds kRetryPauseMax{4000};

}  // namespace

IoQueue::IoQueue(Backend& backend, size_t expected_in_flight)
    : backend_(backend), records_(expected_in_flight), completions_(128) {
  free_records_.reserve(expected_in_flight);
  for (size_t i = expected_in_flight; i > 0; --i) free_records_.push_back(uint32_t(i - 1));
}

uint64_t IoQueue::take_record(const OpRecord& op) {
  if (free_records_.empty()) {
    free_records_.push_back(uint32_t(records_.size()));
    records_.emplace_back();
  }
  const uint32_t index = free_records_.back();
  free_records_.pop_back();
  records_[index] = op;
  return index;
}

void IoQueue::push(const Request& request) {
  if (!overflow_.empty() || !backend_.prepare(request)) overflow_.push_back(request);
}

void IoQueue::submit(const Request& request, const OpRecord& op) {
  Request tagged = request;
  tagged.user_data = take_record(op);
  push(tagged);
}

void IoQueue::submit_later(const Request& request, const OpRecord& op, uint32_t refusals_in_a_row) {
  const uint32_t doublings = std::min<uint32_t>(std::max<uint32_t>(refusals_in_a_row, 1) - 1, 16);
  const auto pause = std::min<std::chrono::microseconds>(kRetryPauseMin * (int64_t{1} << doublings), kRetryPauseMax);
  Request tagged = request;
  tagged.user_data = take_record(op);
  deferred_.push_back(Deferred{Clock::now() + pause, tagged});
}

void IoQueue::submit_due() {
  if (deferred_.empty()) return;
  const auto now = Clock::now();
  for (size_t i = 0; i < deferred_.size();) {
    if (deferred_[i].due > now) {
      ++i;
      continue;
    }
    push(deferred_[i].request);
    deferred_[i] = deferred_.back();
    deferred_.pop_back();
  }
}

// Nothing is in flight and only deferred requests are left: sleep until the
// first is due instead of spinning.
void IoQueue::sleep_until_due() const {
  auto due = deferred_.front().due;
  for (const Deferred& deferred : deferred_) due = std::min(due, deferred.due);
  const auto pause = due - Clock::now();
  if (pause <= Clock::duration::zero()) return;
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(pause).count();
  const struct timespec length = {time_t(ns / 1000000000), long(ns % 1000000000)};
  nanosleep(&length, nullptr);
}

void IoQueue::flush_overflow() {
  while (!overflow_.empty() && backend_.prepare(overflow_.front())) overflow_.pop_front();
}

int IoQueue::reap(unsigned min_completions, std::vector<Arrival>& out) {
  submit_due();
  flush_overflow();
  const int n = backend_.submit_and_reap(completions_, min_completions);
  if (n < 0) return n;
  for (int i = 0; i < n; ++i) {
    const uint64_t index = completions_[size_t(i)].user_data;
    assert(index < records_.size());
    out.push_back(Arrival{records_[index], completions_[size_t(i)].result});
    free_records_.push_back(uint32_t(index));
  }
  flush_overflow();
  return n;
}

}  // namespace ringio::copy
