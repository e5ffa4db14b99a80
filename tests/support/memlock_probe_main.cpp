// Asks the kernel about this user's RLIMIT_MEMLOCK account, for tests that
// run under a limit without CAP_IPC_LOCK (`prlimit --memlock=N setpriv
// --inh-caps=-ipc_lock --bounding-set=-ipc_lock ringio_memlock_probe ...`).
// The kernel charges ring and registered-buffer memory per user and releases
// a closed ring's charge asynchronously, so a test waits for the state it
// needs instead of assuming it.
//
//   ring-fits MS  exit 0 as soon as the smallest ring (1 entry) can be set up
//                 under this process's limit, within MS milliseconds; 1 if not.
//   settle MS     exit 0 once nothing but this process's own pages is charged
//                 to the user (needs a 64 KiB limit: an 8-entry ring and 14
//                 registered pages must fit), within MS milliseconds; 1 if not.
#include <liburing.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

namespace {

using Clock = std::chrono::steady_clock;

bool ring_fits() {
  io_uring ring;
  if (io_uring_queue_init(1, &ring, 0) != 0) return false;
  io_uring_queue_exit(&ring);
  return true;
}

bool settled() {
  io_uring ring;
  if (io_uring_queue_init(8, &ring, 0) != 0) return false;
  const size_t bytes = 14 * 4096;
  void* memory = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  bool fits = false;
  if (memory != MAP_FAILED) {
    const iovec all{memory, bytes};
    fits = io_uring_register_buffers(&ring, &all, 1) == 0;
    if (fits) io_uring_unregister_buffers(&ring);
    munmap(memory, bytes);
  }
  io_uring_queue_exit(&ring);
  return fits;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s ring-fits|settle MILLISECONDS\n", argv[0]);
    return 2;
  }
  const bool settle = std::strcmp(argv[1], "settle") == 0;
  if (settle) {
    rlimit limit{};
    if (getrlimit(RLIMIT_MEMLOCK, &limit) != 0 || limit.rlim_cur != 65536) {
      std::fprintf(stderr, "settle needs RLIMIT_MEMLOCK of 65536 bytes\n");
      return 2;
    }
  }
  const auto deadline = Clock::now() + std::chrono::milliseconds(std::atol(argv[2]));
  for (;;) {
    if (settle ? settled() : ring_fits()) return 0;
    if (Clock::now() >= deadline) return 1;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}
