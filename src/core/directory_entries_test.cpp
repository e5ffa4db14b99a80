// The getdents record parser, on hand-made records: no directory needed.
#include "ringio/directory_entries.hpp"

#include <dirent.h>
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

namespace ringio {
namespace {

// Appends one linux_dirent64 record, padded to 8 bytes like the kernel's.
void append_record(std::vector<std::byte>& out, uint64_t inode, uint8_t type, const std::string& name) {
  const size_t unpadded = 19 + name.size() + 1;
  const auto length = static_cast<uint16_t>((unpadded + 7) / 8 * 8);
  const size_t at = out.size();
  out.resize(at + length);
  const int64_t next_offset = 0;
  std::memcpy(&out[at], &inode, 8);
  std::memcpy(&out[at + 8], &next_offset, 8);
  std::memcpy(&out[at + 16], &length, 2);
  std::memcpy(&out[at + 18], &type, 1);
  std::memcpy(&out[at + 19], name.data(), name.size());
}

TEST(DirectoryEntries, yields_every_record_with_its_name_inode_and_type) {
  std::vector<std::byte> bytes;
  append_record(bytes, 2, DT_DIR, ".");
  append_record(bytes, 1, DT_DIR, "..");
  append_record(bytes, 12345678901ull, DT_REG, "a file with a long name.txt");
  append_record(bytes, 7, DT_LNK, "l");
  std::vector<DirectoryEntry> seen;
  EXPECT_TRUE(for_each_dirent(bytes, [&](const DirectoryEntry& e) { seen.push_back(e); }));
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[0].name, ".");
  EXPECT_EQ(seen[1].name, "..");
  EXPECT_EQ(seen[2].name, "a file with a long name.txt");
  EXPECT_EQ(seen[2].inode, 12345678901ull);
  EXPECT_EQ(seen[2].type, DT_REG);
  EXPECT_EQ(seen[3].type, DT_LNK);
}

TEST(DirectoryEntries, needs_no_alignment) {
  std::vector<std::byte> bytes(1);  // the records start at an odd address
  append_record(bytes, 99, DT_REG, "odd");
  const std::span<const std::byte> records(bytes.data() + 1, bytes.size() - 1);
  DirectoryEntries entries(records);
  const auto entry = entries.next();
  ASSERT_TRUE(entry);
  EXPECT_EQ(entry->name, "odd");
  EXPECT_EQ(entry->inode, 99u);
  EXPECT_FALSE(entries.next());
  EXPECT_FALSE(entries.malformed());
}

TEST(DirectoryEntries, empty_bytes_are_no_entries) {
  DirectoryEntries entries({});
  EXPECT_FALSE(entries.next());
  EXPECT_FALSE(entries.malformed());
}

TEST(DirectoryEntries, a_truncated_record_stops_the_walk) {
  std::vector<std::byte> bytes;
  append_record(bytes, 1, DT_REG, "whole");
  append_record(bytes, 2, DT_REG, "cut short");
  bytes.resize(bytes.size() - 8);
  std::vector<std::string> names;
  EXPECT_FALSE(for_each_dirent(bytes, [&](const DirectoryEntry& e) { names.emplace_back(e.name); }));
  EXPECT_EQ(names, std::vector<std::string>{"whole"});
}

TEST(DirectoryEntries, a_record_length_too_small_or_a_name_without_nul_is_malformed) {
  std::vector<std::byte> bytes;
  append_record(bytes, 1, DT_REG, "x");
  const uint16_t too_small = 19;
  std::memcpy(&bytes[16], &too_small, 2);
  DirectoryEntries short_record(bytes);
  EXPECT_FALSE(short_record.next());
  EXPECT_TRUE(short_record.malformed());

  bytes.clear();
  append_record(bytes, 1, DT_REG, "abcd");  // 19 + 5 = 24 bytes: no padding
  std::memset(&bytes[19], 'z', bytes.size() - 19);  // no NUL left in the record
  DirectoryEntries no_nul(bytes);
  EXPECT_FALSE(no_nul.next());
  EXPECT_TRUE(no_nul.malformed());
}

}  // namespace
}  // namespace ringio
