// Tree scanning and comparison for the ringcp integration tests.
//
// Everything walks with directory descriptors (openat/fstatat/readlinkat and
// /proc/self/fd/N/name for the l*xattr calls), so trees deeper than PATH_MAX
// are scanned like any other. Nothing here follows a symlink or opens a
// FIFO, socket or device.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <ctime>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace ringio::itest {

struct Entry {
  std::string path;  // relative to the scanned root; "." is the root itself
  mode_t type = 0;   // S_IFMT bits
  mode_t mode = 0;   // 07777 bits: setuid, setgid and sticky included
  uint64_t size = 0;
  uint64_t blocks = 0;  // st_blocks (512-byte units)
  uid_t uid = 0;
  gid_t gid = 0;
  struct timespec mtime {};
  struct timespec ctime {};
  uint64_t device = 0;
  uint64_t inode = 0;
  uint64_t nlink = 0;
  uint64_t rdev = 0;
  // Regular files: XXH3-64 of the whole logical content (holes as zeros)
  // and the data extents found with SEEK_DATA/SEEK_HOLE.
  uint64_t content_hash = 0;
  std::vector<std::pair<uint64_t, uint64_t>> data_map;
  std::string link_target;                    // symlinks
  std::map<std::string, std::string> xattrs;  // every attribute listed
  std::string problem;                        // what could not be read, if anything
};

// path -> entry, sorted by path (byte order).
using Scan = std::map<std::string, Entry>;

struct ScanOptions {
  bool contents = true;  // hash regular files and map their holes
  bool xattrs = true;
};

// Scans `root` (a directory, or a single non-directory entry) without
// following symlinks. Problems (unreadable entries) are recorded in the
// entries and also returned as differences by compare_scans.
Scan scan_tree(const std::string& root, const ScanOptions& options = {});

struct CompareOptions {
  bool owner = false;  // uid/gid; set when the copy ran as root
  bool mtime = true;
  bool root_metadata = true;  // compare the roots' own mode/owner/times/xattrs
  bool contents = true;       // size, hash, hole map
  bool hole_map = true;
  bool link_groups = true;  // same partition of non-directories by inode
  bool xattrs = true;
  // Snapshot comparisons ("nothing changed"): also ctime and inode numbers.
  bool ctime = false;
  bool inode = false;
};

// Defaults for comparing a source with its `ringcp -a` copy: owner compared
// when this process is root.
CompareOptions archive_compare_options();

// Every difference between `expected` (the source, or a snapshot taken
// before) and `actual` (the copy, or the same tree after), one readable
// line each. Empty when the trees match.
std::vector<std::string> compare_scans(const Scan& expected, const Scan& actual,
                                       const CompareOptions& options = archive_compare_options());
std::vector<std::string> compare_trees(const std::string& expected, const std::string& actual,
                                       const CompareOptions& options = archive_compare_options());

// Paths in `scan` whose last component starts with ".ringcp-" (ringcp's
// temporaries), printable.
std::vector<std::string> temporaries_in(const Scan& scan);

// All differences as one string (for assertion messages), at most `limit` lines.
std::string format_differences(const std::vector<std::string>& differences, size_t limit = 40);

// A path made printable for messages: control and non-ASCII bytes as \xNN,
// components longer than 40 bytes shortened to "abc…[200 bytes]".
std::string printable(const std::string& path);

// XXH3-64 of a regular file's logical content (holes as zeros), reading only
// its data extents; and the extents. Returns false on an error.
bool hash_file(int fd, uint64_t* hash, std::vector<std::pair<uint64_t, uint64_t>>* data_map,
               std::string* problem);

// Removes `name` in `dirfd` and everything below it, with descriptors
// (works beyond PATH_MAX), making directories writable first.
void remove_tree_at(int dirfd, const std::string& name);
// Removes everything inside `directory`, leaving it empty.
void clear_directory(const std::string& directory);

}  // namespace ringio::itest
