// Integration tests for ringcp: the real binary (RINGCP_PATH) copies real
// trees on the disk filesystem under /var/tmp (or $RINGIO_TEST_DIR), and the
// results are compared entry by entry (tree_compare.hpp). Engine-dependent
// tests run once with --engine=uring and once with --engine=posix; the
// uring runs skip when io_uring_setup(2) fails, and fail instead under
// RINGIO_REQUIRE_URING=1.
//
// These tests assert what DESIGN.md section 6 promises. A failing test here
// is a ringcp bug to fix in the engine or the CLI, not in the test.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include "integration/loop_mount.hpp"
#include "integration/process.hpp"
#include "integration/tree_compare.hpp"
#include "integration/tree_fixture.hpp"
#include "copy/publisher.hpp"
#include "ringio/copy.hpp"
#include "support/test_util.hpp"

#ifndef RINGCP_PATH
#error "RINGCP_PATH must name the ringcp binary"
#endif

namespace ringio::itest {
namespace {

using copy::kReplacingXattr;
using copy::kTempMarkerXattr;

using nlohmann::json;

const std::string kRingcp = RINGCP_PATH;

using ::ringio::test::uring_required;

bool has_line(const std::string& text, const std::string& line) {
  for (const std::string& candidate : lines_of(text)) {
    if (candidate == line) return true;
  }
  return false;
}

size_t count_lines_containing(const std::string& text, const std::string& needle) {
  size_t count = 0;
  for (const std::string& line : lines_of(text)) count += line.find(needle) != std::string::npos;
  return count;
}

// Parses --stats=json output (stdout only); a parse error is a test failure.
json parse_stats(const RunResult& result) {
  try {
    return json::parse(result.out);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "stdout is not valid JSON (" << e.what() << ")\n" << result.describe();
    return json();
  }
}

uint64_t number(const json& document, const std::string& pointer) {
  const json::json_pointer where(pointer);
  if (!document.is_object() || !document.contains(where) || !document.at(where).is_number()) {
    ADD_FAILURE() << "no number at " << pointer << " in the stats JSON";
    return 0;
  }
  return document.at(where).get<uint64_t>();
}

std::string string_at(const json& document, const std::string& pointer) {
  const json::json_pointer where(pointer);
  if (!document.is_object() || !document.contains(where) || !document.at(where).is_string()) {
    ADD_FAILURE() << "no string at " << pointer << " in the stats JSON";
    return "";
  }
  return document.at(where).get<std::string>();
}

uint64_t data_writes(const json& stats) {
  return number(stats, "/ops/fixed_writes") + number(stats, "/ops/plain_writes");
}

// Regular files present in `copy` whose content differs from the same path
// in `source` (a file under its final name must be complete).
std::vector<std::string> incomplete_files(const Scan& source, const Scan& copy) {
  std::vector<std::string> found;
  for (const auto& [path, entry] : copy) {
    if (entry.type != S_IFREG || path == ".") continue;
    auto it = source.find(path);
    if (it == source.end()) {
      found.push_back(printable(path) + " (not in the source)");
    } else if (it->second.size != entry.size || it->second.content_hash != entry.content_hash) {
      found.push_back(printable(path) + " (" + std::to_string(entry.size) + " of " +
                      std::to_string(it->second.size) + " bytes, or different content)");
    }
  }
  return found;
}

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& item : items) out += "\n  " + item;
  return out;
}

// Compare options for "nothing at all changed": ctime and inode numbers too.
CompareOptions unchanged_options() {
  CompareOptions options = archive_compare_options();
  options.owner = true;
  options.ctime = true;
  options.inode = true;
  return options;
}

// The path as the kernel reports it in /proc/PID/fd (symlinks resolved).
std::string resolved(const std::string& path) {
  char buffer[PATH_MAX];
  return realpath(path.c_str(), buffer) != nullptr ? std::string(buffer) : path;
}

bool file_equals(const std::string& a, const std::string& b) {
  const auto differences = compare_trees(a, b);
  return differences.empty();
}

// ------------------------------------------------------------ fixtures --

// Tests that do not depend on the engine (placement, usage errors): the
// default engine (auto).
class RingcpCli : public ::testing::Test {
 protected:
  RunResult ringcp(std::vector<std::string> args, RunOptions options = {}) {
    args.insert(args.begin(), kRingcp);
    return run_process(args, options);
  }
  RunOptions in_scratch() const {
    RunOptions options;
    options.cwd = tmp_.path();
    return options;
  }
  Scratch tmp_;
};

// Tests run with --engine=uring and --engine=posix.
class RingcpEngine : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "uring") {
      int setup_errno = 0;
      if (!test::raw_io_uring_setup_works(&setup_errno)) {
        if (uring_required())
          FAIL() << "RINGIO_REQUIRE_URING=1 but io_uring_setup fails: " << std::strerror(setup_errno);
        GTEST_SKIP() << "io_uring_setup fails here (" << std::strerror(setup_errno) << ")";
      }
    }
  }
  std::string engine_flag() const { return "--engine=" + GetParam(); }
  std::vector<std::string> command(std::vector<std::string> args) const {
    args.insert(args.begin(), engine_flag());
    args.insert(args.begin(), kRingcp);
    return args;
  }
  RunResult ringcp(const std::vector<std::string>& args, const RunOptions& options = {}) {
    return run_process(command(args), options);
  }
  RunOptions in_scratch() const {
    RunOptions options;
    options.cwd = tmp_.path();
    return options;
  }
  Scratch tmp_;
};

std::string engine_name(const ::testing::TestParamInfo<std::string>& info) { return info.param; }

#define RINGCP_ENGINE_SUITE(Suite)                   \
  class Suite : public RingcpEngine {};              \
  INSTANTIATE_TEST_SUITE_P(Engines, Suite,           \
                           ::testing::Values("uring", "posix"), engine_name)

RINGCP_ENGINE_SUITE(RingcpTree);
RINGCP_ENGINE_SUITE(RingcpStats);
RINGCP_ENGINE_SUITE(RingcpUpdate);
RINGCP_ENGINE_SUITE(RingcpDryRun);
RINGCP_ENGINE_SUITE(RingcpVerify);
RINGCP_ENGINE_SUITE(RingcpInterrupt);
RINGCP_ENGINE_SUITE(RingcpErrors);

// ----------------------------------------- 1. the full tree, both engines --

TEST_P(RingcpTree, archive_copy_of_the_full_tree_is_identical) {
  const std::string src = tmp_ / "src";
  const std::string dst = tmp_ / "dst";
  const FullTree tree = build_full_tree(src);
  ASSERT_GT(tree.deep_path_length, size_t{PATH_MAX}) << "the deep chain must exceed PATH_MAX";
  const Scan source_before = scan_tree(src);

  const RunResult result = ringcp({"-a", src, dst});
  EXPECT_EQ(result.exit_code, 0) << result.describe();
  EXPECT_EQ(result.all(), "") << "a clean copy prints nothing";

  const auto differences = compare_scans(source_before, scan_tree(dst));
  EXPECT_TRUE(differences.empty()) << format_differences(differences);

  // The >4 GiB file is copied sparse by default: its holes stay holes.
  struct stat st {};
  ASSERT_EQ(lstat((dst + "/" + tree.sparse_file).c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), tree.sparse_size);
  EXPECT_LT(static_cast<uint64_t>(st.st_blocks) * 512, uint64_t{1} << 20)
      << "the copy of a 4 GiB file with a few KiB of data allocates " << st.st_blocks * 512 << " bytes";
  const Scan copy = scan_tree(dst);
  ASSERT_EQ(copy.count(tree.sparse_file), 1u);
  EXPECT_EQ(copy.at(tree.sparse_file).data_map, source_before.at(tree.sparse_file).data_map);
  EXPECT_GE(source_before.at(tree.sparse_file).data_map.size(), 3u) << "fixture: the source must be sparse";

  // The deep file arrived (beyond PATH_MAX) and nothing temporary is left.
  EXPECT_EQ(copy.count(tree.deep_file), 1u);
  EXPECT_TRUE(temporaries_in(copy).empty()) << joined(temporaries_in(copy));

  // Never touch the source: not even a ctime changed.
  ScanOptions light;
  light.contents = false;
  CompareOptions unchanged = unchanged_options();
  unchanged.contents = false;
  const auto source_changes = compare_scans(source_before, scan_tree(src, light), unchanged);
  EXPECT_TRUE(source_changes.empty()) << "the source changed: " << format_differences(source_changes);
}

