#include "posix/syscalls.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>

namespace ringio::posix {

namespace {

// System calls newer than this machine's headers may be. Since 424 the
// numbers are the same on x86-64, arm64 and every other architecture but
// alpha.
#ifdef __NR_cachestat
constexpr long kCachestatSyscall = __NR_cachestat;
#else
constexpr long kCachestatSyscall = 451;  // Linux 6.5
#endif
#ifdef __NR_fchmodat2
constexpr long kFchmodat2Syscall = __NR_fchmodat2;
#else
constexpr long kFchmodat2Syscall = 452;  // Linux 6.6
#endif

// The kernel's struct cachestat: CacheStat is handed to it as is.
static_assert(sizeof(CacheStat) == 5 * sizeof(uint64_t));

// What a group of operations below answers for an op outside it.
constexpr int64_t kNotInGroup = INT64_MIN;

int64_t result_of(int64_t rc) { return rc < 0 ? -int64_t{errno} : rc; }

int64_t read_directory(const Request& r) {
  // The kernel takes an unsigned int count; a longer buffer is only partly used.
  const auto length = static_cast<unsigned>(std::min<uint64_t>(r.length, INT_MAX));
  return result_of(syscall(SYS_getdents64, r.fd, r.buffer, length));
}

int64_t change_mode_at(const Request& r) {
  if (r.flags == 0) return result_of(::fchmodat(r.fd, r.path, r.mode, 0));
  // glibc before 2.39 does AT_SYMLINK_NOFOLLOW itself (through an O_PATH
  // descriptor and /proc) and refuses AT_EMPTY_PATH; fchmodat2 does both in
  // the kernel. Where the kernel lacks it, the C library's way is next best.
  const long rc = syscall(kFchmodat2Syscall, r.fd, r.path, r.mode, r.flags);
  if (rc == 0 || errno != ENOSYS) return result_of(rc);
  return result_of(::fchmodat(r.fd, r.path, r.mode, r.flags));
}

int64_t set_direct_io(const Request& r) {
  const int flags = fcntl(r.fd, F_GETFL);
  if (flags < 0) return -int64_t{errno};
  const int wanted = (flags & ~O_DIRECT) | (r.flags & O_DIRECT);
  if (wanted == flags) return 0;
  // EINVAL: the filesystem cannot do O_DIRECT on this file.
  return result_of(fcntl(r.fd, F_SETFL, wanted));
}

int64_t page_cache_state(const Request& r) {
  struct {
    uint64_t offset, length;
  } range{r.offset, r.length};
  return result_of(syscall(kCachestatSyscall, r.fd, &range, r.buffer, 0));
}

int64_t map_file(const Request& r) {
  void* address = mmap(nullptr, r.length, PROT_READ, MAP_SHARED, r.fd, static_cast<off_t>(r.offset));
  if (address == MAP_FAILED) return -int64_t{errno};
  if (r.mode != 0 && ::madvise(address, r.length, static_cast<int>(r.mode)) != 0) {
    const int code = errno;
    munmap(address, r.length);
    return -int64_t{code};
  }
  // User-space addresses are below 2^57: always a positive result.
  return static_cast<int64_t>(reinterpret_cast<uintptr_t>(address));
}

// Operations on a file's data, position, mapping or descriptor.
int64_t execute_file_op(const Request& r) {
  switch (r.op) {
    case Op::read:
      return result_of(pread(r.fd, r.buffer, r.length, static_cast<off_t>(r.offset)));
    case Op::write:
      return result_of(pwrite(r.fd, r.buffer, r.length, static_cast<off_t>(r.offset)));
    case Op::openat:
      return result_of(openat(r.fd, r.path, r.flags, r.mode));
    case Op::close:
      return result_of(::close(r.fd));
    case Op::fsync:
      return result_of(r.flags != 0 ? fdatasync(r.fd) : ::fsync(r.fd));
    case Op::seek_data:
      return result_of(lseek(r.fd, static_cast<off_t>(r.offset), SEEK_DATA));
    case Op::seek_hole:
      return result_of(lseek(r.fd, static_cast<off_t>(r.offset), SEEK_HOLE));
    case Op::fallocate:
      return result_of(::fallocate(r.fd, r.flags, static_cast<off_t>(r.offset),
                                   static_cast<off_t>(r.length)));
    case Op::ftruncate:
      return result_of(::ftruncate(r.fd, static_cast<off_t>(r.length)));
    case Op::fadvise:
      // posix_fadvise returns the error number rather than setting errno.
      return -int64_t{posix_fadvise(r.fd, static_cast<off_t>(r.offset),
                                    static_cast<off_t>(r.length), static_cast<int>(r.mode))};
    case Op::ficlone:
      return result_of(ioctl(r.fd, FICLONE, r.fd2));
    case Op::copy_file_range: {
      loff_t in = static_cast<loff_t>(r.offset), out = in;
      return result_of(::copy_file_range(r.fd, &in, r.fd2, &out, r.length, 0));
    }
    case Op::getdents:
      return read_directory(r);
    case Op::set_direct_io:
      return set_direct_io(r);
    case Op::map_file:
      return map_file(r);
    case Op::madvise:
      return result_of(::madvise(r.buffer, r.length, static_cast<int>(r.mode)));
    case Op::unmap:
      return result_of(munmap(r.buffer, r.length));
    default:
      return kNotInGroup;
  }
}

// Operations on names, inode metadata and extended attributes.
int64_t execute_metadata_op(const Request& r) {
  switch (r.op) {
    case Op::statx:
      return result_of(::statx(r.fd, r.path, r.flags, r.mode, static_cast<struct statx*>(r.buffer)));
    case Op::mkdirat:
      return result_of(mkdirat(r.fd, r.path, r.mode));
    case Op::mknodat:
      return result_of(mknodat(r.fd, r.path, r.mode, r.device));
    case Op::linkat:
      return result_of(linkat(r.fd, r.path, r.fd2, r.path2, r.flags));
    case Op::renameat:
      return result_of(renameat2(r.fd, r.path, r.fd2, r.path2, static_cast<unsigned>(r.flags)));
    case Op::unlinkat:
      return result_of(unlinkat(r.fd, r.path, r.flags));
    case Op::symlinkat:
      return result_of(symlinkat(r.path2, r.fd2, r.path));
    case Op::readlinkat:
      return result_of(readlinkat(r.fd, r.path, static_cast<char*>(r.buffer), r.length));
    case Op::fchmod:
      return result_of(::fchmod(r.fd, r.mode));
    case Op::fchmodat:
      return change_mode_at(r);
    case Op::fchownat:
      return result_of(fchownat(r.fd, r.path, r.uid, r.gid, r.flags));
    case Op::utimensat:
      // glibc refuses a null path; the kernel's meaning is "fd itself".
      return result_of(r.path == nullptr ? futimens(r.fd, r.times)
                                         : utimensat(r.fd, r.path, r.times, r.flags));
    case Op::cachestat:
      return page_cache_state(r);
    case Op::fstatfs:
      return result_of(::fstatfs(r.fd, static_cast<struct statfs*>(r.buffer)));
    default:
      return kNotInGroup;
  }
}

int64_t execute_xattr_op(const Request& r) {
  switch (r.op) {
    case Op::fsetxattr:
      return result_of(fsetxattr(r.fd, r.path, r.buffer, r.length, r.flags));
    case Op::fgetxattr:
      return result_of(fgetxattr(r.fd, r.path, r.buffer, r.length));
    case Op::flistxattr:
      return result_of(flistxattr(r.fd, static_cast<char*>(r.buffer), r.length));
    case Op::fremovexattr:
      return result_of(fremovexattr(r.fd, r.path));
    case Op::lsetxattr:
      return result_of(lsetxattr(r.path2, r.path, r.buffer, r.length, r.flags));
    case Op::lgetxattr:
      return result_of(lgetxattr(r.path2, r.path, r.buffer, r.length));
    case Op::llistxattr:
      return result_of(llistxattr(r.path2, static_cast<char*>(r.buffer), r.length));
    case Op::lremovexattr:
      return result_of(lremovexattr(r.path2, r.path));
    default:
      return kNotInGroup;
  }
}

}  // namespace

int64_t execute(const Request& r) {
  if (r.op == Op::nop) return 0;
  for (auto* group : {execute_file_op, execute_metadata_op, execute_xattr_op}) {
    const int64_t result = group(r);
    if (result != kNotInGroup) return result;
  }
  return -EINVAL;
}

}  // namespace ringio::posix
