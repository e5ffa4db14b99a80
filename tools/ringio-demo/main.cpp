// ringio-demo FILE...: reads each file through the buffer pool with many
// reads in flight, prints its size and XXH3-64 hash, then the pool's stats
// line. It shows the pipeline every ringio user writes: checkout a buffer (or
// park on a miss), submit, reap, resume short reads, give the buffer back.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <deque>

#include "ringio/backend.hpp"

namespace {

struct Chunk {
  ringio::BufferSlot slot;
  uint64_t offset = 0;
  uint32_t length = 0;  // bytes wanted
  uint32_t filled = 0;  // bytes read so far (short reads resume)
  bool done = false;
};

int hash_file(ringio::Backend& backend, const char* path) {
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    std::fprintf(stderr, "ringio-demo: cannot open '%s': %s\n", path, std::strerror(errno));
    return 1;
  }
  struct stat st {};
  fstat(fd, &st);
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  ringio::RegisteredBufferGroup& pool = backend.buffers();

  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  std::deque<Chunk> window;  // in file order; front = oldest
  uint64_t first_sequence = 0;
  uint64_t next_offset = 0;
  int status = 0;
  auto issue = [&](uint64_t sequence, Chunk& chunk) {
    ringio::Request read = ringio::Request::read(
        fd, chunk.slot.data() + chunk.filled, chunk.length - chunk.filled,
        chunk.offset + chunk.filled, chunk.slot.fixed_index());
    read.user_data = sequence;
    return backend.prepare(read);
  };

  while (status == 0 && (next_offset < size || !window.empty())) {
    pool.apply_pending_resize();
    // Issue reads while buffers are free; a miss parks the rest until a
    // completion gives a buffer back.
    while (next_offset < size) {
      ringio::BufferSlot slot = pool.checkout();
      if (!slot) break;
      Chunk chunk;
      chunk.length = static_cast<uint32_t>(std::min<uint64_t>(slot.size(), size - next_offset));
      chunk.offset = next_offset;
      chunk.slot = std::move(slot);
      window.push_back(std::move(chunk));
      if (!issue(first_sequence + window.size() - 1, window.back())) {
        window.pop_back();
        break;
      }
      next_offset += window.back().length;
    }
    ringio::Completion completions[64];
    const int reaped = backend.submit_and_reap(completions, 1);
    if (reaped < 0) {
      std::fprintf(stderr, "ringio-demo: reap: %s\n", std::strerror(-reaped));
      status = 1;
      break;
    }
    for (int i = 0; i < reaped; ++i) {
      Chunk& chunk = window[completions[i].user_data - first_sequence];
      const int64_t result = completions[i].result;
      if (result < 0 && result != -EINTR && result != -EAGAIN) {
        std::fprintf(stderr, "ringio-demo: read '%s': %s\n", path, std::strerror(int(-result)));
        status = 1;
      } else if (result == 0 && chunk.filled < chunk.length) {
        chunk.length = chunk.filled;  // the file shrank under us
        chunk.done = true;
      } else {
        chunk.filled += static_cast<uint32_t>(std::max<int64_t>(result, 0));
        chunk.done = chunk.filled == chunk.length;
        if (!chunk.done && !issue(completions[i].user_data, chunk)) status = 1;
      }
    }
    while (!window.empty() && window.front().done) {
      XXH3_64bits_update(state, window.front().slot.data(), window.front().length);
      window.pop_front();  // gives the buffer back
      ++first_sequence;
    }
  }
  // Drain on error so no request points at a buffer we give back.
  while (backend.in_flight() > 0) {
    ringio::Completion completions[64];
    if (backend.submit_and_reap(completions, 1) < 0) break;
  }
  window.clear();
  if (status == 0)
    std::printf("%s: %" PRIu64 " bytes xxh3=%016llx\n", path, size,
                static_cast<unsigned long long>(XXH3_64bits_digest(state)));
  XXH3_freeState(state);
  close(fd);
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: ringio-demo FILE...\n");
    return 1;
  }
  auto selection = ringio::make_backend(ringio::EngineChoice::automatic, ringio::IoConfig::defaults());
  if (!selection) {
    std::fprintf(stderr, "ringio-demo: %s\n", selection.error().message().c_str());
    return 3;
  }
  ringio::Backend& backend = *selection->backend;
  std::printf("backend: %s (%s)\n", ringio::backend_name(selection->kind), selection->reason.c_str());
  int status = 0;
  for (int i = 1; i < argc; ++i) status |= hash_file(backend, argv[i]);
  std::printf("%s\n", ringio::format_stats_line(backend.buffers().stats()).c_str());
  return status;
}
