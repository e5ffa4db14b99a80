// The comparator must be trusted before its silence means anything: a
// reference copy (GNU cp -a) of the full tree compares clean, and every kind
// of difference the ringcp tests rely on is reported, on the right path.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>

#include "integration/process.hpp"
#include "integration/tree_compare.hpp"
#include "integration/tree_fixture.hpp"

namespace ringio::itest {
namespace {

bool reported(const std::vector<std::string>& differences, const std::string& path, const std::string& what) {
  for (const std::string& line : differences) {
    if (line.find(path) != std::string::npos && line.find(what) != std::string::npos) return true;
  }
  return false;
}

TEST(TreeCompare, reference_copy_is_clean_and_every_mutation_is_reported) {
  Scratch tmp;
  const std::string src = tmp / "src";
  const std::string copy = tmp / "copy";
  const FullTree tree = build_full_tree(src);
  // GNU cp works by path and stops at PATH_MAX: it copies all but the end
  // of the deep chain, which must then show up as missing -- proof that the
  // comparator walks past PATH_MAX. Everything else must compare clean.
  const RunResult cp = run_process({"cp", "-a", src, copy});
  if (!exists(copy + "/sizes/s1")) GTEST_SKIP() << "GNU cp -a cannot copy the fixture here: " << cp.describe();
  const Scan source = scan_tree(src);
  auto differences = compare_scans(source, scan_tree(copy));
  std::vector<std::string> outside_deep;
  bool deep_missing = false;
  for (const std::string& line : differences) {
    if (line.rfind("'deep/", 0) != 0) outside_deep.push_back(line);
    if (line.find("bottom.txt': missing in the copy") != std::string::npos) deep_missing = true;
  }
  EXPECT_TRUE(outside_deep.empty()) << "cp -a copy: " << format_differences(outside_deep);
  EXPECT_TRUE(deep_missing) << "the entries beyond PATH_MAX were not scanned\n" << format_differences(differences);

  // Content, same size and mtime.
  {
    const std::string path = copy + "/sizes/s4097";
    const int fd = open(path.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    char byte = 0;
    ASSERT_EQ(pread(fd, &byte, 1, 4000), 1);
    byte = static_cast<char>(byte ^ 1);
    ASSERT_EQ(pwrite(fd, &byte, 1, 4000), 1);
    close(fd);
    struct stat st {};
    ASSERT_EQ(stat((src + "/sizes/s4097").c_str(), &st), 0);
    set_mtime(path, st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
  }
  // Mode bits, mtime nanoseconds, symlink target, xattrs, type.
  ASSERT_EQ(chmod((copy + "/modes/setuid").c_str(), 0755), 0);
  set_mtime(copy + "/times/nano", 1234567890, 123456788);
  ASSERT_EQ(unlink((copy + "/links/dangling").c_str()), 0);
  ASSERT_EQ(symlink("no/such/other", (copy + "/links/dangling").c_str()), 0);
  set_xattr(copy + "/xattr/file", "user.comment", "changed");
  ASSERT_EQ(removexattr((copy + "/xattr/dir").c_str(), "user.dirattr"), 0);
  ASSERT_EQ(unlink((copy + "/special/fifo").c_str()), 0);
  write_text(copy + "/special/fifo", "not a fifo\n");
  // A broken hard-link group.
  ASSERT_EQ(unlink((copy + "/hard/b/h3").c_str()), 0);
  write_bytes(copy + "/hard/b/h3", std::vector<uint8_t>());
  // Zeros written into a hole: same content, different hole map.
  {
    const int fd = open((copy + "/" + tree.sparse_file).c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    const std::vector<char> zeros(65536, 0);
    ASSERT_EQ(pwrite(fd, zeros.data(), zeros.size(), off_t{2} << 30), 65536);
    close(fd);
  }
  // Missing and extra entries.
  ASSERT_EQ(unlink((copy + "/names/-rf").c_str()), 0);
  write_text(copy + "/names/extra", "extra\n");
  const bool root = geteuid() == 0;
  if (root) {
    ASSERT_EQ(chown((copy + "/modes/private").c_str(), 1, 1), 0);
  }

  differences = compare_scans(source, scan_tree(copy));
  const std::string all = format_differences(differences, 100);
  EXPECT_TRUE(reported(differences, "sizes/s4097", "content differs")) << all;
  EXPECT_TRUE(reported(differences, "modes/setuid", "mode differs: source 04755")) << all;
  EXPECT_TRUE(reported(differences, "times/nano", "mtime differs")) << all;
  EXPECT_TRUE(reported(differences, "links/dangling", "symlink target differs")) << all;
  EXPECT_TRUE(reported(differences, "xattr/file", "xattr user.comment differs")) << all;
  EXPECT_TRUE(reported(differences, "xattr/dir", "xattr user.dirattr missing")) << all;
  EXPECT_TRUE(reported(differences, "special/fifo", "type differs")) << all;
  EXPECT_TRUE(reported(differences, "hard/b/h3", "hard-link group")) << all;
  EXPECT_TRUE(reported(differences, "sparse/big-sparse", "data/hole map differs")) << all;
  EXPECT_FALSE(reported(differences, "sparse/big-sparse", "content differs"))
      << "zeros in a hole are the same content\n" << all;
  EXPECT_TRUE(reported(differences, "names/-rf", "missing in the copy")) << all;
  EXPECT_TRUE(reported(differences, "names/extra", "extra in the copy")) << all;
  if (root) {
    EXPECT_TRUE(reported(differences, "modes/private", "owner differs")) << all;
  }
}

}  // namespace
}  // namespace ringio::itest
