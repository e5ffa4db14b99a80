#include "copy/file_policy.hpp"

#include <sys/stat.h>

#include <cerrno>

namespace ringio::copy {

const char* data_path_name(DataPath path) {
  switch (path) {
    case DataPath::pooled: return "pooled";
    case DataPath::direct_read: return "direct_read";
    case DataPath::mapped_direct_write: return "mapped_direct_write";
    case DataPath::in_kernel: return "in_kernel";
  }
  return "?";
}

bool data_path_needs_facts(const DataPathFacts& facts) {
  return !facts.size_unknown && facts.size_bytes >= kLargeFileBytes && facts.one_extent_from_start;
}

// A large file already in the page cache does not go through a buffer, where
// it would be copied twice. Best: the target is written with O_DIRECT straight
// from a mapping of the source's cached pages (no copy at all, and no page
// cache filled for the target); else the kernel copies cache to cache
// (copy_file_range, one copy). Any other large file is read with O_DIRECT
// where allowed: the device writes straight into the registered buffer.
// Measured: docs/BENCHMARKS.md.
DataPath choose_data_path(const DataPathFacts& facts, const DataPathRules& rules) {
  if (!data_path_needs_facts(facts)) return DataPath::pooled;
  if (facts.mostly_cached) {
    const uint32_t alignment = facts.target_direct_alignment;
    if (rules.direct_io && alignment != 0 && kUnbufferedPieceBytes % alignment == 0)
      return DataPath::mapped_direct_write;
    return fallback_data_path(DataPath::mapped_direct_write, rules);
  }
  // Pool buffers are page-aligned and a power of two long, and chunks start
  // at multiples of the buffer size: only the filesystem's alignment matters.
  const uint32_t alignment = facts.source_direct_alignment;
  if (rules.direct_io && alignment != 0 && facts.buffer_size_bytes % alignment == 0) return DataPath::direct_read;
  return DataPath::pooled;
}

DataPath fallback_data_path(DataPath failed, const DataPathRules& rules) {
  if (failed == DataPath::mapped_direct_write && rules.copy_in_kernel && !rules.reflink_never)
    return DataPath::in_kernel;
  return DataPath::pooled;
}

bool should_skip(ClobberMode clobber, const struct statx& s, const struct statx& t) {
  switch (clobber) {
    case ClobberMode::overwrite:
      return false;
    case ClobberMode::no_clobber:
      return true;
    case ClobberMode::update_older:
      // cp -u: copy only when the source is newer than the destination.
      return s.stx_mtime.tv_sec < t.stx_mtime.tv_sec ||
             (s.stx_mtime.tv_sec == t.stx_mtime.tv_sec && s.stx_mtime.tv_nsec <= t.stx_mtime.tv_nsec);
    case ClobberMode::skip_unchanged:
      return S_ISREG(t.stx_mode) && s.stx_size == t.stx_size && s.stx_mtime.tv_sec == t.stx_mtime.tv_sec &&
             s.stx_mtime.tv_nsec == t.stx_mtime.tv_nsec;
  }
  return false;
}

uint32_t target_mode(const struct statx& source, bool preserve_mode, mode_t umask) {
  const uint32_t bits = source.stx_mode & 07777;
  if (preserve_mode) return bits;
  return bits & ~uint32_t(umask) & 0777;
}

bool size_may_be_unknown(const struct statx& source) {
  return source.stx_size == 0 || (source.stx_blocks == 0 && source.stx_size == kPageSizeBytes);
}

bool is_attribute_not_kept(int code) { return code == EPERM || code == ENOSYS || code == EOPNOTSUPP; }

bool is_link_refused(int code) {
  return code == EPERM || code == EMLINK || code == EOPNOTSUPP || code == ENOSYS || code == EXDEV;
}

bool is_clone_unsupported(int code) {
  return code == EXDEV || code == EOPNOTSUPP || code == ENOTTY || code == EINVAL || code == ENOSYS ||
         code == EBADF || code == EPERM || code == EACCES || code == ETXTBSY;
}

bool is_tmpfile_unsupported(int code) { return code == EOPNOTSUPP || code == EISDIR || code == EINVAL; }

bool is_copy_range_unsupported(int code) {
  return code == EXDEV || code == EINVAL || code == EOPNOTSUPP || code == ENOSYS;
}

}  // namespace ringio::copy
