// ringcp on filesystems other than the ext4 the other tests run on: XFS,
// btrfs, vfat and exFAT images, made and loop-mounted by each test
// (loop_mount.hpp), each used as the destination and as the source of a copy.
//
// - XFS and btrfs share extents: --reflink=always clones every file (FIEMAP
//   marks the destination's extents shared), and so does auto, the default;
//   across filesystems always fails per file and auto copies the bytes.
// - vfat and exFAT keep no symlinks, hard links, special files, xattrs,
//   owners or permission bits, and have no O_TMPFILE: `ringcp -a` names each
//   entry it cannot represent (exit 2), copies everything else, and leaves
//   no temporary; GNU cp on the same tree is the reference. Where the kernel
//   has no vfat, exFAT (through exfat-fuse) runs these checks and vfat only
//   serves as a source (see loop_mount.hpp for why).
//
// A test that cannot mount (not root, no loop device, no mkfs) skips with
// the reason, and fails instead under RINGIO_REQUIRE_FILESYSTEMS=1 (CI).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>
#include <nlohmann/json.hpp>
#include <set>

#include "integration/loop_mount.hpp"
#include "integration/process.hpp"
#include "integration/tree_compare.hpp"
#include "integration/tree_fixture.hpp"
#include "support/test_util.hpp"

#ifndef RINGCP_PATH
#error "RINGCP_PATH must name the ringcp binary"
#endif

