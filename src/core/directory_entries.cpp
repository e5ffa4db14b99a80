#include "ringio/directory_entries.hpp"

#include <cstring>

namespace ringio {

namespace {
// struct linux_dirent64 { u64 d_ino; s64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
constexpr size_t kInodeAt = 0;
constexpr size_t kRecordLengthAt = 16;
constexpr size_t kTypeAt = 18;
constexpr size_t kNameAt = 19;
}  // namespace

std::optional<DirectoryEntry> DirectoryEntries::next() {
  if (malformed_ || offset_ >= filled_.size()) return std::nullopt;
  const std::span<const std::byte> rest = filled_.subspan(offset_);
  uint16_t record_length = 0;
  if (rest.size() > kNameAt)
    std::memcpy(&record_length, rest.data() + kRecordLengthAt, sizeof record_length);
  // A record holds at least its header and a name's terminating NUL.
  if (record_length <= kNameAt || record_length > rest.size()) {
    malformed_ = true;
    return std::nullopt;
  }
  DirectoryEntry entry;
  std::memcpy(&entry.inode, rest.data() + kInodeAt, sizeof entry.inode);
  std::memcpy(&entry.type, rest.data() + kTypeAt, sizeof entry.type);
  const auto* name = reinterpret_cast<const char*>(rest.data() + kNameAt);
  const size_t name_room = record_length - kNameAt;
  const auto* end = static_cast<const char*>(std::memchr(name, '\0', name_room));
  if (end == nullptr) {  // the name must end inside its record
    malformed_ = true;
    return std::nullopt;
  }
  entry.name = std::string_view(name, static_cast<size_t>(end - name));
  offset_ += record_length;
  return entry;
}

}  // namespace ringio
