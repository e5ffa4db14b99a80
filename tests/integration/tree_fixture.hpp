// Source trees for the ringcp integration tests, and a scratch directory
// that can remove trees deeper than PATH_MAX.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "support/test_util.hpp"

namespace ringio::itest {

// A TempDir (under $RINGIO_TEST_DIR or /var/tmp) emptied with directory
// descriptors before TempDir removes it, so deep trees and read-only
// directories go too.
class Scratch {
 public:
  Scratch() = default;
  ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  const std::string& path() const { return dir_.path(); }
  std::string operator/(const std::string& name) const { return dir_ / name; }

 private:
  test::TempDir dir_;
};

// Small helpers that throw std::runtime_error on failure (a broken fixture
// must not look like a ringcp bug).
void make_dir(const std::string& path, unsigned mode = 0755);
void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes);
void write_text(const std::string& path, const std::string& text);
std::string read_text(const std::string& path);
void set_mtime(const std::string& path, int64_t seconds, long nanoseconds, bool no_follow = false);
void set_xattr(const std::string& path, const std::string& key, const std::string& value);
bool exists(const std::string& path);  // lstat succeeds

// Sizes around page and buffer boundaries for every preset buffer size
// (16 KiB, 64 KiB, 256 KiB), a multi-buffer file and a file large enough
// for O_DIRECT (written back and dropped from the page cache): name and size.
struct SizedFile {
  std::string name;
  uint64_t size;
};
std::vector<SizedFile> boundary_sizes();
// Writes boundary_sizes() (random content) into `directory` (created).
void build_sized_files(const std::string& directory, uint64_t seed);

// Where the interesting entries of the full tree are, relative to its root.
struct FullTree {
  std::string sparse_file = "sparse/big-sparse";  // 4 GiB + 1 MiB, a few KiB of data
  uint64_t sparse_size = (uint64_t{4} << 30) + (1 << 20);
  std::string deep_file;  // the file at the bottom of the >PATH_MAX chain
  size_t deep_path_length = 0;
  bool has_device = false;
};

// Every kind of entry `ringcp -a` must reproduce (see the integration test
// list): sizes at page and buffer boundaries, a >4 GiB sparse file, awkward
// names, a path deeper than PATH_MAX, symlinks, a FIFO, a socket, hard
// links across directories, setuid/setgid/sticky modes, a read-only
// directory, xattrs, nanosecond mtimes and (as root) foreign owners.
FullTree build_full_tree(const std::string& root);

// A few files, a subdirectory, a symlink and a hard-link pair.
void build_small_tree(const std::string& root, uint64_t seed = 1);

}  // namespace ringio::itest
