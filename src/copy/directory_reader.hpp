// Reads a directory's entries through the Backend (getdents), so that a
// fault schedule reaches every directory the copier reads.
#pragma once

#include <cstdint>
#include <memory>

#include "copy/io_queue.hpp"
#include "ringio/directory_entries.hpp"

namespace ringio::copy {

class DirectoryReader {
 public:
  // Reads `fd` (opened O_DIRECTORY) from its current position; does not own it.
  DirectoryReader(IoQueue& queue, int fd);

  // The next entry other than "." and "..": 1, 0 at the end, or -errno.
  // The entry's name is valid until the next call.
  int next(DirectoryEntry* entry);

 private:
  IoQueue& queue_;
  int fd_;
  std::unique_ptr<std::byte[]> buffer_;
  std::optional<DirectoryEntries> entries_;
};

}  // namespace ringio::copy
