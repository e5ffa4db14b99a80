// Pure file policy: what to do with one file, decided from what was
// measured about it. No syscalls here; unit tests drive every branch.
#pragma once

#include <linux/stat.h>
#include <sys/types.h>

#include <cstdint>

#include "ringio/copy.hpp"

namespace ringio::copy {

// Files at least this large skip the buffer pool when they are mostly in the
// page cache (written with O_DIRECT from a mapping of the source, or copied
// in the kernel), else are read with O_DIRECT where the filesystem allows.
inline constexpr uint64_t kLargeFileBytes = 4 << 20;
// One unbuffered request moves at most this much: copy_file_range runs on
// the submitting thread, so a piece bounds how long other files wait for it.
inline constexpr uint64_t kUnbufferedPieceBytes = 8 << 20;

// How a file's data moves.
enum class DataPath : uint8_t {
  pooled,               // read into a pool buffer, write from it
  direct_read,          // the same, the source read with O_DIRECT
  mapped_direct_write,  // the target written with O_DIRECT from a mapping of the cached source
  in_kernel,            // copy_file_range: the kernel copies cache to cache
};
const char* data_path_name(DataPath path);

// What is known of a file when its data path is chosen.
struct DataPathFacts {
  uint64_t size_bytes = 0;
  bool size_unknown = false;
  bool one_extent_from_start = true;  // not sparse: one data extent at offset 0
  bool mostly_cached = false;         // at least half its pages in the page cache
  uint32_t source_direct_alignment = 0;  // O_DIRECT offset alignment, 0: not possible
  uint32_t target_direct_alignment = 0;
  uint32_t buffer_size_bytes = 0;
};
struct DataPathRules {
  bool direct_io = true;       // IoConfig::direct_io (--no-direct turns it off)
  bool copy_in_kernel = true;  // --no-copy-range turns it off
  bool reflink_never = false;  // copy_file_range may share extents: not with --reflink=never
};

// True when the choice depends on the page cache and alignments (a large,
// plain file): only then are they measured.
bool data_path_needs_facts(const DataPathFacts& facts);
// The best path for these facts; a mover that cannot set it up falls back
// with fallback_data_path().
DataPath choose_data_path(const DataPathFacts& facts, const DataPathRules& rules);
DataPath fallback_data_path(DataPath failed, const DataPathRules& rules);

// -n, -u, --skip-unchanged against an existing target.
bool should_skip(ClobberMode clobber, const struct statx& source, const struct statx& target);
// The permission bits a copy gets: the source's exactly with
// --preserve=mode, else less the umask and without setuid/setgid/sticky.
uint32_t target_mode(const struct statx& source, bool preserve_mode, mode_t umask);
// A size of 0, or a page without a block behind it, may be a file made on
// read (procfs, sysfs): such a file is read to its end.
bool size_may_be_unknown(const struct statx& source);

// Errors that mean "fall back", named (as coreutils' is_CLONENOTSUP).
// The filesystem keeps no owners or permission bits (vfat: EPERM; FUSE: ENOSYS).
bool is_attribute_not_kept(int code);
// The destination cannot make this hard link: the name gets its own copy.
bool is_link_refused(int code);
// FICLONE: these two filesystems cannot share extents (not: this file failed).
bool is_clone_unsupported(int code);
// O_TMPFILE is not supported here: use a marked temporary name.
bool is_tmpfile_unsupported(int code);
// copy_file_range cannot copy this pair of files: go through the buffers.
bool is_copy_range_unsupported(int code);

}  // namespace ringio::copy
