// One backend interface, two implementations: io_uring (`uring`) and
// pread/pwrite (`posix`). Shaped for a pipelined copy: prepare many requests,
// submit them in one go, reap completions in any order. Every operation the
// copy engine needs is a request, so that a decorator wrapping a backend can
// inject a fault into any of them.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ringio/buffer_group.hpp"
#include "ringio/config.hpp"
#include "ringio/result.hpp"

struct statfs;  // <sys/statfs.h>

namespace ringio {

enum class Op : uint8_t {
  nop,
  read,   // fixed (READ_FIXED) when buffer_index >= 0 and the backend registers buffers
  write,  // fixed (WRITE_FIXED) likewise
  openat,
  close,
  statx,
  fsync,  // flags = IORING_FSYNC_DATASYNC for fdatasync
  mkdirat,
  mknodat,
  linkat,
  renameat,
  unlinkat,
  symlinkat,
  readlinkat,
  fchmod,
  fchownat,   // fd + path "" + AT_EMPTY_PATH, or dirfd + name + AT_SYMLINK_NOFOLLOW
  utimensat,  // likewise; times[2]
  fsetxattr,
  fgetxattr,
  flistxattr,
  fremovexattr,
  lsetxattr,  // symlinks cannot be opened for f*xattr
  llistxattr,
  lgetxattr,
  seek_data,  // lseek(fd, offset, SEEK_DATA): result is the offset
  seek_hole,
  fallocate,
  ftruncate,
  fadvise,
  ficlone,  // ioctl(fd, FICLONE, fd2): share the extents of fd2 (reflink)
  copy_file_range,  // length bytes from fd to fd2, both at offset; result = bytes copied
  // The uring backend runs the operations below inline, as direct system
  // calls, like readlinkat or fchmod: io_uring has no opcode for them (but
  // for madvise, which is no cheaper through the ring).
  getdents,       // getdents64(fd, buffer, length): result = bytes filled, 0 at the end
  fchmodat,       // dirfd + name + mode; flags AT_SYMLINK_NOFOLLOW (fchmodat2, Linux 6.6)
  lremovexattr,   // path2 = the path, path = the xattr name
  set_direct_io,  // fcntl F_GETFL then F_SETFL with O_DIRECT set (flags = O_DIRECT) or cleared
  cachestat,      // cachestat(2), Linux 6.5: page-cache state of [offset, offset + length)
  fstatfs,        // into buffer (struct statfs)
  map_file,       // mmap(length, PROT_READ, MAP_SHARED, fd, offset) + madvise(mode): result = address
  madvise,        // madvise(buffer, length, mode) on part of a mapping
  unmap,          // munmap(buffer, length)
  count_,
};
inline constexpr size_t kOpCount = static_cast<size_t>(Op::count_);
const char* op_name(Op op);

// What cachestat(2) reports, in pages (the kernel's struct cachestat, which
// headers before Linux 6.5 lack).
struct CacheStat {
  uint64_t nr_cache = 0;
  uint64_t nr_dirty = 0;
  uint64_t nr_writeback = 0;
  uint64_t nr_evicted = 0;
  uint64_t nr_recently_evicted = 0;
};

enum class DirectIo : uint8_t { off, on };

// Caller-owned description of one operation. Pointers it carries (paths,
// buffers, statx output, times) must stay valid until its completion.
struct Request {
  Op op = Op::nop;
  uint64_t user_data = 0;
  int fd = -1;                 // the file, or the directory of `path` for *at ops
  int fd2 = AT_FDCWD;          // the directory of `path2` (linkat, renameat, symlinkat)
  const char* path = nullptr;  // name relative to fd; xattr name for *xattr ops
  const char* path2 = nullptr; // second name (new name, symlink target) / xattr path
  void* buffer = nullptr;      // data, xattr value, readlink output, statx output
  uint64_t length = 0;
  uint64_t offset = 0;
  int32_t buffer_index = -1;   // registered buffer slot; a hint the posix backend ignores
  int flags = 0;
  uint32_t mode = 0;           // mode for openat/mkdirat/fchmod(at); statx mask; fadvise and madvise advice
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t device = 0;         // mknodat
  const struct timespec* times = nullptr;  // utimensat: [atime, mtime]

