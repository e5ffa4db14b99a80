#include "posix/syscalls.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

namespace ringio::posix {

namespace {
int64_t result_of(int64_t rc) { return rc < 0 ? -int64_t{errno} : rc; }
}  // namespace

int64_t execute(const Request& r) {
  switch (r.op) {
    case Op::nop:
      return 0;
    case Op::read:
      return result_of(pread(r.fd, r.buffer, r.length, static_cast<off_t>(r.offset)));
    case Op::write:
      return result_of(pwrite(r.fd, r.buffer, r.length, static_cast<off_t>(r.offset)));
    case Op::openat:
      return result_of(openat(r.fd, r.path, r.flags, r.mode));
    case Op::close:
      return result_of(::close(r.fd));
    case Op::statx:
      return result_of(::statx(r.fd, r.path, r.flags, r.mode, static_cast<struct statx*>(r.buffer)));
    case Op::fsync:
      return result_of(r.flags != 0 ? fdatasync(r.fd) : ::fsync(r.fd));
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
    case Op::fchownat:
      return result_of(fchownat(r.fd, r.path, r.uid, r.gid, r.flags));
    case Op::utimensat:
      // glibc refuses a null path; the kernel's meaning is "fd itself".
      return result_of(r.path == nullptr ? futimens(r.fd, r.times)
                                         : utimensat(r.fd, r.path, r.times, r.flags));
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
    case Op::seek_data:
      return result_of(lseek(r.fd, static_cast<off_t>(r.offset), SEEK_DATA));
    case Op::seek_hole:
      return result_of(lseek(r.fd, static_cast<off_t>(r.offset), SEEK_HOLE));
    case Op::fallocate:
      return result_of(::fallocate(r.fd, r.flags, static_cast<off_t>(r.offset),
                                   static_cast<off_t>(r.length)));
    case Op::ftruncate:
      return result_of(::ftruncate(r.fd, static_cast<off_t>(r.length)));
    case Op::fadvise: {
      const int rc = posix_fadvise(r.fd, static_cast<off_t>(r.offset),
                                   static_cast<off_t>(r.length), static_cast<int>(r.mode));
      return -int64_t{rc};
    }
    case Op::ficlone:
      return result_of(ioctl(r.fd, FICLONE, r.fd2));
    case Op::copy_file_range: {
      loff_t in = static_cast<loff_t>(r.offset), out = in;
      return result_of(::copy_file_range(r.fd, &in, r.fd2, &out, r.length, 0));
    }
    case Op::count_:
      break;
  }
  return -EINVAL;
}

}  // namespace ringio::posix
