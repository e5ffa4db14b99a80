#include "uring/ring.hpp"

#include <cstring>
#include <vector>

namespace ringio::uring {

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

  std::unique_ptr<Ring> ring(new Ring());
  int last_error = 0;
  for (unsigned flags : candidates) {
    io_uring_params params{};
    params.flags = flags;
    if (flags & IORING_SETUP_SQPOLL) params.sq_thread_idle = config.sqpoll_idle_ms;
    const int rc = io_uring_queue_init_params(config.sq_entries, &ring->ring_, &params);
    if (rc == 0) {
      ring->setup_flags_ = flags;
      ring->sq_entries_ = params.sq_entries;
      ring->cq_entries_ = params.cq_entries;
      if (config.sqpoll && !(flags & IORING_SETUP_SQPOLL))
        ring->fallback_note_ = std::string("SQPOLL refused: ") + std::strerror(-last_error);
      return ring;
    }
    last_error = rc;
    // Only a refused flag is worth another try; ENOMEM, EPERM, ENOSYS are
    // answers about io_uring itself.
    if (rc != -EINVAL && !(flags & IORING_SETUP_SQPOLL)) break;
  }
  return make_error("io_uring_setup", -last_error);
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