  static Request read(int fd, void* buf, uint64_t len, uint64_t off, int32_t buffer_index = -1);
  static Request write(int fd, const void* buf, uint64_t len, uint64_t off,
                       int32_t buffer_index = -1);
  static Request openat(int dirfd, const char* path, int flags, uint32_t mode = 0);
  static Request close(int fd);
  // A null path means "" (the kernel refuses a null name before Linux 6.11).
  static Request statx(int dirfd, const char* path, int flags, uint32_t mask,
                       struct statx* out);
  // statx of the open file itself: statx(fd, "", AT_EMPTY_PATH, mask); the
  // way to ask for STATX_DIOALIGN (Linux 6.1) of a file already open.
  static Request fstatx(int fd, uint32_t mask, struct statx* out);
  static Request fsync(int fd, bool data_only = false);
  static Request mkdirat(int dirfd, const char* path, uint32_t mode);
  static Request mknodat(int dirfd, const char* path, uint32_t mode, uint64_t device);
  static Request linkat(int old_dirfd, const char* old_path, int new_dirfd, const char* new_path,
                        int flags);
  static Request renameat(int old_dirfd, const char* old_path, int new_dirfd,
                          const char* new_path, unsigned flags = 0);
  static Request unlinkat(int dirfd, const char* path, int flags);
  static Request symlinkat(const char* target, int new_dirfd, const char* link_path);
  static Request readlinkat(int dirfd, const char* path, char* buf, uint64_t buf_size);
  static Request fchmod(int fd, uint32_t mode);
  static Request fchownat(int dirfd, const char* path, uint32_t uid, uint32_t gid, int flags);
  static Request utimensat(int dirfd, const char* path, const struct timespec times[2],
                           int flags);
  static Request fsetxattr(int fd, const char* name, const void* value, uint64_t size,
                           int flags = 0);
  static Request fgetxattr(int fd, const char* name, void* value, uint64_t size);
  static Request flistxattr(int fd, char* list, uint64_t size);
  static Request fremovexattr(int fd, const char* name);
  static Request lsetxattr(const char* path, const char* name, const void* value, uint64_t size,
                           int flags = 0);
  static Request lgetxattr(const char* path, const char* name, void* value, uint64_t size);
  static Request llistxattr(const char* path, char* list, uint64_t size);
  static Request seek_data(int fd, uint64_t offset);
  static Request seek_hole(int fd, uint64_t offset);
  static Request fallocate(int fd, int mode, uint64_t offset, uint64_t len);
  static Request ftruncate(int fd, uint64_t len);
  static Request fadvise(int fd, uint64_t offset, uint64_t len, int advice);
  static Request ficlone(int target_fd, int source_fd);
  // The kernel copies page cache to page cache (or shares extents): the data
  // never passes through user space. Same offset in both files.
  static Request copy_file_range(int source_fd, int target_fd, uint64_t offset, uint64_t len);
  // Fills `buffer` with linux_dirent64 records from the directory's current
  // position and advances it (the offset is not used); read them with
  // DirectoryEntries (ringio/directory_entries.hpp). Any alignment will do.
  static Request getdents(int dirfd, void* buffer, uint64_t length);
  // flags: 0 or AT_SYMLINK_NOFOLLOW (AT_EMPTY_PATH too where the kernel has
  // fchmodat2). With AT_SYMLINK_NOFOLLOW the posix
  // implementation uses fchmodat2 (Linux 6.6) and, where the kernel lacks
  // it, the C library's emulation (which needs /proc); a symlink's mode
  // cannot be changed on Linux: -EOPNOTSUPP, reported as such.
  static Request fchmodat(int dirfd, const char* path, uint32_t mode, int flags = 0);
  static Request lremovexattr(const char* path, const char* name);
  // -EINVAL where the filesystem refuses O_DIRECT.
  static Request set_direct_io(int fd, DirectIo direct_io);
  // length 0: to the end of the file. -ENOSYS before Linux 6.5.
  static Request cachestat(int fd, uint64_t offset, uint64_t length, CacheStat* out);
  static Request fstatfs(int fd, struct statfs* out);
  // A read-only shared mapping of [offset, offset + length) of fd, then
  // madvise(advice) on all of it (0: no advice). The result is the address
  // (see mapped_address); a failed madvise unmaps and reports its errno.
  // Reading a mapping whose file fails (I/O error, truncation) raises
  // SIGBUS, not an errno.
  static Request map_file(int fd, uint64_t length, uint64_t offset, int advice = 0);
  static Request madvise(const void* address, uint64_t length, int advice);
  static Request unmap(const void* address, uint64_t length);
  static Request nop();
};

// The address a successful map_file completion carries.
inline const std::byte* mapped_address(int64_t map_file_result) {
  return reinterpret_cast<const std::byte*>(static_cast<uintptr_t>(map_file_result));
}

struct Completion {
  uint64_t user_data = 0;
  int64_t result = 0;  // >= 0 on success (bytes, fd, offset), -errno on failure
};

// Which path each operation really took, so tests can assert it.
struct OpCounts {
  std::array<uint64_t, kOpCount> by_op{};
  uint64_t fixed_reads = 0;
  uint64_t fixed_writes = 0;
  uint64_t plain_reads = 0;
  uint64_t plain_writes = 0;
  uint64_t ring_metadata_ops = 0;    // non-data ops submitted as SQEs
  uint64_t inline_metadata_ops = 0;  // non-data ops done as direct syscalls
  uint64_t submit_calls = 0;
  uint64_t quiesces = 0;
};

enum class BackendKind : uint8_t { uring, posix };
const char* backend_name(BackendKind kind);

class Backend {
 public:
  virtual ~Backend() = default;

