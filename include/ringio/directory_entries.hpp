// Reading what a getdents request filled in: the kernel's linux_dirent64
// records, one after another. No system call here: the parser works on any
// bytes (and is tested on hand-made ones).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace ringio {

struct DirectoryEntry {
  std::string_view name;  // points into the buffer; "." and ".." included
  uint64_t inode = 0;     // d_ino
  uint8_t type = 0;       // d_type: DT_REG, DT_DIR, DT_LNK, ... or DT_UNKNOWN
};

// Walks the records in the `filled` bytes of a getdents buffer (the
// completion's result says how many). Fields are copied out byte by byte,
// so the buffer needs no particular alignment; the names point into it and
// stay valid as long as it does.
class DirectoryEntries {
 public:
  explicit DirectoryEntries(std::span<const std::byte> filled) : filled_(filled) {}

  // The next entry, or nullopt at the end of the bytes or at a record that
  // does not fit them (then malformed() is true and nothing more is read).
  std::optional<DirectoryEntry> next();
  bool malformed() const { return malformed_; }

 private:
  std::span<const std::byte> filled_;
  size_t offset_ = 0;
  bool malformed_ = false;
};

// Calls fn(const DirectoryEntry&) for every entry; false if a record was
// malformed (the entries before it were still passed on).
template <class Fn>
bool for_each_dirent(std::span<const std::byte> filled, Fn&& fn) {
  DirectoryEntries entries(filled);
  while (const std::optional<DirectoryEntry> entry = entries.next()) fn(*entry);
  return !entries.malformed();
}

}  // namespace ringio
