// ringio-consumer FILE: a program that uses only the I/O library, built
// against the installed package (run.sh). It reads FILE through the buffer
// pool with read_full() and prints "<bytes> <FNV-1a 64 in hex>", then the
// pool's stats line. It must link with liburing alone: no xxhash.
#include <fcntl.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>

#include "ringio/backend.hpp"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: ringio-consumer FILE\n");
    return 2;
  }
  auto selection = ringio::make_backend(ringio::EngineChoice::automatic,
                                        ringio::IoConfig::defaults());
  if (!selection) {
    std::fprintf(stderr, "ringio-consumer: %s\n", selection.error().message().c_str());
    return 1;
  }
  ringio::Backend& backend = *selection->backend;
  const int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    std::perror("ringio-consumer: open");
    return 1;
  }
  uint64_t hash = 14695981039346656037ull;
  uint64_t offset = 0;
  int status = 0;
  for (;;) {
    ringio::BufferSlot slot = backend.buffers().checkout();
    if (!slot) {  // nothing else is in flight: a miss here is a bug
      std::fprintf(stderr, "ringio-consumer: no free buffer\n");
      status = 1;
      break;
    }
    auto got = ringio::read_full(backend, fd, slot.data(), slot.size(), offset,
                                 slot.fixed_index());
    if (!got) {
      std::fprintf(stderr, "ringio-consumer: %s\n", got.error().message().c_str());
      status = 1;
      break;
    }
    for (uint64_t i = 0; i < *got; ++i) {
      hash ^= static_cast<uint8_t>(slot.data()[i]);
      hash *= 1099511628211ull;
    }
    offset += *got;
    if (*got < slot.size()) break;  // end of file
  }
  close(fd);
  if (status == 0) std::printf("%" PRIu64 " %016" PRIx64 "\n", offset, hash);
  std::printf("%s\n", ringio::format_stats_line(backend.buffers().stats()).c_str());
  return status;
}