  virtual BackendKind kind() const = 0;
  // Queue a request. false: no room (submission or completion queue full);
  // reap some completions first.
  [[nodiscard]] virtual bool prepare(const Request& request) = 0;
  // Submit what is queued, wait until at least min_completions completions
  // are available (0: do not wait), and move up to out.size() of them into
  // `out`. Returns how many were written, or -errno for a ring failure.
  virtual int submit_and_reap(std::span<Completion> out, unsigned min_completions) = 0;
  // Requests prepared or submitted and not yet reaped.
  virtual uint32_t in_flight() const = 0;
  // Runs `request` now, on the calling thread, as a direct system call,
  // outside the queue (nothing prepared or in flight is touched); its
  // user_data is ignored. Counted like an inline operation. For the few
  // calls whose answer the caller needs before it can go on (a directory
  // read by the walker, an attribute check), so that they too go through
  // the backend and its decorators.
  virtual int64_t execute_now(const Request& request) = 0;

  virtual RegisteredBufferGroup& buffers() = 0;
  virtual OpCounts op_counts() const = 0;
  // "uring (SINGLE_ISSUER|DEFER_TASKRUN, sparse buffers)" / "posix"
  virtual std::string describe() const = 0;
};

enum class EngineChoice : uint8_t { automatic, uring, posix };

struct BackendSelection {
  std::unique_ptr<Backend> backend;
  BackendKind kind = BackendKind::posix;
  std::string reason;  // why this backend: one line, printed at verbose level
};

// Backends this machine can run, best first; posix is always last.
std::vector<BackendKind> available_backends();

// `automatic` takes the best available backend and falls back to posix when
// io_uring cannot be used (ring setup errno, a missing opcode, or
// RINGIO_DISABLE_IOURING=1); an explicit `uring` that cannot run is an error.
Result<BackendSelection> make_backend(EngineChoice choice, const IoConfig& config,
                                      BufferAllocator allocator = BufferAllocator::anonymous_pages());

// Runs `request` now as a direct system call, without any backend: for a
// program's own few synchronous calls (ringcp's checks of its arguments).
int64_t execute_direct(const Request& request);

// Convenience for callers with nothing else in flight: prepare, submit, and
// wait for this one request. The result is >= 0 or -errno.
int64_t run_one(Backend& backend, Request request);

// Full-length helpers that resume short reads and writes (the loop every
// caller would otherwise write). Read stops early only at end of file.
Result<uint64_t> read_full(Backend& backend, int fd, void* buf, uint64_t len, uint64_t offset,
                           int32_t buffer_index = -1);
Status write_full(Backend& backend, int fd, const void* buf, uint64_t len, uint64_t offset,
                  int32_t buffer_index = -1);

}  // namespace ringio
