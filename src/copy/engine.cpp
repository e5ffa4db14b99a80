// The engine's loop: reap completions and hand each to its owner, wake
// tasks from the ready queue, walk while there is room for more files, and
// finish directories whose contents are done.
#include "copy/engine.hpp"

#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <chrono>

namespace ringio::copy {

namespace {

// Operations in flight at once, for the operation table's first size: a
// few per file task, one per chunk, some slack for the walker.
size_t expected_in_flight(const CopyOptions& options) {
  return size_t(options.files_in_flight_max) * 4 + options.io.max_buffers + 64;
}

}  // namespace

Engine::Engine(Backend& backend, const CopyOptions& options, const CopyCallbacks& callbacks, CopyReport& report)
    : options_(options),
      callbacks_(callbacks),
      report_(report),
      reporter_(callbacks, report, options.verbosity),
      queue_(backend, expected_in_flight(options)),
      pool_(backend.buffers()),
      publisher_(queue_, reporter_),
      excludes_(options.excludes) {
  data_rules_.direct_io = options.io.direct_io;
  data_rules_.copy_in_kernel = options.copy_in_kernel;
  data_rules_.reflink_never = options.reflink == ReflinkMode::never;
  tasks_.resize(options.files_in_flight_max);
  for (uint32_t i = options.files_in_flight_max; i > 0; --i) free_tasks_.push_back(i - 1);
  chunks_.resize(std::max<uint32_t>(options.io.max_buffers, 1));
  for (uint32_t i = uint32_t(chunks_.size()); i > 0; --i) free_chunks_.push_back(i - 1);
  euid_ = geteuid();
  egid_ = getegid();
}

Engine::~Engine() {
  for (FileTask& task : tasks_) {
    if (task.verify.hash != nullptr) XXH3_freeState(task.verify.hash);
  }
}

bool Engine::stop_requested() const {
  return callbacks_.stop != nullptr && callbacks_.stop->load(std::memory_order_relaxed);
}

void Engine::reap(unsigned min_completions) {
  arrivals_.clear();
  const int n = queue_.reap(min_completions, arrivals_);
  if (n < 0) {
    if (n != -EINTR) reporter_.error(std::string("ring: ") + errno_text(-n));
    return;
  }
  // Dispatch from a copy: a handler may run a call(), which reaps again.
  std::vector<Arrival> arrived;
  arrived.swap(arrivals_);
  for (const Arrival& arrival : arrived) dispatch(arrival);
  if (arrivals_.empty()) arrivals_.swap(arrived);
}

// Runs one request to completion while everything else keeps flowing. Only
// the walker and directory finishing call it, never a completion handler.
int64_t Engine::call(const Request& request) {
  const uint32_t id = ++call_sequence_;
  call_waiting_ = id;
  call_done_ = false;
  queue_.submit(request, OpRecord{OwnerKind::call, 0, 0, id});
  while (!call_done_) reap(1);
  call_waiting_ = 0;
  return call_result_;
}

void Engine::dispatch(const Arrival& arrival) {
  switch (arrival.op.owner_kind) {
    case OwnerKind::call:
      if (arrival.op.owner == call_waiting_) {
        call_result_ = arrival.result;
        call_done_ = true;
      }
      return;
    case OwnerKind::file:
      on_file_completion(arrival.op.owner, arrival.op, arrival.result);
      return;
    case OwnerKind::chunk:
      on_chunk_completion(arrival.op.owner, ChunkOp(arrival.op.kind), arrival.result);
      return;
  }
}

void Engine::submit_file_op(uint32_t slot, const Request& request, FileOp kind) {
  queue_.submit(request, OpRecord{OwnerKind::file, uint8_t(kind), uint8_t(tasks_[slot].step), slot});
}

void Engine::step_op(uint32_t slot, const Request& request) { submit_file_op(slot, request, FileOp::step); }

// A task another one unblocked (a hard link's first copy is in place or
// failed): advanced from the loop, never from inside the other's handler.
void Engine::wake(uint32_t slot) {
  FileTask& task = tasks_[slot];
  if (task.in_ready_queue) return;
  task.in_ready_queue = true;
  ready_.push_back(slot);
}

void Engine::run_ready() {
  while (!ready_.empty()) {
    const uint32_t slot = ready_.front();
    ready_.pop_front();
    tasks_[slot].in_ready_queue = false;
    if (tasks_[slot].active) advance(slot);
  }
}

void Engine::retry_parked() {
  // A parked task is retried only when a buffer is free: checkout() is called
  // once per piece of work that can go, never in a spin.
  for (size_t n = parked_.size(); n > 0 && !parked_.empty(); --n) {
    if (free_chunks_.empty() || !pool_.can_checkout() || pool_.resize_pending()) break;
    const uint32_t slot = parked_.front();
    parked_.pop_front();
    FileTask& task = tasks_[slot];
    if (!task.active || !task.parked) continue;
    task.parked = false;
    advance(slot);
  }
}

void Engine::stop_everything() {
  stopping_ = true;
  report_.interrupted = true;
  for (FileTask& task : tasks_) {
    if (task.active) task.cancelled = true;
  }
  // Parked tasks will not get buffers again: send them to cleanup.
  std::deque<uint32_t> parked;
  parked.swap(parked_);
  for (uint32_t slot : parked) {
    tasks_[slot].parked = false;
    wake(slot);
  }
  // Directories still being read are finished without their other entries.
  for (DirNode* dir : stack_) {
    std::vector<WalkEntry>().swap(dir->entries);
    dir->walk_done = true;
    dir->pending += 1;
    child_finished(dir);
  }
  stack_.clear();
}

// Nothing is in flight: true when the copy is over (or stalled, reported).
bool Engine::finished_or_stalled() {
  if (!finish_queue_.empty() || !ready_.empty()) return false;
  const bool roots_left = !stopping_ && next_root_ < roots_.size();
  const bool can_walk = !stopping_ && active_tasks_ < tasks_.size() && (!stack_.empty() || roots_left);
  if (can_walk) return false;
  if (!parked_.empty()) {
    // Every buffer is free when nothing is in flight: this retry succeeds.
    const size_t before = parked_.size();
    retry_parked();
    if (parked_.size() < before || queue_.busy()) return false;
  }
  if (active_tasks_ != 0) {
    reporter_.error("internal error: " + std::to_string(active_tasks_) + " files stalled with nothing in flight");
    return true;
  }
  return stack_.empty() && !roots_left;
}

void Engine::run(const std::vector<CopyRoot>& roots) {
  roots_ = roots;
  for (;;) {
    if (!stopping_ && stop_requested()) stop_everything();
    run_ready();
    finish_directories();
    walk_some();
    finish_directories();
    retry_parked();
    run_ready();
    pool_.apply_pending_resize();
    queue_.submit_due();
    if (queue_.busy()) {
      reap(1);
      continue;
    }
    if (queue_.has_deferred()) {
      queue_.sleep_until_due();
      continue;
    }
    if (finished_or_stalled()) break;
  }
  finish_directories();
}

}  // namespace ringio::copy

namespace ringio {

Result<CopyReport> run_copy(const std::vector<CopyRoot>& roots, const CopyOptions& options,
                            const CopyCallbacks& callbacks) {
  using Clock = std::chrono::steady_clock;
  const auto started = Clock::now();
  auto selection = make_backend(options.engine, options.io);
  if (!selection) return selection.error();
  if (callbacks.decorate_backend) selection->backend = callbacks.decorate_backend(std::move(selection->backend));
  CopyReport report;
  report.backend = selection->kind;
  report.backend_reason = selection->reason;
  report.backend_description = selection->backend->describe();
  if (options.verbosity > 0 && callbacks.report_verbose)
    callbacks.report_verbose("backend: " + std::string(backend_name(selection->kind)) + " (" + selection->reason +
                             ")");
  {
    copy::Engine engine(*selection->backend, options, callbacks, report);
    engine.run(roots);
  }
  report.pool = selection->backend->buffers().stats();
  report.ops = selection->backend->op_counts();
  report.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  return report;
}

}  // namespace ringio