// A tree deeper than the descriptors a process may hold: the walk keeps a
// fixed budget of directories open and opens ancestors again when it comes
// back to them, so it needs no raised RLIMIT_NOFILE (ringcp cannot raise a
// hard limit of 200).
TEST_P(RingcpTree, a_tree_deeper_than_the_descriptor_limit_copies_within_it) {
  const std::string src = tmp_ / "deep-src";
  make_dir(src);
  constexpr int kDepth = 700;
  int fd = open(src.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  for (int level = 0; level < kDepth; ++level) {
    if (level % 50 == 0) {
      const int file = openat(fd, ("f" + std::to_string(level)).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
      ASSERT_GE(file, 0);
      const std::string text = "level " + std::to_string(level) + "\n";
      ASSERT_EQ(write(file, text.data(), text.size()), ssize_t(text.size()));
      close(file);
    }
    ASSERT_EQ(mkdirat(fd, "d", 0755), 0);
    const int next = openat(fd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    close(fd);
    ASSERT_GE(next, 0);
    fd = next;
  }
  close(fd);
  const Scan before = scan_tree(src);
  const std::string dst = tmp_ / "deep-dst";
  std::vector<std::string> argv = {"prlimit", "--nofile=200:200"};
  for (const std::string& arg : command({"-a", src, dst})) argv.push_back(arg);
  const RunResult result = run_process(argv);
  EXPECT_EQ(result.exit_code, 0) << result.describe();
  const auto differences = compare_scans(before, scan_tree(dst));
  EXPECT_TRUE(differences.empty()) << format_differences(differences);
}

TEST_P(RingcpTree, boundary_sizes_copy_with_every_preset_buffer_size) {
  const std::string src = tmp_ / "sizes";
  build_sized_files(src, 500);
  for (const std::string size : {"16K", "64K", "256K"}) {
    SCOPED_TRACE("--buffer-size=" + size);
    const std::string dst = tmp_ / ("copy-" + size);
    const RunResult result = ringcp({"-a", "--buffer-size=" + size, src, dst});
    EXPECT_EQ(result.exit_code, 0) << result.describe();
    const auto differences = compare_trees(src, dst);
    EXPECT_TRUE(differences.empty()) << format_differences(differences);
  }
}

// ------------------------------------------------------ placement rules --

TEST_F(RingcpCli, source_into_an_existing_directory_lands_inside_it) {
  build_small_tree(tmp_ / "src");
  make_dir(tmp_ / "dst");
  const RunResult result = ringcp({"-a", tmp_ / "src", tmp_ / "dst"});
  ASSERT_EQ(result.exit_code, 0) << result.describe();
  const auto differences = compare_trees(tmp_ / "src", tmp_ / "dst/src");
  EXPECT_TRUE(differences.empty()) << format_differences(differences);
  const Scan top = scan_tree(tmp_ / "dst", {false, false});
  size_t direct_children = 0;
  for (const auto& [path, entry] : top) direct_children += path != "." && path.find('/') == std::string::npos;
  EXPECT_EQ(direct_children, 1u) << "only dst/src should appear in dst";
}

TEST_F(RingcpCli, dot_copies_the_contents) {
  build_small_tree(tmp_ / "src");
  make_dir(tmp_ / "existing");
  RunResult result = ringcp({"-a", tmp_ / "src/.", tmp_ / "existing"});
  ASSERT_EQ(result.exit_code, 0) << result.describe();
  auto differences = compare_trees(tmp_ / "src", tmp_ / "existing");
  EXPECT_TRUE(differences.empty()) << "into an existing directory: " << format_differences(differences);

  result = ringcp({"-a", tmp_ / "src/.", tmp_ / "new"});
  ASSERT_EQ(result.exit_code, 0) << result.describe();
  differences = compare_trees(tmp_ / "src", tmp_ / "new");
  EXPECT_TRUE(differences.empty()) << "to a new directory: " << format_differences(differences);
}

TEST_F(RingcpCli, trailing_slash_on_the_source_changes_nothing) {
  build_small_tree(tmp_ / "src");
  make_dir(tmp_ / "existing");
  RunResult result = ringcp({"-a", tmp_ / "src/", tmp_ / "existing"});
  ASSERT_EQ(result.exit_code, 0) << result.describe();
  EXPECT_FALSE(exists(tmp_ / "existing/a")) << "src/ must not copy the contents";
  auto differences = compare_trees(tmp_ / "src", tmp_ / "existing/src");
  EXPECT_TRUE(differences.empty()) << "src/ into a directory: " << format_differences(differences);

  result = ringcp({"-a", tmp_ / "src//", tmp_ / "new"});
  ASSERT_EQ(result.exit_code, 0) << result.describe();
  differences = compare_trees(tmp_ / "src", tmp_ / "new");
  EXPECT_TRUE(differences.empty()) << "src// to a new name: " << format_differences(differences);
}

TEST_F(RingcpCli, several_sources_go_into_the_directory) {
  build_small_tree(tmp_ / "one", 1);
  build_small_tree(tmp_ / "two", 2);
  write_text(tmp_ / "file", "a file\n");
  make_dir(tmp_ / "dst");
  const RunResult result = ringcp({"-a", tmp_ / "one", tmp_ / "file", tmp_ / "two/", tmp_ / "dst"});
  ASSERT_EQ(result.exit_code, 0) << result.describe();
  for (const std::string name : {"one", "two", "file"}) {
    const auto differences = compare_trees(tmp_ / name, tmp_ / ("dst/" + name));
    EXPECT_TRUE(differences.empty()) << name << ": " << format_differences(differences);
  }
}

TEST_F(RingcpCli, single_file_to_a_new_name_and_into_a_directory) {
  write_bytes(tmp_ / "file", test::random_bytes(300000, 9));
  set_mtime(tmp_ / "file", 1400000000, 5);
  RunResult result = ringcp({"-a", tmp_ / "file", tmp_ / "renamed"});
  ASSERT_EQ(result.exit_code, 0) << result.describe();
  auto differences = compare_trees(tmp_ / "file", tmp_ / "renamed");
  EXPECT_TRUE(differences.empty()) << format_differences(differences);

  make_dir(tmp_ / "dir");
  result = ringcp({"-a", tmp_ / "file", tmp_ / "dir/"});
  ASSERT_EQ(result.exit_code, 0) << result.describe();
  differences = compare_trees(tmp_ / "file", tmp_ / "dir/file");
  EXPECT_TRUE(differences.empty()) << format_differences(differences);

  // Over an existing file (cp replaces it).
  write_text(tmp_ / "other", "old content that is longer than nothing\n");
  result = ringcp({"-a", tmp_ / "file", tmp_ / "other"});
  ASSERT_EQ(result.exit_code, 0) << result.describe();
  differences = compare_trees(tmp_ / "file", tmp_ / "other");
  EXPECT_TRUE(differences.empty()) << format_differences(differences);
}

// ------------------------------------------------- 2. --stats=json, ops --

TEST_P(RingcpStats, json_reports_the_backend_and_where_the_data_went) {
  const std::string src = tmp_ / "src";
  build_small_tree(src);
  build_sized_files(src + "/sizes", 60);
  const RunResult result = ringcp({"-a", "--stats=json", src, tmp_ / "dst"});
  ASSERT_EQ(result.exit_code, 0) << result.describe();
  const json stats = parse_stats(result);
  ASSERT_TRUE(stats.is_object()) << result.describe();
  EXPECT_EQ(number(stats, "/errors"), 0u);
  if (GetParam() == "uring") {
    EXPECT_EQ(string_at(stats, "/backend"), "uring") << stats.dump(2);
    // Data through registered (fixed) buffers, metadata through the ring.
    EXPECT_GT(number(stats, "/ops/fixed_reads"), 0u) << stats.dump(2);
    EXPECT_GT(number(stats, "/ops/fixed_writes"), 0u) << stats.dump(2);
    EXPECT_GT(number(stats, "/ops/ring_metadata_ops"), 0u) << stats.dump(2);
    EXPECT_EQ(number(stats, "/ops/plain_reads"), 0u) << "data must not bypass the fixed buffers\n" << stats.dump(2);
    EXPECT_EQ(number(stats, "/ops/plain_writes"), 0u) << "data must not bypass the fixed buffers\n" << stats.dump(2);
  } else {
    EXPECT_EQ(string_at(stats, "/backend"), "posix") << stats.dump(2);
    EXPECT_EQ(number(stats, "/ops/fixed_reads"), 0u) << stats.dump(2);
    EXPECT_EQ(number(stats, "/ops/fixed_writes"), 0u) << stats.dump(2);
    EXPECT_GT(number(stats, "/ops/plain_writes"), 0u) << stats.dump(2);
  }
  const auto differences = compare_trees(src, tmp_ / "dst");
  EXPECT_TRUE(differences.empty()) << format_differences(differences);
}

// How many requests of one op the copy made (by_op lists only those it made).
uint64_t op_count(const json& stats, const std::string& op) {
  const json::json_pointer where("/ops/by_op/" + op);
  return stats.is_object() && stats.contains(where) ? stats.at(where).get<uint64_t>() : 0;
}

// Pages of `path` in the page cache (cachestat(2), Linux 6.5), or -1.
int64_t cached_pages(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  struct {
    uint64_t off, len;
  } range{0, 0};  // len 0: to the end of the file
  struct {
    uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
  } stat{};
  const long rc = syscall(451 /* cachestat */, fd, &range, &stat, 0);
  close(fd);
  return rc == 0 ? int64_t(stat.nr_cache) : -1;
}

TEST_P(RingcpStats, a_cached_large_file_skips_the_buffers) {
  // Just written, the file is in the page cache. By default the copy is
  // written with O_DIRECT from a mapping of the source (pieces of at most
  // 8 MiB, the unaligned tail buffered), and fills no page cache; with
  // --no-direct the kernel copies it (copy_file_range); with
  // --no-copy-range too it goes through the buffers.
  const auto data = test::random_bytes((uint64_t{20} << 20) + 7, 77);
  write_bytes(tmp_ / "cached", data);
  RunResult result = ringcp({"-a", "--stats=json", tmp_ / "cached", tmp_ / "mapped"});
  ASSERT_EQ(result.exit_code, 0) << result.describe();
  json stats = parse_stats(result);
  EXPECT_EQ(number(stats, "/from_mapping"), 1u) << stats.dump(2);
  EXPECT_EQ(op_count(stats, "write"), 4u) << "3 O_DIRECT pieces and the tail\n" << stats.dump(2);
  EXPECT_EQ(number(stats, "/ops/fixed_writes"), 0u) << stats.dump(2);
  EXPECT_EQ(op_count(stats, "copy_file_range"), 0u) << stats.dump(2);
  EXPECT_EQ(number(stats, "/bytes"), data.size()) << stats.dump(2);
  const int64_t pages = cached_pages(tmp_ / "mapped");
  if (pages >= 0) {
    EXPECT_LE(pages, 1) << "only the buffered tail may be cached";
  }
  EXPECT_EQ(test::read_file(tmp_ / "mapped"), data);

  result = ringcp({"-a", "--no-direct", "--stats=json", tmp_ / "cached", tmp_ / "in-kernel"});
  ASSERT_EQ(result.exit_code, 0) << result.describe();
  stats = parse_stats(result);
  EXPECT_EQ(number(stats, "/in_kernel"), 1u) << stats.dump(2);
  // Pieces of 8 MiB: 3 calls, one more for each short copy the kernel may
  // return under memory pressure (seen with the filesystem tests running).
  EXPECT_GE(op_count(stats, "copy_file_range"), 3u) << stats.dump(2);
  EXPECT_LE(op_count(stats, "copy_file_range"), 6u) << stats.dump(2);
  EXPECT_EQ(data_writes(stats), 0u) << stats.dump(2);
  EXPECT_EQ(number(stats, "/bytes"), data.size()) << stats.dump(2);
  EXPECT_EQ(test::read_file(tmp_ / "in-kernel"), data);

  result = ringcp({"-a", "--no-direct", "--no-copy-range", "--stats=json", tmp_ / "cached", tmp_ / "buffered"});
  ASSERT_EQ(result.exit_code, 0) << result.describe();
  stats = parse_stats(result);
  EXPECT_EQ(op_count(stats, "copy_file_range"), 0u) << stats.dump(2);
  EXPECT_GT(data_writes(stats), 4u) << stats.dump(2);
  EXPECT_EQ(test::read_file(tmp_ / "buffered"), data);
}

TEST_P(RingcpStats, a_refused_in_kernel_copy_goes_on_through_the_buffers) {
  // tmpfs to a disk filesystem: the kernel refuses copy_file_range across
  // filesystems (EXDEV), and the copy continues through the buffers.
  if (access("/dev/shm", W_OK) != 0) GTEST_SKIP() << "no writable /dev/shm for a tmpfs source";
  test::TempDir shm("/dev/shm");
  const auto data = test::random_bytes((uint64_t{6} << 20) + 3, 78);
  write_bytes(shm / "cached", data);
  {
    const int in = open((shm / "cached").c_str(), O_RDONLY | O_CLOEXEC);
    const int out = open((tmp_ / "probe").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    ASSERT_GE(in, 0);
    ASSERT_GE(out, 0);
    const ssize_t copied = copy_file_range(in, nullptr, out, nullptr, 4096, 0);
    const int code = errno;
    close(in);
    close(out);
    if (copied >= 0 || code != EXDEV)
      GTEST_SKIP() << "this kernel copies from " << shm.path() << " to " << tmp_.path()
                   << " in the kernel: no refusal to fall back from";
  }
  // --no-direct: not written from a mapping, so the in-kernel copy is tried.
  const RunResult result = ringcp({"-a", "--no-direct", "--stats=json", shm / "cached", tmp_ / "copy"});
  ASSERT_EQ(result.exit_code, 0) << result.describe();
  const json stats = parse_stats(result);
  EXPECT_EQ(op_count(stats, "copy_file_range"), 1u) << "tried once, then the buffers\n" << stats.dump(2);
  EXPECT_EQ(number(stats, "/in_kernel"), 0u) << stats.dump(2);
  EXPECT_GT(data_writes(stats), 0u) << stats.dump(2);
  EXPECT_EQ(number(stats, "/bytes"), data.size()) << stats.dump(2);
  EXPECT_EQ(test::read_file(tmp_ / "copy"), data);
}

// Copies `count` files of `mode` under dst with -a; returns how many fchmod
// requests the copy made (the umask is 022 for ringcp).
uint64_t fchmods_to_copy_files_of_mode(const Scratch& tmp, const std::string& name, mode_t mode) {
  const std::string src = tmp / name;
  make_dir(src);
  for (int i = 0; i < 8; ++i) {
    const std::string file = src + "/f" + std::to_string(i);
    write_text(file, "content " + std::to_string(i));
    EXPECT_EQ(chmod(file.c_str(), mode), 0);
  }
  const mode_t saved = umask(022);
  const RunResult result = run_process({kRingcp, "-a", "--stats=json", src, tmp / (name + "-copy")});
  umask(saved);
  EXPECT_EQ(result.exit_code, 0) << result.describe();
  const auto differences = compare_trees(src, tmp / (name + "-copy"));
  EXPECT_TRUE(differences.empty()) << format_differences(differences);
  return op_count(parse_stats(result), "fchmod");
}

TEST_F(RingcpCli, a_file_created_with_its_source_mode_needs_no_fchmod) {
  // New files are created 0666 less the umask: 0644 sources need no fchmod,
  // 0755 ones one each. Directories are the same in both copies.
  const uint64_t plain = fchmods_to_copy_files_of_mode(tmp_, "plain", 0644);
  const uint64_t executable = fchmods_to_copy_files_of_mode(tmp_, "executable", 0755);
  EXPECT_EQ(executable - plain, 8u) << plain << " fchmod for 0644 files, " << executable << " for 0755";
}

TEST_F(RingcpCli, a_default_acl_on_the_destination_does_not_change_the_copied_modes) {
  // The destination's default ACL (u::rwx g::--- o::---) makes new files
  // 0600, whatever the umask: the copies must still get the source's 0644.
  make_dir(tmp_ / "dst");
  struct AclEntry {
    uint16_t tag, perm;
    uint32_t id;
  };
  struct {
    uint32_t version = 2;
    AclEntry entries[3] = {{0x01, 7, ~0u}, {0x04, 0, ~0u}, {0x20, 0, ~0u}};  // USER_OBJ, GROUP_OBJ, OTHER
  } acl;
  if (setxattr((tmp_ / "dst").c_str(), "system.posix_acl_default", &acl, sizeof acl, 0) != 0)
    GTEST_SKIP() << "cannot set a default ACL on " << tmp_.path() << ": " << std::strerror(errno);
  make_dir(tmp_ / "src");
  for (const char* name : {"a", "b", "c"}) {
    const std::string file = tmp_ / "src/" + name;
    write_text(file, name);
    ASSERT_EQ(chmod(file.c_str(), 0644), 0);
  }
  for (const char* engine : {"--engine=uring", "--engine=posix"}) {
    const std::string copy = tmp_ / "dst/" + std::string(engine).substr(9);
    const RunResult result = run_process({kRingcp, "-a", engine, tmp_ / "src", copy});
    ASSERT_EQ(result.exit_code, 0) << result.describe();
    for (const char* name : {"a", "b", "c"}) {
      struct stat st {};
      ASSERT_EQ(stat((copy + "/" + name).c_str(), &st), 0);
      EXPECT_EQ(st.st_mode & 07777, 0644u) << engine << " " << name;
    }
  }
}

TEST_F(RingcpCli, disable_iouring_makes_auto_report_posix) {
  build_small_tree(tmp_ / "src");
  RunOptions options;
  options.env = {"RINGIO_DISABLE_IOURING=1"};
  const RunResult result = ringcp({"-a", "--engine=auto", "--stats=json", tmp_ / "src", tmp_ / "dst"}, options);
  ASSERT_EQ(result.exit_code, 0) << result.describe();
  const json stats = parse_stats(result);
  EXPECT_EQ(string_at(stats, "/backend"), "posix") << stats.dump(2);
  EXPECT_EQ(number(stats, "/ops/fixed_reads"), 0u);
  EXPECT_EQ(number(stats, "/ops/fixed_writes"), 0u);
  const auto differences = compare_trees(tmp_ / "src", tmp_ / "dst");
  EXPECT_TRUE(differences.empty()) << format_differences(differences);
}

// ------------------------- 3. --skip-unchanged, -u, -n, --delete --

TEST_P(RingcpUpdate, skip_unchanged_writes_nothing_then_only_the_changed_file) {
  const std::string src = tmp_ / "src";
  const std::string dst = tmp_ / "dst";
  build_full_tree(src);
  RunResult result = ringcp({"-a", src, dst});
  ASSERT_EQ(result.exit_code, 0) << result.describe();

  // Nothing changed: nothing is written.
  result = ringcp({"-a", "--skip-unchanged", "--stats=json", src + "/.", dst});
  ASSERT_EQ(result.exit_code, 0) << result.describe();
  json stats = parse_stats(result);
  EXPECT_EQ(data_writes(stats), 0u) << stats.dump(2);
  EXPECT_GT(number(stats, "/skipped"), 0u) << stats.dump(2);
  EXPECT_EQ(number(stats, "/files"), 0u) << stats.dump(2);
  auto differences = compare_trees(src, dst);
  EXPECT_TRUE(differences.empty()) << format_differences(differences);

  // One file changes (content and mtime, same size): exactly it is written.
  const std::string changed = "sizes/s4097";
  write_bytes(src + "/" + changed, test::random_bytes(4097, 999));
  set_mtime(src + "/" + changed, 1700000000, 500000000);
  const Scan before = scan_tree(dst, {false, false});
  result = ringcp({"-a", "--skip-unchanged", "--stats=json", src + "/.", dst});
  ASSERT_EQ(result.exit_code, 0) << result.describe();
  stats = parse_stats(result);
  EXPECT_GT(data_writes(stats), 0u) << stats.dump(2);
  EXPECT_EQ(number(stats, "/files"), 1u) << stats.dump(2);
  EXPECT_EQ(number(stats, "/bytes"), 4097u) << stats.dump(2);
  differences = compare_trees(src, dst);
  EXPECT_TRUE(differences.empty()) << format_differences(differences);
  // Every other regular file is the very same inode (not rewritten).
  const Scan after = scan_tree(dst, {false, false});
  for (const auto& [path, entry] : before) {
    if (entry.type != S_IFREG || path == changed) continue;
    auto it = after.find(path);
    ASSERT_NE(it, after.end()) << printable(path);
    EXPECT_EQ(it->second.inode, entry.inode) << printable(path) << " was replaced although unchanged";
  }
}

TEST_P(RingcpUpdate, update_follows_cp) {
  const std::string src = tmp_ / "src";
  const std::string dst = tmp_ / "dst";
  make_dir(src);
  make_dir(dst);
  const int64_t t0 = 1600000000;
  write_text(src + "/older-dest", "new source content\n");
  set_mtime(src + "/older-dest", t0 + 100, 0);
  write_text(dst + "/older-dest", "old destination\n");
  set_mtime(dst + "/older-dest", t0, 0);

  write_text(src + "/newer-dest", "source content\n");
  set_mtime(src + "/newer-dest", t0, 0);
  write_text(dst + "/newer-dest", "newer destination\n");
  set_mtime(dst + "/newer-dest", t0 + 200, 0);

  write_text(src + "/same-time", "source same time\n");
  set_mtime(src + "/same-time", t0, 7);
  write_text(dst + "/same-time", "destination same time\n");
  set_mtime(dst + "/same-time", t0, 7);

  write_text(src + "/missing", "only in the source\n");

  const RunResult result = ringcp({"-a", "-u", src + "/.", dst});
  ASSERT_EQ(result.exit_code, 0) << result.describe();
  EXPECT_EQ(read_text(dst + "/older-dest"), "new source content\n") << "an older destination is replaced";
  EXPECT_EQ(read_text(dst + "/newer-dest"), "newer destination\n") << "a newer destination is kept";
  EXPECT_EQ(read_text(dst + "/same-time"), "destination same time\n") << "cp -u: equal times are not newer";
  EXPECT_EQ(read_text(dst + "/missing"), "only in the source\n") << "a missing destination is copied";
  EXPECT_TRUE(file_equals(src + "/older-dest", dst + "/older-dest"));
}

TEST_P(RingcpUpdate, no_clobber_never_overwrites) {
  const std::string src = tmp_ / "src";
  const std::string dst = tmp_ / "dst";
  make_dir(src);
  make_dir(dst);
  write_text(src + "/older-dest", "source\n");
  set_mtime(src + "/older-dest", 1600000100, 0);
  write_text(dst + "/older-dest", "destination kept\n");
  set_mtime(dst + "/older-dest", 1600000000, 0);
  write_text(src + "/same", "same content and size\n");
  write_text(dst + "/same", "SAME CONTENT AND SIZE\n");
  write_text(src + "/missing", "copied\n");
  make_dir(src + "/sub");
  write_text(src + "/sub/x", "x from source\n");
  make_dir(dst + "/sub");
  write_text(dst + "/sub/x", "x kept\n");
  const Scan before = scan_tree(dst);

  const RunResult result = ringcp({"-a", "-n", src + "/.", dst});
  EXPECT_EQ(result.exit_code, 0) << result.describe();
  EXPECT_EQ(read_text(dst + "/older-dest"), "destination kept\n");
  EXPECT_EQ(read_text(dst + "/same"), "SAME CONTENT AND SIZE\n");
  EXPECT_EQ(read_text(dst + "/sub/x"), "x kept\n");
  EXPECT_EQ(read_text(dst + "/missing"), "copied\n");
  const Scan after = scan_tree(dst);
  for (const std::string path : {"older-dest", "same", "sub/x"}) {
    EXPECT_EQ(after.at(path).inode, before.at(path).inode) << path << " was replaced";
    EXPECT_EQ(after.at(path).content_hash, before.at(path).content_hash) << path << " was rewritten";
  }
}

TEST_P(RingcpUpdate, delete_removes_extras_only_inside_the_copied_directories) {
  const std::string src = tmp_ / "src";
  build_small_tree(src);
  // Form 1: SRC/. DST -- DST is the copied directory; a sibling of DST survives.
  const std::string dst = tmp_ / "dst";
  RunResult result = ringcp({"-a", src, dst});
  ASSERT_EQ(result.exit_code, 0) << result.describe();
  write_text(dst + "/extra-file", "extra\n");
  make_dir(dst + "/extra-dir");
  make_dir(dst + "/extra-dir/nested");
  write_text(dst + "/extra-dir/nested/deeper", "deeper\n");
  write_text(dst + "/sub/extra-in-sub", "extra\n");
  ASSERT_EQ(symlink("nowhere", (dst + "/sub/inner/extra-link").c_str()), 0);
  write_text(tmp_ / "sibling-of-dst", "must survive\n");

  result = ringcp({"-a", "--delete", "--stats=json", src + "/.", dst});
  ASSERT_EQ(result.exit_code, 0) << result.describe();
  auto differences = compare_trees(src, dst);
  EXPECT_TRUE(differences.empty()) << format_differences(differences);
  EXPECT_EQ(read_text(tmp_ / "sibling-of-dst"), "must survive\n");
  const json stats = parse_stats(result);
  EXPECT_GE(number(stats, "/deleted"), 4u) << stats.dump(2);

  // Form 2: SRC PARENT -- only PARENT/src is a copied directory; PARENT's
  // other entries are outside the copy and survive.
  const std::string parent = tmp_ / "parent";
  make_dir(parent);
  result = ringcp({"-a", src, parent});
  ASSERT_EQ(result.exit_code, 0) << result.describe();
  write_text(parent + "/next-to-the-copy", "must survive\n");
  make_dir(parent + "/other-dir");
  write_text(parent + "/src/extra", "extra\n");
  result = ringcp({"-a", "--delete", src, parent});
  ASSERT_EQ(result.exit_code, 0) << result.describe();
  EXPECT_FALSE(exists(parent + "/src/extra"));
  EXPECT_TRUE(exists(parent + "/next-to-the-copy")) << "--delete removed an entry outside the copied directory";
  EXPECT_TRUE(exists(parent + "/other-dir")) << "--delete removed an entry outside the copied directory";
  differences = compare_trees(src, parent + "/src");
  EXPECT_TRUE(differences.empty()) << format_differences(differences);
}

// ------------------------------------------------------- 4. --dry-run --

TEST_P(RingcpDryRun, changes_nothing) {
  const std::string src = tmp_ / "src";
  build_full_tree(src);
  // A destination that does not exist stays absent.
  RunResult result = ringcp({"-a", "--dry-run", src, tmp_ / "absent"});
  EXPECT_EQ(result.exit_code, 0) << result.describe();
  EXPECT_FALSE(exists(tmp_ / "absent")) << "--dry-run created the destination";

  // An existing, different destination is left exactly as it was, even
  // with --delete; and the source is untouched.
  const std::string dst = tmp_ / "dst";
  result = ringcp({"-a", src, dst});
  ASSERT_EQ(result.exit_code, 0) << result.describe();
  write_bytes(src + "/sizes/s4097", test::random_bytes(4097, 4242));
  set_mtime(src + "/sizes/s4097", 1700000001, 1);
  write_text(src + "/new-file", "new\n");
  write_text(dst + "/extra-in-dst", "extra\n");
  const Scan dst_before = scan_tree(dst);
  const Scan src_before = scan_tree(src);
  result = ringcp({"-a", "--dry-run", "--delete", src + "/.", dst});
  EXPECT_EQ(result.exit_code, 0) << result.describe();
  auto differences = compare_scans(dst_before, scan_tree(dst), unchanged_options());
  EXPECT_TRUE(differences.empty()) << "--dry-run changed the destination: " << format_differences(differences);
  differences = compare_scans(src_before, scan_tree(src), unchanged_options());
  EXPECT_TRUE(differences.empty()) << "--dry-run changed the source: " << format_differences(differences);
}

// -------------------------------------------------------- 5. --verify --

TEST_P(RingcpVerify, passes_on_a_good_copy) {
  const std::string src = tmp_ / "src";
  build_small_tree(src);
  build_sized_files(src + "/sizes", 77);
  const RunResult result = ringcp({"-a", "--verify", "--stats=json", src, tmp_ / "dst"});
  EXPECT_EQ(result.exit_code, 0) << result.describe();
  EXPECT_EQ(result.err, "");
  const json stats = parse_stats(result);
  EXPECT_EQ(number(stats, "/errors"), 0u) << stats.dump(2);
  const auto differences = compare_trees(src, tmp_ / "dst");
  EXPECT_TRUE(differences.empty()) << format_differences(differences);
}

// Unmounts (lazily if busy) when the test ends; the loop device of a
// "mount -o loop" is released with it.
constexpr off_t kCorruptedByte = 100;

// Flips byte kCorruptedByte of the file open as `fd` on the loop device
// behind it: in the backing file `image`, at the physical offset FIEMAP
// gives, below the filesystem and its page cache (which is not touched).
bool corrupt_on_device(int fd, const std::string& image, std::string* note) {
  if (fdatasync(fd) != 0) {
    *note = std::string("fdatasync: ") + std::strerror(errno);
    return false;
  }
  alignas(8) char buffer[sizeof(fiemap) + sizeof(fiemap_extent)] = {};
  auto* map = reinterpret_cast<fiemap*>(buffer);
  map->fm_start = 0;
  map->fm_length = ~uint64_t{0};
  map->fm_flags = FIEMAP_FLAG_SYNC;
  map->fm_extent_count = 1;
  if (ioctl(fd, FS_IOC_FIEMAP, map) != 0 || map->fm_mapped_extents < 1) {
    *note = std::string("FIEMAP failed: ") + std::strerror(errno);
    return false;
  }
  const fiemap_extent& extent = map->fm_extents[0];
  const uint32_t unusable = FIEMAP_EXTENT_UNKNOWN | FIEMAP_EXTENT_DELALLOC | FIEMAP_EXTENT_ENCODED |
                            FIEMAP_EXTENT_DATA_INLINE | FIEMAP_EXTENT_NOT_ALIGNED | FIEMAP_EXTENT_UNWRITTEN;
  if ((extent.fe_flags & unusable) != 0 || extent.fe_logical != 0 || extent.fe_length < 4096) {
    *note = "first extent unusable (flags " + std::to_string(extent.fe_flags) + ")";
    return false;
  }
  const int device = open(image.c_str(), O_RDWR | O_CLOEXEC);
  if (device < 0) {
    *note = std::string("open the backing file: ") + std::strerror(errno);
    return false;
  }
  unsigned char block[4096];
  const off_t physical = static_cast<off_t>(extent.fe_physical);
  bool ok = pread(device, block, sizeof block, physical) == static_cast<ssize_t>(sizeof block);
  block[kCorruptedByte] = static_cast<unsigned char>(block[kCorruptedByte] ^ 0xff);
  ok = ok && pwrite(device, block, sizeof block, physical) == static_cast<ssize_t>(sizeof block) &&
       fdatasync(device) == 0;
  close(device);
  if (!ok) *note = "cannot rewrite the backing file";
  return ok;
}

// The harness itself, on a file of our own: after corrupt_on_device, a
// re-read that drops the page cache first must see the flipped byte.
std::string calibrate_device_corruption(const std::string& mount, const std::string& image) {
  const std::string path = mount + "/calibration";
  const auto data = test::random_bytes(1 << 20, 5);
  write_bytes(path, data);
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::string("open: ") + std::strerror(errno);
  std::string note;
  const bool corrupted = corrupt_on_device(fd, image, &note);
  posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  unsigned char reread = 0;
  const bool seen = pread(fd, &reread, 1, kCorruptedByte) == 1 &&
                    reread == static_cast<unsigned char>(data[kCorruptedByte] ^ 0xff);
  close(fd);
  unlink(path.c_str());
  if (!corrupted) return note;
  return seen ? "" : "a cache-dropping re-read did not see the byte changed on the device";
}

struct CorruptionOutcome {
  RunResult result;
  std::string trace_error;
  bool triggered = false;  // ringcp synced/dropped the destination and we saw it
  bool corrupted = false;  // a byte was changed on the device under the page cache
  std::string note;
};

// Runs `ringcp --verify` under ptrace. When ringcp has written a destination
// file under `mount` and synced it (fsync/fdatasync returned), is about to
// drop its cache (fadvise64) or has opened it again with O_DIRECT (a file of
// the expected size: not the write-side open), and `corrupt` is set, one byte of that file is
// changed on the device (corrupt_on_device); the page cache keeps what
// ringcp wrote, so only a re-read from the device can see the change.
CorruptionOutcome run_verify_with_device_corruption(const std::vector<std::string>& argv,
                                                    const std::string& mount, const std::string& image,
                                                    uint64_t expected_size, bool corrupt) {
  CorruptionOutcome outcome;
  const std::string mount_prefix = resolved(mount) + "/";
  RunOptions options;
  const char* asan = std::getenv("ASAN_OPTIONS");
  // LeakSanitizer cannot stop the world in a traced process.
  options.env = {std::string("ASAN_OPTIONS=") + (asan != nullptr ? std::string(asan) + ":" : "") + "detect_leaks=0"};
  auto on_syscall = [&](const SyscallStop& stop) {
    if (outcome.triggered) return;
    const bool synced = !stop.entry && (stop.nr == SYS_fdatasync || stop.nr == SYS_fsync) && stop.rval == 0;
    const bool dropping = stop.entry && stop.nr == SYS_fadvise64;
    const bool direct_open = !stop.entry && stop.nr == SYS_openat && stop.rval >= 0 && (stop.args[2] & O_DIRECT) != 0;
    if (!synced && !dropping && !direct_open) return;
    const uint64_t fd = direct_open ? static_cast<uint64_t>(stop.rval) : stop.args[0];
    const std::string fd_path = "/proc/" + std::to_string(stop.pid) + "/fd/" + std::to_string(fd);
    char link[PATH_MAX + 1];
    const ssize_t n = readlink(fd_path.c_str(), link, PATH_MAX);
    if (n <= 0) return;
    if (std::string(link, static_cast<size_t>(n)).rfind(mount_prefix, 0) != 0) return;
    const int ours = open(fd_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (ours < 0) return;
    struct stat st {};
    if (fstat(ours, &st) == 0 && S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) == expected_size) {
      outcome.triggered = true;
      if (corrupt) outcome.corrupted = corrupt_on_device(ours, image, &outcome.note);
    }
    close(ours);
  };
  outcome.result = run_traced(argv, options, on_syscall, &outcome.trace_error);
  return outcome;
}

TEST_P(RingcpVerify, rereads_the_destination_from_the_device) {
  // What this proves: after ringcp wrote and synced a destination file, one
  // byte is changed on the block device underneath the page cache (in the
  // loop device's backing file). The page cache and the buffers ringcp
  // wrote still hold the right bytes, so only a verify that re-reads the
  // destination from the device can notice. A control run under the same
  // tracing, without the corruption, must pass.
  if (geteuid() != 0) GTEST_SKIP() << "needs root to mount a loop filesystem";
  const std::string image = tmp_ / "fs.img";
  {
    const int fd = open(image.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(ftruncate(fd, 64 << 20), 0);
    close(fd);
  }
  const RunResult mkfs = run_process({"mkfs.ext4", "-q", "-F", image});
  if (mkfs.exit_code != 0) GTEST_SKIP() << "mkfs.ext4 unavailable: " << mkfs.describe();
  const std::string mount = tmp_ / "mnt";
  make_dir(mount);
  const RunResult mounted = run_process({"mount", "-o", "loop", image, mount});
  if (mounted.exit_code != 0) GTEST_SKIP() << "cannot mount a loop filesystem here: " << mounted.describe();
  MountGuard guard(mount);
  const std::string calibration = calibrate_device_corruption(mount, image);
  if (!calibration.empty()) GTEST_SKIP() << "harness: cannot change data below the page cache: " << calibration;

  // 1 MiB + 123 bytes goes through the page cache (the written pages are
  // still cached when verify runs); 5 MiB + 123 takes the O_DIRECT path.
  for (const uint64_t size : {(uint64_t{1} << 20) + 123, (uint64_t{5} << 20) + 123}) {
    SCOPED_TRACE("file size " + std::to_string(size));
    const std::string name = "data-" + std::to_string(size);
    const std::string source = tmp_ / name;
    write_bytes(source, test::random_bytes(size, size));

    // Control: traced, not corrupted.
    const std::string control_copy = mount + "/control-" + name;
    CorruptionOutcome control = run_verify_with_device_corruption(
        command({"-a", "--verify", source, control_copy}), mount, image, size, false);
    ASSERT_EQ(control.trace_error, "");
    EXPECT_EQ(control.result.exit_code, 0) << control.result.describe();
    EXPECT_TRUE(file_equals(source, control_copy));
    if (!control.triggered) {
      ADD_FAILURE() << "ringcp --verify never synced (fsync/fdatasync), dropped the cache of (fadvise) nor "
                       "reopened with O_DIRECT the destination: it cannot have re-read it from the device";
      continue;
    }

    const std::string corrupted_copy = mount + "/corrupted-" + name;
    CorruptionOutcome outcome = run_verify_with_device_corruption(
        command({"-a", "--verify", source, corrupted_copy}), mount, image, size, true);
    ASSERT_EQ(outcome.trace_error, "");
    ASSERT_TRUE(outcome.triggered);
    if (!outcome.corrupted)
      GTEST_SKIP() << "harness: could not change the destination on the device (" << outcome.note << ")";
    EXPECT_EQ(outcome.result.exit_code, 2) << "a verify mismatch must be reported\n" << outcome.result.describe();
    EXPECT_EQ(count_lines_containing(outcome.result.err, "verif"), 1u) << outcome.result.describe();
    EXPECT_FALSE(exists(corrupted_copy)) << "a copy that failed verification was published";
    RecordProperty("verify_message_" + std::to_string(size), outcome.result.err);
  }
}

// ---------------------------------------------------------- 6. SIGINT --

// Entries (not hidden) directly in `path`; 0 when it does not exist yet.
size_t entries_below(const std::string& path) {
  size_t count = 0;
  if (DIR* stream = opendir(path.c_str())) {
    while (dirent* item = readdir(stream)) count += item->d_name[0] != '.';
    closedir(stream);
  }
  return count;
}

bool process_has_open(pid_t pid, const std::string& path) {
  const std::string directory = "/proc/" + std::to_string(pid) + "/fd";
  DIR* stream = opendir(directory.c_str());
  if (stream == nullptr) return false;
  bool found = false;
  while (dirent* item = readdir(stream)) {
    char link[PATH_MAX + 1];
    const ssize_t n = readlink((directory + "/" + item->d_name).c_str(), link, PATH_MAX);
    if (n > 0 && std::string(link, static_cast<size_t>(n)) == path) {
      found = true;
      break;
    }
  }
  closedir(stream);
  return found;
}

TEST_P(RingcpInterrupt, sigint_leaves_only_complete_files_and_a_rerun_finishes) {
  const std::string src = tmp_ / "src";
  const std::string dst = tmp_ / "dst";
  make_dir(src);
  // 3000 small files in 30 directories.
  for (int d = 0; d < 30; ++d) {
    const std::string directory = src + "/d" + std::to_string(d);
    make_dir(directory);
    for (int f = 0; f < 100; ++f) {
      const auto size = static_cast<size_t>((d * 100 + f) * 37 % 9000);
      write_bytes(directory + "/f" + std::to_string(f), test::random_bytes(size, uint64_t(d * 100 + f)));
    }
  }
  // A large file of distinct 1 MiB blocks, in flight when SIGINT arrives.
  // 256 MiB rather than 1 GiB: this VM's disk writes ~250 MB/s and the
  // suite must stay within its time budget; the test waits until ringcp has
  // the file open, so the size only needs to outlast the signal.
  const std::string big = src + "/big";
  {
    const int fd = open(big.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    auto block = test::random_bytes(1 << 20, 77);
    for (uint64_t i = 0; i < 256; ++i) {
      std::memcpy(block.data(), &i, sizeof i);
      ASSERT_EQ(pwrite(fd, block.data(), block.size(), static_cast<off_t>(i << 20)), ssize_t{1 << 20});
    }
    close(fd);
  }

  const std::string big_resolved = resolved(big);
  BackgroundProcess child(command({"-a", src, dst}));
  // Wait until the big file is being copied and the destination has entries.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  bool ready = false;
  while (std::chrono::steady_clock::now() < deadline && !child.exited()) {
    if (process_has_open(child.pid(), big_resolved) && entries_below(dst) > 0) {
      ready = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (!ready) {
    const RunResult early = child.wait();
    FAIL() << "ringcp finished (or never opened the big file) before SIGINT could be sent\n" << early.describe();
  }
  child.send(SIGINT);
  const RunResult interrupted = child.wait();
  EXPECT_EQ(interrupted.exit_code, 3) << interrupted.describe();

  const Scan source = scan_tree(src);
  const Scan partial = scan_tree(dst);
  EXPECT_TRUE(temporaries_in(partial).empty()) << "temporaries left:" << joined(temporaries_in(partial));
  const auto incomplete = incomplete_files(source, partial);
  EXPECT_TRUE(incomplete.empty()) << "files under their final name that differ from the source:"
                                  << joined(incomplete);
  size_t copied = 0;
  for (const auto& [path, entry] : partial) copied += entry.type == S_IFREG;
  RecordProperty("files_copied_before_sigint", static_cast<int>(copied));

  const RunResult rerun = ringcp({"-a", src + "/.", dst});
  EXPECT_EQ(rerun.exit_code, 0) << rerun.describe();
  const auto differences = compare_scans(source, scan_tree(dst));
  EXPECT_TRUE(differences.empty()) << "after the rerun: " << format_differences(differences);
}

// ------------------------------------------- files of unknown size --

// Pseudo files report a size of 0 (procfs) or a page without blocks
// (sysfs) and make their content on read: copied to their end, as cat and
// GNU cp read them, never an empty copy or a "shrank" error.
TEST_P(RingcpTree, files_of_unknown_size_are_read_to_their_end) {
  const std::vector<std::string> stable = {"/proc/version", "/sys/devices/system/cpu/online",
                                           "/sys/kernel/mm/transparent_hugepage/enabled"};
  int compared = 0;
  for (const std::string& source : stable) {
    if (access(source.c_str(), R_OK) != 0) continue;
    const std::string copy = tmp_ / ("copy" + std::to_string(compared));
    const std::string by_cp = tmp_ / ("cp" + std::to_string(compared));
    ++compared;
    const RunResult result = ringcp({source, copy});
    EXPECT_EQ(result.exit_code, 0) << source << ": " << result.describe();
    const std::string content = read_text(source);
    ASSERT_FALSE(content.empty()) << source;
    EXPECT_EQ(read_text(copy), content) << source;
    ASSERT_EQ(run_process({"cp", source, by_cp}).exit_code, 0) << source;
    EXPECT_EQ(read_text(copy), read_text(by_cp)) << source << ": ringcp and GNU cp differ";
  }
  EXPECT_GE(compared, 2);
  // Content that changes between reads: only that something is copied.
  const RunResult result = ringcp({"/proc/self/status", tmp_ / "status"});
  EXPECT_EQ(result.exit_code, 0) << result.describe();
  EXPECT_NE(read_text(tmp_ / "status").find("Name:"), std::string::npos);
}

// --------------------------------------------- temporary markers --

bool has_xattr(const std::string& path, const char* name) {
  return lgetxattr(path.c_str(), name, nullptr, 0) >= 0;
}

// Paths under `root` (itself included) that carry attribute `name`.
std::vector<std::string> carrying(const std::string& root, const char* name) {
  std::vector<std::string> found;
  if (has_xattr(root, name)) found.push_back(root);
  for (const auto& [path, entry] : scan_tree(root)) {
    if (entry.type != S_IFLNK && has_xattr(root + "/" + path, name)) found.push_back(path);
  }
  return found;
}

// A source that carries ringcp's markers (a copy of a tree a killed run
// left marked): -a copies every other attribute, never the markers.
TEST_P(RingcpUpdate, archive_never_copies_the_temporary_markers) {
  const std::string src = tmp_ / "src";
  const std::string dst = tmp_ / "dst";
  make_dir(src);
  write_text(src + "/file", "data\n");
  set_xattr(src + "/file", kTempMarkerXattr, "1");
  set_xattr(src + "/file", "user.kept", "yes");
  set_xattr(src, kReplacingXattr, "1");
  set_xattr(src, "user.kept", "yes");
  const RunResult result = ringcp({"-a", src, dst});
  ASSERT_EQ(result.exit_code, 0) << result.describe();
  EXPECT_TRUE(carrying(dst, kTempMarkerXattr).empty()) << joined(carrying(dst, kTempMarkerXattr));
  EXPECT_TRUE(carrying(dst, kReplacingXattr).empty()) << joined(carrying(dst, kReplacingXattr));
  EXPECT_TRUE(has_xattr(dst + "/file", "user.kept"));
  EXPECT_TRUE(has_xattr(dst, "user.kept"));
}

// What a run killed between renaming a marked replacement over its final
// name and removing the marker leaves (the window SIGKILL can hit): the
// marker on final names, and the directory's replacement marker. The next
// run removes them, also when it skips the unchanged files.
TEST_P(RingcpUpdate, rerun_after_a_kill_removes_markers_from_final_names) {
  const std::string src = tmp_ / "src";
  const std::string dst = tmp_ / "dst";
  build_small_tree(src);
  write_text(tmp_ / "single", "single\n");
  ASSERT_EQ(ringcp({"-a", src + "/.", dst}).exit_code, 0);
  ASSERT_EQ(ringcp({"-a", tmp_ / "single", tmp_ / "single-copy"}).exit_code, 0);
  std::vector<std::string> marked;
  for (const auto& [path, entry] : scan_tree(dst)) {
    if (entry.type == S_IFREG && marked.size() < 3) marked.push_back(dst + "/" + path);
  }
  ASSERT_FALSE(marked.empty());
  for (const std::string& path : marked) {
    set_xattr(path, kTempMarkerXattr, "1");
    set_xattr(path.substr(0, path.rfind('/')), kReplacingXattr, "1");
  }
  set_xattr(tmp_ / "single-copy", kTempMarkerXattr, "1");
  set_xattr(tmp_.path(), kReplacingXattr, "1");

  RunResult result = ringcp({"-a", "--skip-unchanged", src + "/.", dst});
  ASSERT_EQ(result.exit_code, 0) << result.describe();
  EXPECT_TRUE(carrying(dst, kTempMarkerXattr).empty()) << joined(carrying(dst, kTempMarkerXattr));
  EXPECT_TRUE(carrying(dst, kReplacingXattr).empty()) << joined(carrying(dst, kReplacingXattr));
  // A single file replaced in place: its directory is the destination's parent.
  result = ringcp({"-a", "--skip-unchanged", tmp_ / "single", tmp_ / "single-copy"});
  ASSERT_EQ(result.exit_code, 0) << result.describe();
  EXPECT_FALSE(has_xattr(tmp_ / "single-copy", kTempMarkerXattr));
  EXPECT_FALSE(has_xattr(tmp_.path(), kReplacingXattr));
  const auto differences = compare_trees(src, dst);
  EXPECT_TRUE(differences.empty()) << format_differences(differences);
}

// The real window: ringcp (posix engine, whose renames are system calls)
// is killed by SIGKILL right after renaming a marked replacement over its
// final name. The file keeps its marker, and its directory says so; the
// next run, skipping the unchanged file, removes both.
TEST_F(RingcpCli, sigkill_right_after_a_replacing_rename_is_cleaned_by_the_next_run) {
  const std::string src = tmp_ / "src";
  const std::string dst = tmp_ / "dst";
  make_dir(src);
  write_text(src + "/file", "new content\n");
  make_dir(dst);
  write_text(dst + "/file", "old\n");
  RunOptions options;
  const char* asan = std::getenv("ASAN_OPTIONS");
  // LeakSanitizer cannot stop the world in a traced process.
  options.env = {std::string("ASAN_OPTIONS=") + (asan != nullptr ? std::string(asan) + ":" : "") + "detect_leaks=0"};
  bool killed = false;
  auto on_syscall = [&](const SyscallStop& stop) {
    const bool renamed = !stop.entry && (stop.nr == SYS_renameat || stop.nr == SYS_renameat2) && stop.rval == 0;
    if (!renamed || killed) return;
    killed = kill(stop.pid, SIGKILL) == 0;
  };
  std::string trace_error;
  const RunResult result =
      run_traced({kRingcp, "--engine=posix", "-a", src + "/.", dst}, options, on_syscall, &trace_error);
  // Killed while stopped, the child cannot be resumed: the tracer says so.
  if (!killed && !trace_error.empty()) GTEST_SKIP() << "cannot trace ringcp here: " << trace_error;
  ASSERT_TRUE(killed) << "no rename seen: " << result.describe();
  EXPECT_EQ(result.signal, SIGKILL) << result.describe();
  EXPECT_EQ(read_text(dst + "/file"), "new content\n");
  EXPECT_TRUE(has_xattr(dst + "/file", kTempMarkerXattr)) << "the kill missed the window";
  EXPECT_TRUE(has_xattr(dst, kReplacingXattr)) << "a marked file reached a final name unannounced";

  const RunResult rerun = ringcp({"-a", "--skip-unchanged", "--stats=json", src + "/.", dst});
  ASSERT_EQ(rerun.exit_code, 0) << rerun.describe();
  EXPECT_EQ(number(parse_stats(rerun), "/skipped"), 1u) << rerun.out;
  EXPECT_FALSE(has_xattr(dst + "/file", kTempMarkerXattr));
  EXPECT_FALSE(has_xattr(dst, kReplacingXattr));
}

// ------------------------------------------- extended attributes --

// Runs `script` in a private mount namespace with a fresh filesystem of
// `type` mounted on `mount_point`; exit 99 when that mount is impossible.
RunResult in_private_mount(const std::string& type, const std::string& mount_point, const std::string& script) {
  return run_process({"unshare", "-m", "sh", "-c",
                      "mount -t " + type + " none '" + mount_point + "' || exit 99; " + script});
}

// ramfs has no user.* attributes (EOPNOTSUPP) but O_TMPFILE: each refused
// attribute is one error line naming it and the file; the files and their
// data are copied, the exit status says not everything was.
TEST_P(RingcpErrors, attributes_the_destination_refuses_are_reported) {
  if (geteuid() != 0 || !exists("/usr/bin/unshare")) GTEST_SKIP() << "needs root and unshare";
  const std::string src = tmp_ / "src";
  const std::string mnt = tmp_ / "mnt";
  make_dir(src);
  make_dir(src + "/sub");
  make_dir(mnt);
  write_text(src + "/sub/file", "content\n");
  set_xattr(src + "/sub/file", "user.note", "file note");
  set_xattr(src + "/sub", "user.dirnote", "dir note");
  const RunResult result = in_private_mount(
      "ramfs", mnt,
      "'" + kRingcp + "' " + engine_flag() + " -a '" + src + "' '" + mnt + "/dst'; rc=$?; " +
          "cat '" + mnt + "/dst/sub/file' || exit 98; ls -a '" + mnt + "/dst/sub'; exit $rc");
  if (result.exit_code == 99) GTEST_SKIP() << "cannot mount ramfs: " << result.describe();
  EXPECT_EQ(result.exit_code, 2) << result.describe();
  EXPECT_TRUE(has_line(result.err, "ringcp: failed to preserve extended attribute 'user.note' for '" + mnt +
                                       "/dst/sub/file': Operation not supported"))
      << result.describe();
  EXPECT_TRUE(has_line(result.err, "ringcp: failed to preserve extended attribute 'user.dirnote' for '" + mnt +
                                       "/dst/sub': Operation not supported"))
      << result.describe();
  EXPECT_EQ(lines_of(result.err).size(), 2u) << result.describe();
  EXPECT_NE(result.out.find("content\n"), std::string::npos) << result.describe();
  EXPECT_EQ(result.out.find(".ringcp-"), std::string::npos) << "a temporary was left: " << result.describe();
}

// A value larger than the destination can hold (8 KiB; ext4 without
// ea_inode keeps attributes within one block): ENOSPC or E2BIG, reported.
TEST_P(RingcpErrors, an_attribute_value_too_large_for_the_destination_is_reported) {
  // tmpfs holds large user.* values (Linux 6.6+); the disk filesystem of
  // the scratch directory may not.
  test::TempDir source_dir("/dev/shm");
  const std::string src = source_dir / "file";
  const std::string dst = tmp_ / "copy";
  write_text(src, "content\n");
  const std::string value(8192, 'v');
  if (setxattr(src.c_str(), "user.big", value.data(), value.size(), 0) != 0)
    GTEST_SKIP() << "/dev/shm refuses an 8 KiB attribute: " << std::strerror(errno);
  write_text(tmp_ / "probe", "");
  if (setxattr((tmp_ / "probe").c_str(), "user.big", value.data(), value.size(), 0) == 0)
    GTEST_SKIP() << "the scratch filesystem holds 8 KiB attributes (ea_inode)";
  const std::string refusal = std::strerror(errno);
  const RunResult result = ringcp({"-a", src, dst});
  EXPECT_EQ(result.exit_code, 2) << result.describe();
  EXPECT_TRUE(has_line(result.err, "ringcp: failed to preserve extended attribute 'user.big' for '" + dst + "': " +
                                       refusal))
      << result.describe();
  EXPECT_EQ(read_text(dst), "content\n");
}

// ------------------------------------------------------ 7. bad input --

TEST_P(RingcpErrors, missing_source_is_reported_and_the_others_copied) {
  build_small_tree(tmp_ / "src");
  write_text(tmp_ / "file", "file\n");
  make_dir(tmp_ / "out");
  const RunResult result = ringcp({"-a", "x", "src", "file", "out"}, in_scratch());
  EXPECT_EQ(result.exit_code, 2) << result.describe();
  EXPECT_TRUE(has_line(result.err, "ringcp: cannot stat 'x': No such file or directory")) << result.describe();
  EXPECT_EQ(lines_of(result.err).size(), 1u) << result.describe();
  auto differences = compare_trees(tmp_ / "src", tmp_ / "out/src");
  EXPECT_TRUE(differences.empty()) << format_differences(differences);
  differences = compare_trees(tmp_ / "file", tmp_ / "out/file");
  EXPECT_TRUE(differences.empty()) << format_differences(differences);
  EXPECT_FALSE(exists(tmp_ / "out/x"));
}

// Runs ringcp as nobody (uid/gid 65534) on a tree in a scratch directory
// that nobody can reach; skips when that is impossible here.
class Unprivileged {
 public:
  // Returns an empty string when ready, else why it cannot be done.
  static std::string prepare(const Scratch& tmp) {
    if (geteuid() != 0) return "needs root to switch to an unprivileged user";
    if (access("/usr/bin/setpriv", X_OK) != 0 && access("/bin/setpriv", X_OK) != 0) return "setpriv not installed";
    if (chmod(tmp.path().c_str(), 0755) != 0) return "cannot open the scratch directory to others";
    // The binary may sit in a directory nobody cannot enter: use a copy.
    const RunResult copied = run_process({"cp", kRingcp, tmp / "ringcp-bin"});
    if (copied.exit_code != 0 || chmod((tmp / "ringcp-bin").c_str(), 0755) != 0) return "cannot copy ringcp";
    RunOptions options;
    options.cwd = tmp.path();
    const RunResult probe = run_process(command(tmp, /*engine_flag=*/"--version", {}), options);
    if (probe.exit_code != 0) return "uid 65534 cannot run ringcp in the scratch directory: " + probe.describe();
    return "";
  }
  static std::vector<std::string> command(const Scratch& tmp, const std::string& engine_flag,
                                          std::vector<std::string> args) {
    std::vector<std::string> argv = {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                     tmp / "ringcp-bin", engine_flag};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }
};

TEST_P(RingcpErrors, unreadable_file_among_readable_ones) {
  const std::string why = Unprivileged::prepare(tmp_);
  if (!why.empty()) GTEST_SKIP() << why;
  build_small_tree(tmp_ / "src");
  write_text(tmp_ / "src/secret", "secret\n");
  ASSERT_EQ(chmod((tmp_ / "src/secret").c_str(), 0), 0);
  make_dir(tmp_ / "out");
  ASSERT_EQ(chown((tmp_ / "out").c_str(), 65534, 65534), 0);

  const RunResult result =
      run_process(Unprivileged::command(tmp_, engine_flag(), {"-a", "src", "out/dst"}), in_scratch());
  EXPECT_EQ(result.exit_code, 2) << result.describe();
  EXPECT_TRUE(has_line(result.err, "ringcp: cannot open 'src/secret': Permission denied")) << result.describe();
  EXPECT_EQ(lines_of(result.err).size(), 1u) << "one line per problem\n" << result.describe();
  EXPECT_FALSE(exists(tmp_ / "out/dst/secret"));
  for (const std::string path : {"a", "b", "sub/c", "sub/inner/d", "sub/link", "sub/a-hardlink"}) {
    const auto differences = compare_trees(tmp_ / ("src/" + path), tmp_ / ("out/dst/" + path),
                                           CompareOptions{.owner = false, .mtime = true, .root_metadata = true,
                                                          .contents = true, .hole_map = true,
                                                          .link_groups = false, .xattrs = true});
    EXPECT_TRUE(differences.empty()) << path << ": " << format_differences(differences);
  }
  const Scan copy = scan_tree(tmp_ / "out/dst", {false, false});
  EXPECT_TRUE(temporaries_in(copy).empty()) << joined(temporaries_in(copy));
}

TEST_P(RingcpErrors, delete_does_nothing_after_a_read_error) {
  const std::string why = Unprivileged::prepare(tmp_);
  if (!why.empty()) GTEST_SKIP() << why;
  build_small_tree(tmp_ / "src");
  make_dir(tmp_ / "out");
  ASSERT_EQ(chown((tmp_ / "out").c_str(), 65534, 65534), 0);
  RunResult result = run_process(Unprivileged::command(tmp_, engine_flag(), {"-a", "src", "out/dst"}), in_scratch());
  ASSERT_EQ(result.exit_code, 0) << result.describe();
  write_text(tmp_ / "src/sub/secret", "secret\n");
  ASSERT_EQ(chmod((tmp_ / "src/sub/secret").c_str(), 0), 0);
  for (const std::string extra : {"out/dst/extra-top", "out/dst/sub/extra-sub"}) {
    write_text(tmp_ / extra, "extra\n");
    ASSERT_EQ(chown((tmp_ / extra).c_str(), 65534, 65534), 0);
  }
  result = run_process(Unprivileged::command(tmp_, engine_flag(), {"-a", "--delete", "src/.", "out/dst"}),
                       in_scratch());
  EXPECT_EQ(result.exit_code, 2) << result.describe();
  EXPECT_TRUE(exists(tmp_ / "out/dst/sub/extra-sub")) << "--delete ran in a directory with a read error";
  EXPECT_TRUE(exists(tmp_ / "out/dst/extra-top")) << "--delete ran above a directory with a read error";

  // Control: once the source reads cleanly, the same --delete removes them
  // (so the survival above was the read error's doing).
  ASSERT_EQ(unlink((tmp_ / "src/sub/secret").c_str()), 0);
  result = run_process(Unprivileged::command(tmp_, engine_flag(), {"-a", "--delete", "src/.", "out/dst"}),
                       in_scratch());
  EXPECT_EQ(result.exit_code, 0) << result.describe();
  EXPECT_FALSE(exists(tmp_ / "out/dst/sub/extra-sub")) << "control: --delete did not delete";
  EXPECT_FALSE(exists(tmp_ / "out/dst/extra-top")) << "control: --delete did not delete";
}

TEST_F(RingcpCli, destination_inside_the_source_is_a_usage_error) {
  build_small_tree(tmp_ / "src");
  const Scan before = scan_tree(tmp_ / "src");
  for (const std::string destination : {"src/sub", "src/sub/new", "src/."}) {
    SCOPED_TRACE(destination);
    const RunResult result = ringcp({"-a", "src", destination}, in_scratch());
    EXPECT_EQ(result.exit_code, 1) << result.describe();
    EXPECT_NE(result.err.find("into itself"), std::string::npos) << result.describe();
  }
  const auto differences = compare_scans(before, scan_tree(tmp_ / "src"), unchanged_options());
  EXPECT_TRUE(differences.empty()) << "the source changed: " << format_differences(differences);
}

TEST_F(RingcpCli, several_sources_need_a_directory_destination) {
  write_text(tmp_ / "one", "1\n");
  write_text(tmp_ / "two", "2\n");
  write_text(tmp_ / "target", "target\n");
  RunResult result = ringcp({"-a", "one", "two", "target"}, in_scratch());
  EXPECT_EQ(result.exit_code, 1) << result.describe();
  EXPECT_NE(result.err.find("not a directory"), std::string::npos) << result.describe();
  EXPECT_EQ(read_text(tmp_ / "target"), "target\n");

  result = ringcp({"-a", "one", "two", "missing"}, in_scratch());
  EXPECT_EQ(result.exit_code, 1) << result.describe();
  EXPECT_FALSE(exists(tmp_ / "missing"));
}

struct BadOption {
  std::string argument;
  std::string value;
};
void PrintTo(const BadOption& bad, std::ostream* out) { *out << bad.argument; }

std::string bad_option_name(const ::testing::TestParamInfo<BadOption>& param_info) {
  std::string name;
  for (char c : param_info.param.argument) name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return name;
}

class RingcpBadOption : public ::testing::TestWithParam<BadOption> {
 protected:
  Scratch tmp_;
};

TEST_P(RingcpBadOption, exits_1_naming_the_value) {
  write_text(tmp_ / "file", "x\n");
  const BadOption& bad = GetParam();
  const RunResult result = run_process({kRingcp, bad.argument, tmp_ / "file", tmp_ / "copy"});
  EXPECT_EQ(result.exit_code, 1) << result.describe();
  // The value appears as a token of its own ('0', "x", maybe), not as part
  // of another number or word.
  const std::regex named("(^|[^A-Za-z0-9])" + bad.value + "([^A-Za-z0-9]|$)");
  std::string message;
  for (const std::string& line : lines_of(result.err)) {
    if (line.find("--help") == std::string::npos) message += line + "\n";
  }
  EXPECT_TRUE(std::regex_search(message, named))
      << "the message does not name the value '" << bad.value << "'\n" << result.describe();
  EXPECT_FALSE(exists(tmp_ / "copy"));
}

INSTANTIATE_TEST_SUITE_P(Values, RingcpBadOption,
                         ::testing::Values(BadOption{"--buffers=0", "0"}, BadOption{"--buffers=x", "x"},
                                           BadOption{"--buffer-size=3000", "3000"},
                                           BadOption{"--sparse=maybe", "maybe"}, BadOption{"--engine=foo", "foo"},
                                           BadOption{"--stats=xml", "xml"}, BadOption{"--queue-depth=0", "0"}),
                         bad_option_name);

TEST_P(RingcpErrors, directory_without_r_is_omitted) {
  build_small_tree(tmp_ / "src");
  write_text(tmp_ / "file", "file\n");
  RunResult result = ringcp({"src", "new"}, in_scratch());
  EXPECT_EQ(result.exit_code, 2) << result.describe();
  EXPECT_TRUE(has_line(result.err, "ringcp: -r not specified; omitting directory 'src'")) << result.describe();
  EXPECT_FALSE(exists(tmp_ / "new"));

  make_dir(tmp_ / "out");
  result = ringcp({"src", "file", "out"}, in_scratch());
  EXPECT_EQ(result.exit_code, 2) << result.describe();
  EXPECT_NE(result.err.find("omitting directory 'src'"), std::string::npos) << result.describe();
  EXPECT_EQ(read_text(tmp_ / "out/file"), "file\n");
  EXPECT_FALSE(exists(tmp_ / "out/src"));
}

// --------------------------------------------------------- 8. messages --

TEST_P(RingcpErrors, newline_in_a_name_stays_on_one_line) {
  make_dir(tmp_ / "out");
  const RunResult result = ringcp({"a\nb", "out"}, in_scratch());
  EXPECT_EQ(result.exit_code, 2) << result.describe();
  EXPECT_EQ(result.err, "ringcp: cannot stat 'a'$'\\n''b': No such file or directory\n") << result.describe();
}

TEST_P(RingcpErrors, newline_in_a_nested_name_stays_on_one_line) {
  const std::string why = Unprivileged::prepare(tmp_);
  if (!why.empty()) GTEST_SKIP() << why;
  build_small_tree(tmp_ / "src");
  write_text(tmp_ / "src/x\ny", "unreadable\n");
  ASSERT_EQ(chmod((tmp_ / "src/x\ny").c_str(), 0), 0);
  make_dir(tmp_ / "out");
  ASSERT_EQ(chown((tmp_ / "out").c_str(), 65534, 65534), 0);
  const RunResult result =
      run_process(Unprivileged::command(tmp_, engine_flag(), {"-a", "src", "out/dst"}), in_scratch());
  EXPECT_EQ(result.exit_code, 2) << result.describe();
  EXPECT_EQ(result.err, "ringcp: cannot open 'src/x'$'\\n''y': Permission denied\n") << result.describe();
}

// ------------------------------------------ 9. JSON and non-UTF-8 names --

TEST_P(RingcpErrors, stats_json_stays_valid_with_a_non_utf8_name_in_an_error) {
  write_text(tmp_ / "good", "good\n");
  make_dir(tmp_ / "out");
  RunResult result = ringcp({"-a", "--stats=json", "\xff\xfe-missing", "good", "out"}, in_scratch());
  EXPECT_EQ(result.exit_code, 2) << result.describe();
  EXPECT_EQ(result.signal, 0) << result.describe();
  json stats = parse_stats(result);
  EXPECT_EQ(number(stats, "/errors"), 1u) << result.describe();
  EXPECT_EQ(number(stats, "/files"), 1u) << result.describe();
  EXPECT_EQ(lines_of(result.err).size(), 1u) << result.describe();
  EXPECT_EQ(read_text(tmp_ / "out/good"), "good\n");

  // And a non-UTF-8 name deeper in the tree (unreadable as nobody).
  const std::string why = Unprivileged::prepare(tmp_);
  if (!why.empty()) GTEST_SKIP() << "nested part: " << why;
  make_dir(tmp_ / "src");
  write_text(tmp_ / "src/ok", "ok\n");
  write_text(tmp_ / "src/\xff\xfe", "unreadable\n");
  ASSERT_EQ(chmod((tmp_ / "src/\xff\xfe").c_str(), 0), 0);
  ASSERT_EQ(chown((tmp_ / "out").c_str(), 65534, 65534), 0);
  result = run_process(Unprivileged::command(tmp_, engine_flag(), {"-a", "--stats=json", "src", "out/dst"}),
                       in_scratch());
  EXPECT_EQ(result.exit_code, 2) << result.describe();
  stats = parse_stats(result);
  EXPECT_EQ(number(stats, "/errors"), 1u) << result.describe();
  EXPECT_EQ(lines_of(result.err).size(), 1u) << result.describe();
  EXPECT_EQ(read_text(tmp_ / "out/dst/ok"), "ok\n");
}

}  // namespace
}  // namespace ringio::itest
