// Filesystem images for the ringcp integration tests: a sparse image file
// under a scratch directory, made with the filesystem's mkfs and mounted on a
// loop device in this process's mount namespace (so the ringcp child the
// test runs sees it), then unmounted and removed when the test ends, also
// when it fails.
#pragma once

#include <string>

#include "support/test_util.hpp"

namespace ringio::itest {

// Unmounts `path` when destroyed (lazily when it is busy). A loop device set
// up by `mount -o loop` is detached with the unmount (autoclear).
class MountGuard {
 public:
  explicit MountGuard(std::string path) : path_(std::move(path)) {}
  ~MountGuard();
  MountGuard(const MountGuard&) = delete;
  MountGuard& operator=(const MountGuard&) = delete;

 private:
  std::string path_;
};

// RINGIO_REQUIRE_FILESYSTEMS=1 (set by CI): a filesystem test that cannot
// make or mount its image fails instead of skipping.
bool filesystems_required();

enum class FsKind { xfs, btrfs, vfat, exfat };

// fusefat (a FUSE driver for FAT images) corrupts its directory when a file
// is renamed (`mv` then fsck.fat: "Duplicate directory entry", clusters
// shared), so it may stand in for a missing kernel vfat only where nothing
// on the image is renamed: when it is a copy's source.
enum class VfatFuse { refused, for_reading };

const char* fs_name(FsKind kind);

// A freshly made filesystem of `kind` in a sparse image under /var/tmp (or
// $RINGIO_TEST_DIR), mounted at path(). XFS and btrfs use the kernel's
// driver. Some kernels are built without FAT and exFAT: exFAT then uses
// exfat-fuse (a mature FUSE driver), vfat fusefat when `vfat_fuse` allows
// it. driver() says which one ran. When anything fails (not root, no loop
// device, no mkfs), mounted() is false and why_not() says why; nothing is
// left mounted. no_driver() is true when the kernel lacks the filesystem
// and no FUSE driver may stand in.
class LoopFilesystem {
 public:
  explicit LoopFilesystem(FsKind kind, VfatFuse vfat_fuse = VfatFuse::refused);
  ~LoopFilesystem();
  LoopFilesystem(const LoopFilesystem&) = delete;
  LoopFilesystem& operator=(const LoopFilesystem&) = delete;

  bool mounted() const { return mounted_; }
  bool no_driver() const { return no_driver_; }
  FsKind kind() const { return kind_; }
  const std::string& why_not() const { return why_not_; }
  const std::string& path() const { return mount_point_; }
  std::string operator/(const std::string& name) const { return mount_point_ + "/" + name; }
  const std::string& driver() const { return driver_; }

 private:
  bool make_image(FsKind kind);
  bool mount_image(FsKind kind);

  test::TempDir scratch_;  // holds the image and the mount point
  std::string image_;
  std::string mount_point_;
  std::string driver_;
  std::string why_not_;
  bool mounted_ = false;
  bool no_driver_ = false;
  FsKind kind_;
};

}  // namespace ringio::itest

// In a test body: mounts `var` (a LoopFilesystem) or skips with the reason;
// under RINGIO_REQUIRE_FILESYSTEMS=1 it fails instead of skipping, unless
// this kernel has no driver for the filesystem at all.
#define MOUNT_OR_SKIP(var, ...)                                                                    \
  ::ringio::itest::LoopFilesystem var(__VA_ARGS__);                                                \
  if (!var.mounted()) {                                                                            \
    if (::ringio::itest::filesystems_required() && !var.no_driver())                               \
      FAIL() << "RINGIO_REQUIRE_FILESYSTEMS=1 but " << ::ringio::itest::fs_name(var.kind())         \
             << " cannot be mounted: " << var.why_not();                                           \
    GTEST_SKIP() << ::ringio::itest::fs_name(var.kind()) << " cannot be mounted here: " << var.why_not(); \
  }