namespace ringio::itest {
namespace {

const std::string kRingcp = RINGCP_PATH;

void expect_no_differences(const std::vector<std::string>& differences) {
  EXPECT_TRUE(differences.empty()) << format_differences(differences);
}

RunResult ringcp(std::vector<std::string> args) {
  args.insert(args.begin(), kRingcp);
  return run_process(args);
}

// The engines to run: posix always, uring where io_uring_setup works (and
// under RINGIO_REQUIRE_URING=1 a failing setup is a test failure).
std::vector<std::string> engines() {
  int setup_errno = 0;
  if (test::raw_io_uring_setup_works(&setup_errno)) return {"uring", "posix"};
  if (test::uring_required())
    ADD_FAILURE() << "RINGIO_REQUIRE_URING=1 but io_uring_setup fails: " << std::strerror(setup_errno);
  return {"posix"};
}

uint64_t stats_number(const RunResult& result, const std::string& key) {
  try {
    return nlohmann::json::parse(result.out).at(key).get<uint64_t>();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "no number '" << key << "' in --stats=json (" << e.what() << ")\n" << result.describe();
    return 0;
  }
}

// How much of a file's data FIEMAP maps, and how much of it is marked
// shared with another file.
struct Sharing {
  uint64_t mapped_bytes = 0;
  uint64_t shared_bytes = 0;
  std::string problem;
};

Sharing extent_sharing(const std::string& path) {
  Sharing sharing;
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    sharing.problem = "open: " + std::string(std::strerror(errno));
    return sharing;
  }
  constexpr unsigned kExtents = 64;
  alignas(8) char buffer[sizeof(fiemap) + kExtents * sizeof(fiemap_extent)];
  uint64_t start = 0;
  for (bool last = false; !last;) {
    std::memset(buffer, 0, sizeof buffer);
    auto* map = reinterpret_cast<fiemap*>(buffer);
    map->fm_start = start;
    map->fm_length = FIEMAP_MAX_OFFSET - start;
    map->fm_flags = FIEMAP_FLAG_SYNC;
    map->fm_extent_count = kExtents;
    if (ioctl(fd, FS_IOC_FIEMAP, map) != 0) {
      sharing.problem = "FIEMAP: " + std::string(std::strerror(errno));
      break;
    }
    if (map->fm_mapped_extents == 0) break;
    for (unsigned i = 0; i < map->fm_mapped_extents; ++i) {
      const fiemap_extent& extent = map->fm_extents[i];
      sharing.mapped_bytes += extent.fe_length;
      if (extent.fe_flags & FIEMAP_EXTENT_SHARED) sharing.shared_bytes += extent.fe_length;
      start = extent.fe_logical + extent.fe_length;
      last = (extent.fe_flags & FIEMAP_EXTENT_LAST) != 0;
    }
  }
  close(fd);
  return sharing;
}

// Files of a clone test whose data is large enough to live in extents of
// its own (btrfs stores files up to 2 KiB inline in its metadata, where
// nothing is shared).
bool in_extents(const Entry& entry) { return entry.type == S_IFREG && entry.size >= 64 * 1024; }

// A tree for the clone tests: the boundary sizes (a large file dropped from
// the page cache among them), a large cached file (the mapped path), a
// sparse file and a hard-link pair.
void build_clone_tree(const std::string& root) {
  build_sized_files(root, 500);
  write_bytes(root + "/cached-9MiB+3", test::random_bytes((9 << 20) + 3, 501));
  const int fd = open((root + "/sparse").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot create " + root + "/sparse");
  const auto piece = test::random_bytes(1 << 20, 502);
  const bool written = pwrite(fd, piece.data(), piece.size(), 0) == ssize_t(piece.size()) &&
                       pwrite(fd, piece.data(), piece.size(), 5 << 20) == ssize_t(piece.size());
  close(fd);
  if (!written) throw std::runtime_error("cannot write " + root + "/sparse");
  make_dir(root + "/sub");
  write_bytes(root + "/sub/linked", test::random_bytes(200000, 503));
  if (link((root + "/sub/linked").c_str(), (root + "/linked-too").c_str()) != 0)
    throw std::runtime_error("cannot link " + root + "/linked-too");
}

// Regular files with their own inode and data: what a clone run clones.
uint64_t distinct_data_files(const Scan& scan) {
  std::set<uint64_t> inodes;
  for (const auto& [path, entry] : scan)
    if (entry.type == S_IFREG && entry.size > 0) inodes.insert(entry.inode);
  return inodes.size();
}

// Every file of `copy` that lives in extents shares all of them.
void expect_all_shared(const Scan& copy, const std::string& root) {
  size_t checked = 0;
  for (const auto& [path, entry] : copy) {
    if (!in_extents(entry)) continue;
    const Sharing sharing = extent_sharing(root + "/" + path);
    EXPECT_EQ(sharing.problem, "") << path;
    EXPECT_GT(sharing.mapped_bytes, 0u) << path;
    EXPECT_EQ(sharing.shared_bytes, sharing.mapped_bytes) << path << " is not (all) shared with its source";
    ++checked;
  }
  EXPECT_GE(checked, 5u) << "too few files to check in " << root;
}

class FilesystemsClone : public ::testing::TestWithParam<FsKind> {};

std::string fs_param_name(const ::testing::TestParamInfo<FsKind>& info) { return fs_name(info.param); }

INSTANTIATE_TEST_SUITE_P(Kernel, FilesystemsClone, ::testing::Values(FsKind::xfs, FsKind::btrfs), fs_param_name);

TEST_P(FilesystemsClone, reflink_always_and_auto_share_every_extent) {
  MOUNT_OR_SKIP(fs, GetParam());
  RecordProperty("driver", fs.driver());
  build_clone_tree(fs / "src");
  const Scan source = scan_tree(fs / "src");
  const uint64_t files = distinct_data_files(source);
  for (const std::string& engine : engines()) {
    // auto is the default: no --reflink at all.
    for (const std::string& mode : {std::string("--reflink=always"), std::string()}) {
      SCOPED_TRACE(engine + " " + (mode.empty() ? "default (auto)" : mode));
      const std::string copy = fs / ("copy-" + engine + (mode.empty() ? "-auto" : "-always"));
      std::vector<std::string> args = {"--engine=" + engine, "--stats=json", "-a", fs / "src", copy};
      if (!mode.empty()) args.insert(args.begin(), mode);
      const RunResult result = ringcp(args);
      ASSERT_EQ(result.exit_code, 0) << result.describe();
      EXPECT_EQ(stats_number(result, "reflinked"), files) << result.describe();
      expect_no_differences(compare_trees(fs / "src", copy));
      expect_all_shared(scan_tree(copy), copy);
    }
  }
  // The source's extents are the shared ones too.
  expect_all_shared(source, fs / "src");
}

TEST_P(FilesystemsClone, reflink_never_copies_unshared_bytes) {
  // The control for the sharing check above: the same tree copied with
  // --reflink=never shares nothing.
  MOUNT_OR_SKIP(fs, GetParam());
  build_clone_tree(fs / "src");
  const RunResult result = ringcp({"--reflink=never", "--stats=json", "-a", fs / "src", fs / "copy"});
  ASSERT_EQ(result.exit_code, 0) << result.describe();
  EXPECT_EQ(stats_number(result, "reflinked"), 0u);
  expect_no_differences(compare_trees(fs / "src", fs / "copy"));
  for (const auto& [path, entry] : scan_tree(fs / "copy")) {
    if (!in_extents(entry)) continue;
    const Sharing sharing = extent_sharing(fs / "copy/" + path);
    EXPECT_EQ(sharing.problem, "") << path;
    EXPECT_EQ(sharing.shared_bytes, 0u) << path;
  }
}

TEST_P(FilesystemsClone, full_tree_to_it_and_back_to_ext4) {
  // Destination, then source: every kind of entry (the full tree, with a
  // >4 GiB sparse file, a path deeper than PATH_MAX, xattrs, devices and
  // foreign owners as root) survives ext4 -> this filesystem -> ext4.
  MOUNT_OR_SKIP(fs, GetParam());
  Scratch tmp;
  build_full_tree(tmp / "src");
  for (const std::string& engine : engines()) {
    SCOPED_TRACE(engine);
    const std::string there = fs / ("copy-" + engine);
    const std::string back = tmp / ("back-" + engine);
    const RunResult to_it = ringcp({"--engine=" + engine, "-a", tmp / "src", there});
    EXPECT_EQ(to_it.exit_code, 0) << to_it.describe();
    expect_no_differences(compare_trees(tmp / "src", there));
    const RunResult from_it = ringcp({"--engine=" + engine, "-a", there, back});
    EXPECT_EQ(from_it.exit_code, 0) << from_it.describe();
    expect_no_differences(compare_trees(tmp / "src", back));
  }
}

TEST_P(FilesystemsClone, reflink_always_across_filesystems_fails_each_file_and_leaves_nothing) {
  // As cp: "failed to clone" for each file (ext4 -> this filesystem cannot
  // share extents), the other entries copied, no file half made.
  MOUNT_OR_SKIP(fs, GetParam());
  Scratch tmp;
  make_dir(tmp / "src");
  write_bytes(tmp / "src/one", test::random_bytes(100000, 1));
  write_bytes(tmp / "src/two", test::random_bytes(5000, 2));
  make_dir(tmp / "src/sub");
  write_bytes(tmp / "src/sub/three", test::random_bytes(300000, 3));
  ASSERT_EQ(symlink("one", (tmp / "src/link").c_str()), 0);
  const std::string copy = fs / "copy";
  const RunResult result = ringcp({"--reflink=always", "-a", tmp / "src", copy});
  EXPECT_EQ(result.exit_code, 2) << result.describe();
  const std::vector<std::string> lines = lines_of(result.err);
  EXPECT_EQ(lines.size(), 3u) << result.describe();
  for (const std::string name : {"one", "two", "sub/three"}) {
    const std::string line = "ringcp: failed to clone '" + copy + "/" + name + "': Invalid cross-device link";
    EXPECT_EQ(std::count(lines.begin(), lines.end(), line), 1) << line << "\n" << result.describe();
    EXPECT_FALSE(exists(copy + "/" + name)) << name;
  }
  EXPECT_TRUE(exists(copy + "/link"));
  EXPECT_EQ(temporaries_in(scan_tree(copy)), std::vector<std::string>{});
}

TEST_P(FilesystemsClone, auto_clones_a_source_after_one_that_cannot_be_cloned) {
  // Two operands: an ext4 file (FICLONE refused: EXDEV) first, then files on
  // this filesystem. A refusal is remembered for its source filesystem
  // only, so the second operand's files are still cloned.
  MOUNT_OR_SKIP(fs, GetParam());
  Scratch tmp;
  write_bytes(tmp / "from-ext4", test::random_bytes(300000, 9));
  build_clone_tree(fs / "src");
  make_dir(fs / "into");
  const RunResult result =
      ringcp({"--engine=posix", "--stats=json", "-a", tmp / "from-ext4", fs / "src", fs / "into"});
  ASSERT_EQ(result.exit_code, 0) << result.describe();
  EXPECT_EQ(stats_number(result, "reflinked"), distinct_data_files(scan_tree(fs / "src")));
  expect_no_differences(compare_trees(fs / "src", fs / "into/src"));
  expect_all_shared(scan_tree(fs / "into/src"), fs / "into/src");
  EXPECT_EQ(extent_sharing(fs / "into/from-ext4").shared_bytes, 0u);
}

// ------------------------------------------------------- vfat and exFAT --

// What the vfat source tree holds, relative to its root: the entries vfat
// cannot represent, the one that carries xattrs, and all regular files.
struct VfatTree {
  std::vector<std::string> unrepresentable = {"link", "fifo", "socket"};
  std::string hard_pair[2] = {"hard-a", "sub/hard-b"};
  std::string with_xattr = "xattr.txt";
};

// Everything `ringcp -a` meets, with names vfat accepts: regular files of
// the boundary sizes (a large uncached one among them), a large cached file,
// a sparse file, nested directories, a file with an xattr, foreign owners
// and special mode bits (as root), a symlink, a hard-link pair, a FIFO, a
// socket and (as root) a device.
VfatTree build_vfat_source(const std::string& root) {
  VfatTree tree;
  build_sized_files(root, 700);
  write_bytes(root + "/cached-7MiB+1", test::random_bytes((7 << 20) + 1, 701));
  {
    // A hole in the middle (vfat has none: the copy holds zeros there).
    const int fd = open((root + "/sparse.bin").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) throw std::runtime_error("cannot create sparse.bin");
    const auto piece = test::random_bytes(100000, 702);
    const bool written = pwrite(fd, piece.data(), piece.size(), 0) == ssize_t(piece.size()) &&
                         pwrite(fd, piece.data(), piece.size(), 3 << 20) == ssize_t(piece.size());
    close(fd);
    if (!written) throw std::runtime_error("cannot write sparse.bin");
  }
  make_dir(root + "/sub");
  make_dir(root + "/sub/deeper dir");
  write_bytes(root + "/sub/deeper dir/nested file.txt", test::random_bytes(70000, 703));
  write_text(root + "/" + tree.with_xattr, "with an attribute\n");
  set_xattr(root + "/" + tree.with_xattr, "user.comment", "vfat has no place for this");
  write_text(root + "/owned.txt", "someone else's\n");
  write_text(root + "/setuid.sh", "#!/bin/sh\n");
  write_text(root + "/private.txt", "private\n");
  if (geteuid() == 0 && chown((root + "/owned.txt").c_str(), 1234, 5678) != 0)
    throw std::runtime_error("cannot chown owned.txt");
  if (chmod((root + "/setuid.sh").c_str(), 04755) != 0 || chmod((root + "/private.txt").c_str(), 0600) != 0)
    throw std::runtime_error("cannot chmod");
  set_mtime(root + "/private.txt", 1500000000, 123456789);

  if (symlink("private.txt", (root + "/link").c_str()) != 0) throw std::runtime_error("cannot symlink");
  write_bytes(root + "/" + tree.hard_pair[0], test::random_bytes(30000, 704));
  if (link((root + "/" + tree.hard_pair[0]).c_str(), (root + "/" + tree.hard_pair[1]).c_str()) != 0)
    throw std::runtime_error("cannot link");
  if (mkfifo((root + "/fifo").c_str(), 0640) != 0) throw std::runtime_error("cannot mkfifo");
  {
    const std::string path = root + "/socket";
    const int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, path.c_str(), std::min(path.size() + 1, sizeof address.sun_path));
    const bool bound = sock >= 0 && path.size() < sizeof address.sun_path &&
                       bind(sock, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
    if (sock >= 0) close(sock);
    if (!bound) throw std::runtime_error("cannot bind " + path);
  }
  if (geteuid() == 0 && mknod((root + "/null-device").c_str(), S_IFCHR | 0644, makedev(1, 3)) == 0)
    tree.unrepresentable.push_back("null-device");
  return tree;
}

// The quoted destination path an error line names: "... 'DST/x' ...".
std::string named_in(const std::string& line, const std::string& destination) {
  const std::string prefix = "'" + destination + "/";
  const auto start = line.find(prefix);
  if (start == std::string::npos) return "";
  const auto end = line.find('\'', start + prefix.size());
  return end == std::string::npos ? "" : line.substr(start + prefix.size(), end - start - prefix.size());
}

// One run of `ringcp -a` (or a rerun onto the same destination) from the
// vfat source tree into `copy` on vfat, checked against what vfat can hold.
void expect_vfat_copy(const RunResult& result, const std::string& source, const std::string& copy,
                      const VfatTree& tree, bool fuse_driver) {
  EXPECT_EQ(result.exit_code, 2) << result.describe();
  // Each line names one entry; each entry vfat cannot hold is named once.
  std::multiset<std::string> named;
  size_t warnings = 0;
  for (const std::string& line : lines_of(result.err)) {
    EXPECT_EQ(line.rfind("ringcp: ", 0), 0u) << line;
    if (line.rfind("ringcp: warning: permissions not preserved", 0) == 0) {
      ++warnings;  // once per run, not per entry (ringcp.1)
      continue;
    }
    const std::string name = named_in(line, copy);
    EXPECT_NE(name, "") << "a line that names no entry of the copy: " << line;
    named.insert(name);
  }
  EXPECT_LE(warnings, 1u) << result.describe();
  for (const std::string& name : tree.unrepresentable)
    EXPECT_EQ(named.count(name), 1u) << name << " is not reported once\n" << result.describe();
  // The second name of the hard-link pair (whichever ringcp met second).
  EXPECT_EQ(named.count(tree.hard_pair[0]) + named.count(tree.hard_pair[1]), 1u) << result.describe();
  std::set<std::string> expected(tree.unrepresentable.begin(), tree.unrepresentable.end());
  expected.insert(tree.hard_pair[0]);
  expected.insert(tree.hard_pair[1]);
  // A file whose xattrs cannot be kept may be reported too (exit 2).
  expected.insert(tree.with_xattr);
  for (const std::string& name : named) EXPECT_TRUE(expected.count(name)) << "unexpected report for " << name;

  // Everything else is there, byte for byte; nothing else is.
  const Scan source_scan = scan_tree(source, {.contents = true, .xattrs = false});
  const Scan copy_scan = scan_tree(copy, {.contents = true, .xattrs = false});
  EXPECT_EQ(temporaries_in(copy_scan), std::vector<std::string>{});
  for (const auto& [path, entry] : source_scan) {
    const auto found = copy_scan.find(path);
    if (entry.type == S_IFREG || entry.type == S_IFDIR) {
      ASSERT_NE(found, copy_scan.end()) << path << " was not copied";
      EXPECT_EQ(found->second.type, entry.type) << path;
      if (entry.type == S_IFREG) {
        EXPECT_EQ(found->second.size, entry.size) << path;
        EXPECT_EQ(found->second.content_hash, entry.content_hash) << path << " differs";
      }
    } else if (found != copy_scan.end()) {
      // fusefat's mknod creates a regular file and then fails with EIO
      // (cp -a leaves the same); the kernel's vfat leaves nothing.
      EXPECT_TRUE(fuse_driver && found->second.type == S_IFREG && found->second.size == 0)
          << path << " exists in the copy";
    }
  }
  for (const auto& [path, entry] : copy_scan)
    EXPECT_TRUE(source_scan.count(path)) << path << " is in the copy, not in the source";
}

bool fuse_driver(const LoopFilesystem& fs) { return fs.driver().find("FUSE") != std::string::npos; }

// vfat and exFAT: the same missing features (exFAT through exfat-fuse where
// the kernel has neither, as here: see loop_mount.hpp).
class FilesystemsFat : public ::testing::TestWithParam<FsKind> {};

INSTANTIATE_TEST_SUITE_P(Fat, FilesystemsFat, ::testing::Values(FsKind::vfat, FsKind::exfat), fs_param_name);

TEST_P(FilesystemsFat, archive_copy_reports_each_entry_it_cannot_hold_and_copies_the_rest) {
  MOUNT_OR_SKIP(fs, GetParam());
  RecordProperty("driver", fs.driver());
  Scratch tmp;
  const VfatTree tree = build_vfat_source(tmp / "src");
  for (const std::string& engine : engines()) {
    SCOPED_TRACE(engine + " on " + fs.driver());
    const std::string copy = fs / ("copy-" + engine);
    const RunResult first = ringcp({"--engine=" + engine, "-a", tmp / "src", copy});
    expect_vfat_copy(first, tmp / "src", copy, tree, fuse_driver(fs));
    // Again onto the copy: every file replaced through a named temporary
    // (no O_TMPFILE) renamed over the old one, no temporary left.
    const RunResult again = ringcp({"--engine=" + engine, "-a", tmp / "src/.", copy});
    expect_vfat_copy(again, tmp / "src", copy, tree, fuse_driver(fs));
    RecordProperty("ringcp_" + engine, first.err);
  }
}

TEST_P(FilesystemsFat, archive_copy_names_the_entries_cp_names) {
  // Differential: GNU cp -a and ringcp -a on the same tree create the same
  // entries, and both name the symlink and the special files. They differ
  // on purpose in what else they say (ringcp.1): cp reports ownership and
  // permissions for every entry, ringcp says once that permissions were not
  // kept; ringcp reports the hard link it could not make.
  MOUNT_OR_SKIP(fs, GetParam());
  RecordProperty("driver", fs.driver());
  Scratch tmp;
  const VfatTree tree = build_vfat_source(tmp / "src");
  RunOptions c_locale;
  c_locale.env = {"LC_ALL=C"};  // cp's quotes as parsed here
  const RunResult by_cp = run_process({"cp", "-a", tmp / "src", fs / "cp"}, c_locale);
  const RunResult by_ringcp = ringcp({"-a", tmp / "src", fs / "ringcp"});
  RecordProperty("cp", by_cp.err);
  RecordProperty("ringcp", by_ringcp.err);
  EXPECT_NE(by_cp.exit_code, 0);
  EXPECT_EQ(by_ringcp.exit_code, 2) << by_ringcp.describe();

  auto creation_failures = [](const RunResult& result, const std::string& destination) {
    std::set<std::string> names;
    for (const std::string& line : lines_of(result.err))
      if (line.find("cannot create symbolic link") != std::string::npos ||
          line.find("cannot create special file") != std::string::npos ||
          line.find("cannot create fifo") != std::string::npos)
        names.insert(named_in(line, destination));
    return names;
  };
  EXPECT_EQ(creation_failures(by_ringcp, fs / "ringcp"), creation_failures(by_cp, fs / "cp"))
      << "cp:\n" << by_cp.err << "ringcp:\n" << by_ringcp.err;

  // cp gives up on a name whose hard link the filesystem refuses (it is
  // missing from cp's copy); ringcp copies the data under it and reports
  // the link (ringcp.1).
  std::set<std::string> cp_lost;
  for (const std::string& line : lines_of(by_cp.err))
    if (line.find("cannot create hard link") != std::string::npos) cp_lost.insert(named_in(line, fs / "cp"));

  const Scan cp_scan = scan_tree(fs / "cp", {.contents = true, .xattrs = false});
  const Scan ringcp_scan = scan_tree(fs / "ringcp", {.contents = true, .xattrs = false});
  std::vector<std::string> differences;
  for (const auto& [path, entry] : cp_scan) {
    const auto found = ringcp_scan.find(path);
    if (found == ringcp_scan.end()) differences.push_back(path + ": only cp made it");
    else if (found->second.type != entry.type || found->second.content_hash != entry.content_hash)
      differences.push_back(path + ": differs");
  }
  for (const auto& [path, entry] : ringcp_scan)
    if (!cp_scan.count(path) && !cp_lost.count(path)) differences.push_back(path + ": only ringcp made it");
  expect_no_differences(differences);
}

TEST_P(FilesystemsFat, a_temporary_left_by_a_killed_run_is_removed_by_the_next_run) {
  // No xattrs here, so no marker: the temporary's name carries the check
  // (ringcp.1). The run is killed once a temporary exists; the next run
  // removes it, and keeps a file that only looks like one.
  MOUNT_OR_SKIP(fs, GetParam());
  RecordProperty("driver", fs.driver());
  Scratch tmp;
  const std::string src = tmp / "src", copy = fs / "copy";
  ASSERT_EQ(mkdir(src.c_str(), 0755), 0);
  write_bytes(src + "/big", test::random_bytes(48 << 20, 901));
  for (int i = 0; i < 20; ++i) write_text(src + "/small" + std::to_string(i), "small " + std::to_string(i) + "\n");
  ASSERT_EQ(mkdir(copy.c_str(), 0755), 0);
  const std::string lookalike = ".ringcp-aaaaaaaaaaaa.tmp";
  write_text(copy + "/" + lookalike, "not ringcp's\n");

  const pid_t pid = fork();
  if (pid == 0) test::exec_argv({kRingcp, "-a", src + "/.", copy});
  ASSERT_GT(pid, 0);
  std::string temporary;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (temporary.empty() && std::chrono::steady_clock::now() < deadline) {
    if (DIR* dir = opendir(copy.c_str())) {
      while (dirent* entry = readdir(dir)) {
        const std::string name = entry->d_name;
        if (name.rfind(".ringcp-", 0) == 0 && name != lookalike) temporary = name;
      }
      closedir(dir);
    }
    if (temporary.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_FALSE(temporary.empty()) << "no temporary appeared in 30 s";
  ASSERT_TRUE(WIFSIGNALED(status)) << "the run ended before the kill: nothing was left to clean";
  ASSERT_EQ(access((copy + "/" + temporary).c_str(), F_OK), 0) << temporary << " is gone already";

  const RunResult rerun = ringcp({"-a", src + "/.", copy});
  EXPECT_EQ(rerun.exit_code, 0) << rerun.describe();
  EXPECT_EQ(access((copy + "/" + temporary).c_str(), F_OK), -1) << temporary << " was left behind";
  EXPECT_EQ(access((copy + "/" + lookalike).c_str(), F_OK), 0) << "a file that only looks like a temporary was removed";
  EXPECT_EQ(test::read_file(copy + "/big"), test::read_file(src + "/big"));
}

TEST_P(FilesystemsFat, as_source_copies_everything_to_ext4) {
  // A tree made on vfat copied to ext4 with -a: exit 0 (vfat answers
  // EOPNOTSUPP to listing xattrs: it has none), identical contents, modes,
  // owners and times. Nothing is renamed on the image, so fusefat may
  // stand in for a kernel without vfat.
  MOUNT_OR_SKIP(fs, GetParam(), VfatFuse::for_reading);
  RecordProperty("driver", fs.driver());
  Scratch tmp;
  // Made with mkdir(2) alone: vfat refuses the chmod make_dir() does.
  for (const std::string dir : {"tree", "tree/a dir", "tree/a dir/and another"})
    ASSERT_EQ(mkdir((fs / dir).c_str(), 0755), 0) << dir << ": " << std::strerror(errno);
  uint64_t seed = 800;
  for (const SizedFile& file : boundary_sizes()) write_bytes(fs / "tree/" + file.name, test::random_bytes(file.size, seed++));
  write_bytes(fs / "tree/a dir/and another/Mixed Case Name.TXT", test::random_bytes(12345, 801));
  write_text(fs / "tree/a dir/" + std::string(200, 'l') + ".txt", "a long name\n");
  set_mtime(fs / "tree/a dir", 1400000000, 0);
  for (const std::string& engine : engines()) {
    SCOPED_TRACE(engine + " on " + fs.driver());
    const std::string copy = tmp / ("copy-" + engine);
    const RunResult result = ringcp({"--engine=" + engine, "-a", fs / "tree", copy});
    EXPECT_EQ(result.exit_code, 0) << result.describe();
    EXPECT_EQ(result.err, "");
    CompareOptions options = archive_compare_options();
    options.hole_map = false;  // FAT has no holes; how ext4 allocates is its own business
    expect_no_differences(compare_trees(fs / "tree", copy, options));
  }
}

}  // namespace
}  // namespace ringio::itest
