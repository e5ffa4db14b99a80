#include "uring/ring.hpp"

#include <atomic>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "ringio/pinned_memory_budget.hpp"

namespace ringio::uring {

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::chrono::nanoseconds kEnomemAllowance = std::chrono::milliseconds(200);
constexpr std::chrono::nanoseconds kEnomemPoll = std::chrono::milliseconds(2);

// How much of the process's ENOMEM allowance is spent (it never refills:
// 200 ms in all, however many rings the process sets up).
std::atomic<int64_t> g_enomem_waited_ns{0};

// Pinned bytes of a ring asked for with `entries` (the kernel rounds up to a
// power of two and gives the CQ twice as many).
uint64_t ring_bytes_for(unsigned entries) {
  const unsigned sq = std::bit_ceil(entries);
  return ring_pinned_bytes(sq, 2 * sq);
}

}  // namespace

int queue_init_retrying_enomem(unsigned entries, io_uring* ring, io_uring_params* params) {
  for (;;) {
    io_uring_params attempt = *params;
    const int rc = io_uring_queue_init_params(entries, ring, &attempt);
    if (rc == 0) *params = attempt;
    if (rc != -ENOMEM) return rc;
    if (g_enomem_waited_ns.load(std::memory_order_relaxed) >= kEnomemAllowance.count()) return rc;
    const auto started = Clock::now();
    std::this_thread::sleep_for(kEnomemPoll);
    g_enomem_waited_ns.fetch_add(std::chrono::nanoseconds(Clock::now() - started).count(),
                                 std::memory_order_relaxed);
  }
}

Result<std::unique_ptr<Ring>> Ring::create(const IoConfig& config, const KernelSupport& support) {
  // Best first. DEFER_TASKRUN needs SINGLE_ISSUER and excludes SQPOLL;
  // SUBMIT_ALL keeps a batch going past one bad SQE.
  std::vector<unsigned> candidates;
  const unsigned submit_all = IORING_SETUP_SUBMIT_ALL;
  if (config.sqpoll) {
    candidates.push_back(IORING_SETUP_SQPOLL | IORING_SETUP_SINGLE_ISSUER | submit_all);
    candidates.push_back(IORING_SETUP_SQPOLL);
  }
  if (support.defer_taskrun)
    candidates.push_back(IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | submit_all);
  if (support.single_issuer && support.coop_taskrun)
    candidates.push_back(IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN | submit_all);
  if (support.coop_taskrun) candidates.push_back(IORING_SETUP_COOP_TASKRUN);
  candidates.push_back(0);

  // A ring pins memory too: where the budget (RLIMIT_MEMLOCK without
  // CAP_IPC_LOCK) cannot hold one of the size asked for, a smaller ring is
  // still better than none.
  const PinnedMemoryBudget& budget = PinnedMemoryBudget::process();
  const unsigned asked = config.sq_entries;
  unsigned entries = asked;
  int last_error = -ENOMEM;
  std::string sqpoll_refusal;
  for (;;) {
    // Where the budget cannot hold this size, the kernel is still asked (a
    // kernel that does not charge rings takes it), but an ENOMEM is final at
    // once instead of waited out.
    const bool may_fit = ring_bytes_for(entries) <= budget.available_bytes();
    for (unsigned flags : candidates) {
      io_uring ring{};
      io_uring_params params{};
      params.flags = flags;
      if (flags & IORING_SETUP_SQPOLL) params.sq_thread_idle = config.sqpoll_idle_ms;
      const int rc = may_fit ? queue_init_retrying_enomem(entries, &ring, &params)
                             : io_uring_queue_init_params(entries, &ring, &params);
      if (rc == 0) {
        std::unique_ptr<Ring> created(new Ring());
        created->ring_ = ring;
        created->setup_flags_ = flags;
        created->sq_entries_ = params.sq_entries;
        created->cq_entries_ = params.cq_entries;
        if (config.sqpoll && !(flags & IORING_SETUP_SQPOLL)) created->fallback_note_ = sqpoll_refusal;
        if (entries != asked) {
          if (!created->fallback_note_.empty()) created->fallback_note_ += "; ";
          created->fallback_note_ += std::to_string(params.sq_entries) + " entries instead of " +
                                     std::to_string(asked) + ": " + budget.source();
        }
        return created;
      }
      last_error = rc;
      if (flags & IORING_SETUP_SQPOLL) sqpoll_refusal = std::string("SQPOLL refused: ") + std::strerror(-rc);
      // Only a refused flag is worth another try; ENOMEM, EPERM, ENOSYS are
      // answers about io_uring itself.
      if (rc != -EINVAL && !(flags & IORING_SETUP_SQPOLL)) break;
    }
    if (last_error != -ENOMEM) break;
    if (entries <= kMinRingEntries) break;
    entries = std::max(std::bit_ceil(entries) / 2, kMinRingEntries);
  }
  Error error = make_error("io_uring_setup", -last_error);
  if (last_error == -ENOMEM)
    error.detail = "no ring of " + std::to_string(std::min(asked, kMinRingEntries)) +
                   " entries or more fits in " + budget.source();
  return error;
}

Ring::~Ring() { io_uring_queue_exit(&ring_); }

std::string Ring::describe_flags() const {
  struct Named {
    unsigned flag;
    const char* name;
  };
  static constexpr Named kNames[] = {{IORING_SETUP_SQPOLL, "SQPOLL"},
                                     {IORING_SETUP_SINGLE_ISSUER, "SINGLE_ISSUER"},
                                     {IORING_SETUP_DEFER_TASKRUN, "DEFER_TASKRUN"},
                                     {IORING_SETUP_COOP_TASKRUN, "COOP_TASKRUN"},
                                     {IORING_SETUP_SUBMIT_ALL, "SUBMIT_ALL"}};
  std::string text;
  for (const Named& named : kNames) {
    if (!(setup_flags_ & named.flag)) continue;
    if (!text.empty()) text += "|";
    text += named.name;
  }
  if (text.empty()) text = "no setup flags";
  if (!fallback_note_.empty()) text += "; " + fallback_note_;
  return text;
}

}  // namespace ringio::uring
