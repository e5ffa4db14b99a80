// Trees for the fault tests: generated from a seed, snapshotted (content
// hashes, modes, mtimes and ctimes), and compared with a copy.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace ringio::test {

struct TreeShape {
  uint32_t directories = 40;
  uint32_t small_files = 440;     // 0 .. 130 KiB, mostly under 4 KiB
  uint32_t large_files = 8;       // 200 .. 600 KiB: several buffers each
  uint32_t sparse_files = 2;      // 512 KiB with holes
  uint32_t huge_files = 1;        // 4 .. 18 MiB, just written (cached): copied without the buffer pool
  uint32_t symlinks = 30;         // relative, some dangling
  uint32_t hard_links = 16;       // a second name in another directory
  uint32_t fifos = 2;             // special files: made by name (mknodat, fchmodat)
  uint32_t xattr_files = 6;       // files and a directory with a user.* attribute
};

struct TreeStats {
  uint64_t entries = 0;  // everything below the root
  uint64_t regular_files = 0;
  uint64_t bytes = 0;
};

// /dev/shm when it is a tmpfs, else "" (callers fall back to the disk).
std::string memory_scratch_base();

// Creates the tree under `root` (which must exist and be empty).
TreeStats make_tree(const std::string& root, uint64_t seed, const TreeShape& shape = {});

struct EntrySnapshot {
  mode_t mode = 0;  // type and permission bits
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  uint64_t inode = 0;
  uint64_t content_hash = 0;  // regular files: the bytes; symlinks: the target
  std::string link_target;
};
// Relative path ("a/b") -> snapshot; the root itself is "".
using TreeSnapshot = std::map<std::string, EntrySnapshot>;

TreeSnapshot snapshot_tree(const std::string& root);
uint64_t hash_bytes(const std::string& bytes);
uint64_t hash_file(const std::string& path, uint64_t* size = nullptr);

// Differences between two snapshots of the same tree (for "the source is
// untouched"): one line per difference, empty when equal. atime is ignored.
std::vector<std::string> snapshot_differences(const TreeSnapshot& before, const TreeSnapshot& after);

// Names anywhere under root that start with ".ringcp-" (temporaries).
std::vector<std::string> find_temporaries(const std::string& root);

// Paths of regular files under a root.
std::vector<std::string> regular_files(const TreeSnapshot& snapshot);

}  // namespace ringio::test
