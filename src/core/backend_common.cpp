// Request builders, names, counters and the small synchronous helpers shared
// by every backend.
#include <array>
#include <cassert>
#include <cstring>

#include "core/op_counters.hpp"
#include "posix/syscalls.hpp"
#include "ringio/backend.hpp"

#include <cstdio>
#include <cstdlib>

namespace ringio {

const char* op_name(Op op) {
  static constexpr std::array kNames = {
      "nop",          "read",          "write",      "openat",       "close",
      "statx",        "fsync",         "mkdirat",    "mknodat",      "linkat",
      "renameat",     "unlinkat",      "symlinkat",  "readlinkat",   "fchmod",
      "fchownat",     "utimensat",     "fsetxattr",  "fgetxattr",    "flistxattr",
      "fremovexattr", "lsetxattr",     "llistxattr", "lgetxattr",    "seek_data",
      "seek_hole",    "fallocate",     "ftruncate",  "fadvise",      "ficlone",
      "copy_file_range", "getdents",   "fchmodat",   "lremovexattr", "set_direct_io",
      "cachestat",    "fstatfs",       "map_file",   "madvise",      "unmap"};
  static_assert(kNames.size() == kOpCount, "one name per Op");
  const auto index = static_cast<size_t>(op);
  return index < kOpCount ? kNames[index] : "invalid";
}

const char* backend_name(BackendKind kind) {
  return kind == BackendKind::uring ? "uring" : "posix";
}

void OpCounters::count_direct(Op op) {
  count(op);
  if (op == Op::read) {
    plain_reads.add();
  } else if (op == Op::write) {
    plain_writes.add();
  } else if (op != Op::copy_file_range) {
    inline_metadata_ops.add();
  }
}

OpCounts OpCounters::snapshot() const {
  OpCounts counts;
  for (size_t i = 0; i < kOpCount; ++i) counts.by_op[i] = by_op_[i].get();
  counts.fixed_reads = fixed_reads.get();
  counts.fixed_writes = fixed_writes.get();
  counts.plain_reads = plain_reads.get();
  counts.plain_writes = plain_writes.get();
  counts.ring_metadata_ops = ring_metadata_ops.get();
  counts.inline_metadata_ops = inline_metadata_ops.get();
  counts.submit_calls = submit_calls.get();
  return counts;
}

// ----------------------------------------------------------- builders --

namespace {
Request make(Op op) {
  Request request;
  request.op = op;
  return request;
}
}  // namespace

Request Request::nop() { return make(Op::nop); }

Request Request::read(int fd, void* buf, uint64_t len, uint64_t off, int32_t buffer_index) {
  Request r = make(Op::read);
  r.fd = fd;
  r.buffer = buf;
  r.length = len;
  r.offset = off;
  r.buffer_index = buffer_index;
  return r;
}

Request Request::write(int fd, const void* buf, uint64_t len, uint64_t off,
                       int32_t buffer_index) {
  Request r = read(fd, const_cast<void*>(buf), len, off, buffer_index);
  r.op = Op::write;
  return r;
}

Request Request::openat(int dirfd, const char* path, int flags, uint32_t mode) {
  Request r = make(Op::openat);
  r.fd = dirfd;
  r.path = path;
  r.flags = flags;
  r.mode = mode;
  return r;
}

Request Request::close(int fd) {
  Request r = make(Op::close);
  r.fd = fd;
  return r;
}

Request Request::statx(int dirfd, const char* path, int flags, uint32_t mask, struct statx* out) {
  Request r = make(Op::statx);
  r.fd = dirfd;
  r.path = path != nullptr ? path : "";
  r.flags = flags;
  r.mode = mask;
  r.buffer = out;
  return r;
}

Request Request::fstatx(int fd, uint32_t mask, struct statx* out) {
  return statx(fd, "", AT_EMPTY_PATH, mask, out);
}

Request Request::fsync(int fd, bool data_only) {
  Request r = make(Op::fsync);
  r.fd = fd;
  r.flags = data_only ? 1 : 0;
  return r;
}

Request Request::mkdirat(int dirfd, const char* path, uint32_t mode) {
  Request r = make(Op::mkdirat);
  r.fd = dirfd;
  r.path = path;
  r.mode = mode;
  return r;
}

Request Request::mknodat(int dirfd, const char* path, uint32_t mode, uint64_t device) {
  Request r = mkdirat(dirfd, path, mode);
  r.op = Op::mknodat;
  r.device = device;
  return r;
}

Request Request::linkat(int old_dirfd, const char* old_path, int new_dirfd, const char* new_path,
                        int flags) {
  Request r = make(Op::linkat);
  r.fd = old_dirfd;
  r.path = old_path;
  r.fd2 = new_dirfd;
  r.path2 = new_path;
  r.flags = flags;
  return r;
}

Request Request::renameat(int old_dirfd, const char* old_path, int new_dirfd,
                          const char* new_path, unsigned flags) {
  Request r = linkat(old_dirfd, old_path, new_dirfd, new_path, static_cast<int>(flags));
  r.op = Op::renameat;
  return r;
}

Request Request::unlinkat(int dirfd, const char* path, int flags) {
  Request r = make(Op::unlinkat);
  r.fd = dirfd;
  r.path = path;
  r.flags = flags;
  return r;
}

Request Request::symlinkat(const char* target, int new_dirfd, const char* link_path) {
  Request r = make(Op::symlinkat);
  r.fd2 = new_dirfd;
  r.path = link_path;
  r.path2 = target;
  return r;
}

Request Request::readlinkat(int dirfd, const char* path, char* buf, uint64_t buf_size) {
  Request r = make(Op::readlinkat);
  r.fd = dirfd;
  r.path = path;
  r.buffer = buf;
  r.length = buf_size;
  return r;
}

Request Request::fchmod(int fd, uint32_t mode) {
  Request r = make(Op::fchmod);
  r.fd = fd;
  r.mode = mode;
  return r;
}

Request Request::fchownat(int dirfd, const char* path, uint32_t uid, uint32_t gid, int flags) {
  Request r = make(Op::fchownat);
  r.fd = dirfd;
  r.path = path;
  r.uid = uid;
  r.gid = gid;
  r.flags = flags;
  return r;
}

Request Request::utimensat(int dirfd, const char* path, const struct timespec times[2],
                           int flags) {
  Request r = make(Op::utimensat);
  r.fd = dirfd;
  r.path = path;
  r.times = times;
  r.flags = flags;
  return r;
}

Request Request::fsetxattr(int fd, const char* name, const void* value, uint64_t size,
                           int flags) {
  Request r = make(Op::fsetxattr);
  r.fd = fd;
  r.path = name;
  r.buffer = const_cast<void*>(value);
  r.length = size;
  r.flags = flags;
  return r;
}

Request Request::fgetxattr(int fd, const char* name, void* value, uint64_t size) {
  Request r = make(Op::fgetxattr);
  r.fd = fd;
  r.path = name;
  r.buffer = value;
  r.length = size;
  return r;
}

Request Request::flistxattr(int fd, char* list, uint64_t size) {
  Request r = make(Op::flistxattr);
  r.fd = fd;
  r.buffer = list;
  r.length = size;
  return r;
}

Request Request::fremovexattr(int fd, const char* name) {
  Request r = make(Op::fremovexattr);
  r.fd = fd;
  r.path = name;
  return r;
}

Request Request::lsetxattr(const char* path, const char* name, const void* value, uint64_t size,
                           int flags) {
  Request r = fsetxattr(-1, name, value, size, flags);
  r.op = Op::lsetxattr;
  r.path2 = path;
  return r;
}

Request Request::lgetxattr(const char* path, const char* name, void* value, uint64_t size) {
  Request r = fgetxattr(-1, name, value, size);
  r.op = Op::lgetxattr;
  r.path2 = path;
  return r;
}

Request Request::llistxattr(const char* path, char* list, uint64_t size) {
  Request r = flistxattr(-1, list, size);
  r.op = Op::llistxattr;
  r.path2 = path;
  return r;
}

Request Request::seek_data(int fd, uint64_t offset) {
  Request r = make(Op::seek_data);
  r.fd = fd;
  r.offset = offset;
  return r;
}

Request Request::seek_hole(int fd, uint64_t offset) {
  Request r = seek_data(fd, offset);
  r.op = Op::seek_hole;
  return r;
}

Request Request::fallocate(int fd, int mode, uint64_t offset, uint64_t len) {
  Request r = make(Op::fallocate);
  r.fd = fd;
  r.flags = mode;
  r.offset = offset;
  r.length = len;
  return r;
}

Request Request::ftruncate(int fd, uint64_t len) {
  Request r = make(Op::ftruncate);
  r.fd = fd;
  r.length = len;
  return r;
}

Request Request::fadvise(int fd, uint64_t offset, uint64_t len, int advice) {
  Request r = make(Op::fadvise);
  r.fd = fd;
  r.offset = offset;
  r.length = len;
  r.mode = static_cast<uint32_t>(advice);
  return r;
}

Request Request::ficlone(int target_fd, int source_fd) {
  Request r = make(Op::ficlone);
  r.fd = target_fd;
  r.fd2 = source_fd;
  return r;
}

Request Request::copy_file_range(int source_fd, int target_fd, uint64_t offset, uint64_t len) {
  Request r = make(Op::copy_file_range);
  r.fd = source_fd;
  r.fd2 = target_fd;
  r.offset = offset;
  r.length = len;
  return r;
}

Request Request::getdents(int dirfd, void* buffer, uint64_t length) {
  Request r = make(Op::getdents);
  r.fd = dirfd;
  r.buffer = buffer;
  r.length = length;
  return r;
}

Request Request::fchmodat(int dirfd, const char* path, uint32_t mode, int flags) {
  Request r = make(Op::fchmodat);
  r.fd = dirfd;
  r.path = path;
  r.mode = mode;
  r.flags = flags;
  return r;
}

Request Request::lremovexattr(const char* path, const char* name) {
  Request r = fremovexattr(-1, name);
  r.op = Op::lremovexattr;
  r.path2 = path;
  return r;
}

Request Request::set_direct_io(int fd, DirectIo direct_io) {
  Request r = make(Op::set_direct_io);
  r.fd = fd;
  r.flags = direct_io == DirectIo::on ? O_DIRECT : 0;
  return r;
}

Request Request::cachestat(int fd, uint64_t offset, uint64_t length, CacheStat* out) {
  Request r = make(Op::cachestat);
  r.fd = fd;
  r.offset = offset;
  r.length = length;
  r.buffer = out;
  return r;
}

Request Request::fstatfs(int fd, struct statfs* out) {
  Request r = make(Op::fstatfs);
  r.fd = fd;
  r.buffer = out;
  return r;
}

Request Request::map_file(int fd, uint64_t length, uint64_t offset, int advice) {
  Request r = make(Op::map_file);
  r.fd = fd;
  r.length = length;
  r.offset = offset;
  r.mode = static_cast<uint32_t>(advice);
  return r;
}

Request Request::madvise(const void* address, uint64_t length, int advice) {
  Request r = make(Op::madvise);
  r.buffer = const_cast<void*>(address);
  r.length = length;
  r.mode = static_cast<uint32_t>(advice);
  return r;
}

Request Request::unmap(const void* address, uint64_t length) {
  Request r = make(Op::unmap);
  r.buffer = const_cast<void*>(address);
  r.length = length;
  return r;
}

// ------------------------------------------------------ synchronous use --

int64_t execute_direct(const Request& request) { return posix::execute(request); }

int64_t run_one(Backend& backend, Request request) {
  assert(backend.in_flight() == 0 && "run_one needs an idle backend");
  request.user_data = 1;
  while (!backend.prepare(request)) {
    Completion drained[8];
    if (backend.submit_and_reap(drained, 1) < 0) return -EIO;
  }
  Completion completion;
  for (;;) {
    const int n = backend.submit_and_reap({&completion, 1}, 1);
    if (n == 1) return completion.result;
    if (n < 0 && n != -EINTR) return n;
  }
}

Result<uint64_t> read_full(Backend& backend, int fd, void* buf, uint64_t len, uint64_t offset,
                           int32_t buffer_index) {
  uint64_t done = 0;
  auto* bytes = static_cast<std::byte*>(buf);
  while (done < len) {
    const int64_t rc =
        run_one(backend, Request::read(fd, bytes + done, len - done, offset + done, buffer_index));
    if (rc == -EINTR || rc == -EAGAIN) continue;
    if (rc < 0) return make_error("read", static_cast<int>(-rc));
    if (rc == 0) break;  // end of file
    done += static_cast<uint64_t>(rc);
  }
  return done;
}

Status write_full(Backend& backend, int fd, const void* buf, uint64_t len, uint64_t offset,
                  int32_t buffer_index) {
  uint64_t done = 0;
  const auto* bytes = static_cast<const std::byte*>(buf);
  while (done < len) {
    const int64_t rc = run_one(
        backend, Request::write(fd, bytes + done, len - done, offset + done, buffer_index));
    if (rc == -EINTR || rc == -EAGAIN) continue;
    if (rc < 0) return make_error("write", static_cast<int>(-rc));
    if (rc == 0) return make_error("write", EIO);  // no progress: never spin
    done += static_cast<uint64_t>(rc);
  }
  return {};
}

}  // namespace ringio
