#include "integration/loop_mount.hpp"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "integration/process.hpp"

namespace ringio::itest {

MountGuard::~MountGuard() {
  if (umount2(path_.c_str(), 0) != 0) umount2(path_.c_str(), MNT_DETACH);
}

bool filesystems_required() {
  const char* value = std::getenv("RINGIO_REQUIRE_FILESYSTEMS");
  return value != nullptr && std::strcmp(value, "1") == 0;
}

const char* fs_name(FsKind kind) {
  switch (kind) {
    case FsKind::xfs: return "xfs";
    case FsKind::btrfs: return "btrfs";
    case FsKind::vfat: return "vfat";
    case FsKind::exfat: return "exfat";
  }
  return "?";
}

namespace {

// Each image is as small as its mkfs allows: 300 MiB is the least XFS
// accepts (xfsprogs 5.19 on), btrfs wants about 114 MiB. Sparse: the disk
// holds only what is written.
uint64_t image_size_bytes(FsKind kind) {
  switch (kind) {
    case FsKind::xfs: return uint64_t{300} << 20;
    case FsKind::btrfs: return uint64_t{128} << 20;
    case FsKind::vfat: return uint64_t{64} << 20;
    case FsKind::exfat: return uint64_t{64} << 20;
  }
  return 0;
}

bool kernel_has_filesystem(const std::string& name) {
  std::ifstream list("/proc/filesystems");
  std::string line;
  while (std::getline(list, line)) {
    std::istringstream fields(line);
    std::string field;
    std::string last;
    while (fields >> field) last = field;
    if (last == name) return true;
  }
  return false;
}

}  // namespace

LoopFilesystem::LoopFilesystem(FsKind kind, VfatFuse vfat_fuse)
    : image_(scratch_ / "fs.img"), mount_point_(scratch_ / "mnt"), kind_(kind) {
  if (geteuid() != 0) {
    why_not_ = "needs root to mount a loop filesystem";
    return;
  }
  if (kind == FsKind::vfat && !kernel_has_filesystem("vfat") && vfat_fuse == VfatFuse::refused) {
    why_not_ = "this kernel has no vfat driver (/proc/filesystems); fusefat cannot stand in where files "
               "are renamed (it corrupts its directory); the exfat case runs these checks";
    no_driver_ = true;
    return;
  }
  if (!make_image(kind)) return;
  mounted_ = mount_image(kind);
}

bool LoopFilesystem::make_image(FsKind kind) {
  const int fd = open(image_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0 || ftruncate(fd, off_t(image_size_bytes(kind))) != 0) {
    why_not_ = "cannot create the image " + image_ + ": " + std::strerror(errno);
    if (fd >= 0) close(fd);
    return false;
  }
  close(fd);
  std::vector<std::string> mkfs;
  switch (kind) {
    case FsKind::xfs: mkfs = {"mkfs.xfs", "-q", "-m", "reflink=1", image_}; break;
    case FsKind::btrfs: mkfs = {"mkfs.btrfs", "-q", image_}; break;
    case FsKind::vfat: mkfs = {"mkfs.vfat", image_}; break;
    case FsKind::exfat: mkfs = {"mkfs.exfat", image_}; break;
  }
  const RunResult made = run_process(mkfs);
  if (made.exit_code != 0) {
    why_not_ = mkfs[0] + " failed (scripts/install-deps.sh installs it): " + made.describe();
    return false;
  }
  return true;
}

bool LoopFilesystem::mount_image(FsKind kind) {
  if (mkdir(mount_point_.c_str(), 0755) != 0) {
    why_not_ = "mkdir " + mount_point_ + ": " + std::strerror(errno);
    return false;
  }
  struct stat before {};
  stat(mount_point_.c_str(), &before);
  std::vector<std::string> mount;
  if ((kind != FsKind::vfat && kind != FsKind::exfat) || kernel_has_filesystem(fs_name(kind))) {
    driver_ = std::string(fs_name(kind)) + " (kernel)";
    mount = {"mount", "-t", fs_name(kind), "-o", "loop", image_, mount_point_};
  } else if (kind == FsKind::exfat) {
    // mount(8) sets up the loop device (detached again at unmount) and
    // runs the helper mount.exfat-fuse on it.
    driver_ = "exfat-fuse (FUSE; this kernel has no exfat)";
    mount = {"mount", "-t", "exfat-fuse", "-o", "loop", image_, mount_point_};
  } else {
    // Only for_reading gets here (the constructor refused the rest).
    // fusefat mounts before it returns; rw+ asks for a writable mount.
    driver_ = "fusefat (FUSE; this kernel has no vfat)";
    mount = {"fusefat", "-o", "rw+", image_, mount_point_};
  }
  const RunResult result = run_process(mount);
  struct stat after {};
  stat(mount_point_.c_str(), &after);
  if (result.exit_code != 0 || after.st_dev == before.st_dev) {
    why_not_ = "cannot mount with " + driver_ + ": " + result.describe();
    umount2(mount_point_.c_str(), MNT_DETACH);
    return false;
  }
  return true;
}

LoopFilesystem::~LoopFilesystem() {
  if (mounted_ && umount2(mount_point_.c_str(), 0) != 0) umount2(mount_point_.c_str(), MNT_DETACH);
}

}  // namespace ringio::itest
