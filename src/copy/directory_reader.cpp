#include "copy/directory_reader.hpp"

#include <cerrno>

namespace ringio::copy {

namespace {

// As glibc's readdir: one getdents call fills this much.
constexpr uint64_t kDirectoryBufferBytes = 32 << 10;

}  // namespace

DirectoryReader::DirectoryReader(IoQueue& queue, int fd)
    : queue_(queue), fd_(fd), buffer_(new std::byte[kDirectoryBufferBytes]) {}

int DirectoryReader::next(DirectoryEntry* entry) {
  for (;;) {
    if (entries_) {
      if (const std::optional<DirectoryEntry> next = entries_->next()) {
        if (next->name == "." || next->name == "..") continue;
        *entry = *next;
        return 1;
      }
      if (entries_->malformed()) return -EIO;
    }
    const int64_t got = queue_.execute_now(Request::getdents(fd_, buffer_.get(), kDirectoryBufferBytes));
    if (got <= 0) return int(got);
    entries_.emplace(std::span<const std::byte>(buffer_.get(), size_t(got)));
  }
}

}  // namespace ringio::copy
