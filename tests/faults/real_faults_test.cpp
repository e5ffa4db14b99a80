// Real faults on the ringcp binary: a full filesystem, SIGKILL and SIGTERM
// mid-copy, io_uring forbidden by seccomp, RLIMIT_MEMLOCK without
// CAP_IPC_LOCK, a source that changes while it is copied, permission
// denied, and bad command lines. Each test checks the tree afterwards.
//
// Exit status (DESIGN.md 6): 0 all copied, 1 usage error, 2 some entries
// not copied, 3 interrupted or fatal.
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#ifdef RINGIO_HAVE_SECCOMP
#include <seccomp.h>
#endif

#include <nlohmann/json.hpp>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <thread>

#include "faults/fault_tree.hpp"
#include "copy/publisher.hpp"
#include "ringio/copy.hpp"
#include "support/test_util.hpp"

namespace ringio::test {
namespace {

using copy::kReplacingXattr;
using copy::kTempMarkerXattr;

using Clock = std::chrono::steady_clock;
constexpr uid_t kNobody = 65534;

const std::string kRingcp = RINGCP_PATH;

struct Outcome {
  int exit_code = -1;   // -1: killed by a signal
  int signal = 0;
  std::string out;      // stdout
  std::string err;      // stderr
  double seconds = 0;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

int exit_of(int status, int* signal_out = nullptr) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (signal_out != nullptr && WIFSIGNALED(status)) *signal_out = WTERMSIG(status);
  return -1;
}

// A child with stdout and stderr in files under `scratch`; `in_child` runs
// between fork and exec (seccomp filters, ...).
class Child {
 public:
  Child(const std::vector<std::string>& argv, const std::string& scratch,
        const std::function<void()>& in_child = {}) {
    static int counter = 0;
    const std::string stem = scratch + "/child-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
    out_path_ = stem + ".out";
    err_path_ = stem + ".err";
    started_ = Clock::now();
    pid_ = fork();
    if (pid_ == 0) {
      const int out = open(out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      const int err = open(err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(out, 1);
      dup2(err, 2);
      const int null = open("/dev/null", O_RDONLY);
      dup2(null, 0);
      if (in_child) in_child();
      test::exec_argv(argv);
    }
  }
  ~Child() {
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGKILL);
      wait();
    }
    unlink(out_path_.c_str());
    unlink(err_path_.c_str());
  }
  pid_t pid() const { return pid_; }
  // Waits until the child catches `signal` (its handler is installed: the
  // SigCgt mask in /proc/PID/status), so that a signal sent next meets
  // ringcp's handler, not the default action of a process still starting.
  // False if the child ended first or 30 s passed.
  bool wait_until_catching(int signal) {
    const auto deadline = Clock::now() + std::chrono::seconds(30);
    while (running() && Clock::now() < deadline) {
      std::ifstream status("/proc/" + std::to_string(pid_) + "/status");
      std::string line;
      while (std::getline(status, line)) {
        if (line.rfind("SigCgt:", 0) != 0) continue;
        const unsigned long long caught = std::strtoull(line.c_str() + 7, nullptr, 16);
        if (caught & (1ull << (signal - 1))) return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return false;
  }
  // True while the child runs (not yet exited).
  bool running() {
    if (reaped_) return false;
    int status = 0;
    const pid_t done = waitpid(pid_, &status, WNOHANG);
    if (done == pid_) {
      reaped_ = true;
      status_ = status;
      ended_ = Clock::now();
      return false;
    }
    return true;
  }
  Outcome wait() {
    if (!reaped_) {
      int status = 0;
      waitpid(pid_, &status, 0);
      reaped_ = true;
      status_ = status;
      ended_ = Clock::now();
    }
    Outcome outcome;
    outcome.exit_code = exit_of(status_, &outcome.signal);
    outcome.out = slurp(out_path_);
    outcome.err = slurp(err_path_);
    outcome.seconds = std::chrono::duration<double>(ended_ - started_).count();
    return outcome;
  }

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
  int status_ = 0;
  std::string out_path_, err_path_;
  Clock::time_point started_, ended_;
};

Outcome run(const std::vector<std::string>& argv, const std::string& scratch,
            const std::function<void()>& in_child = {}) {
  Child child(argv, scratch, in_child);
  return child.wait();
}

std::string describe(const Outcome& o) {
  std::string text = "exit " + std::to_string(o.exit_code);
  if (o.signal != 0) text += " (signal " + std::to_string(o.signal) + ")";
  return text + "\n--- stdout\n" + o.out.substr(0, 4000) + "\n--- stderr\n" + o.err.substr(0, 4000);
}

bool tool_present(const std::string& name) {
  return run_command({"sh", "-c", "command -v " + name + " >/dev/null"}).exit_code == 0;
}

// The copy as it must be after any run, complete or not: every regular
// file under a final name byte-identical to its source, every symlink
// pointing where its source does, no temporaries anywhere. With `complete`,
// also: every source entry is there.
std::vector<std::string> verify_copy(const std::string& src, const std::string& dst, bool complete) {
  std::vector<std::string> problems;
  const TreeSnapshot source = snapshot_tree(src);
  const TreeSnapshot copy = snapshot_tree(dst);
  for (const std::string& temp : find_temporaries(dst)) problems.push_back("temporary left behind: " + temp);
  for (const auto& [path, entry] : copy) {
    if (path.empty()) continue;
    if (path.rfind(".ringcp-", 0) == 0 || path.find("/.ringcp-") != std::string::npos) continue;
    auto it = source.find(path);
    if (it == source.end()) {
      problems.push_back("'" + path + "' has no source");
      continue;
    }
    if ((entry.mode & S_IFMT) != (it->second.mode & S_IFMT)) {
      problems.push_back("'" + path + "' has another type");
    } else if (S_ISREG(entry.mode) && (entry.content_hash != it->second.content_hash || entry.size != it->second.size)) {
      problems.push_back("'" + path + "' under its final name differs from its source (" + std::to_string(entry.size) +
                         " of " + std::to_string(it->second.size) + " bytes)");
    } else if (S_ISLNK(entry.mode) && entry.link_target != it->second.link_target) {
      problems.push_back("symlink '" + path + "' points elsewhere");
    }
  }
  if (complete) {
    for (const auto& [path, entry] : source) {
      if (copy.count(path) == 0) problems.push_back("'" + path + "' missing from the copy");
    }
  }
  return problems;
}

std::string join_lines(const std::vector<std::string>& lines, size_t max = 20) {
  std::string text;
  for (size_t i = 0; i < lines.size() && i < max; ++i) text += "  " + lines[i] + "\n";
  if (lines.size() > max) text += "  ... " + std::to_string(lines.size() - max) + " more\n";
  return text;
}

// A run that must succeed: exit 0, a complete and identical copy. Returns
// its --stats=json (null, with a failure, when stdout is not JSON).
nlohmann::json expect_complete_copy(const Outcome& o, const std::string& src, const std::string& dst) {
  EXPECT_EQ(o.exit_code, 0) << describe(o);
  const auto problems = verify_copy(src, dst, true);
  EXPECT_TRUE(problems.empty()) << join_lines(problems);
  try {
    return nlohmann::json::parse(o.out);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "--stats=json printed no JSON (" << e.what() << "): " << o.out;
    return nullptr;
  }
}

size_t count_lines(const std::string& text) { return size_t(std::count(text.begin(), text.end(), '\n')); }

void write_bytes(const std::string& path, size_t size, uint64_t seed, mode_t mode = 0644) {
  write_file(path, random_bytes(size, seed));
  chmod(path.c_str(), mode);
}

// A tree of many small files and a few large ones.
void make_mixed_tree(const std::string& root, uint32_t small_files, uint32_t large_files, size_t large_bytes,
                     uint64_t seed) {
  mkdir(root.c_str(), 0755);
  std::mt19937_64 random(seed);
  for (uint32_t d = 0; d < 20; ++d) mkdir((root + "/d" + std::to_string(d)).c_str(), 0755);
  for (uint32_t i = 0; i < small_files; ++i)
    write_bytes(root + "/d" + std::to_string(random() % 20) + "/f" + std::to_string(i), random() % 20000, random());
  for (uint32_t i = 0; i < large_files; ++i)
    write_bytes(root + "/d" + std::to_string(i % 20) + "/large" + std::to_string(i), large_bytes - (random() % 4096), random());
  // Known names for tests that need one.
  write_bytes(root + "/d1/known1", 1000, seed + 1);
  write_bytes(root + "/d2/known2", 2000, seed + 2);
}

// A scratch directory that the unprivileged user can enter.
class SharedScratch : public TempDir {
 public:
  SharedScratch() { chmod(path().c_str(), 0755); }
};

// ------------------------------------------------------------- ENOSPC --

TEST(RealFaultsEnospc, full_tmpfs_destination_reports_and_leaves_no_partial_files) {
  if (!tool_present("unshare") || geteuid() != 0) GTEST_SKIP() << "needs root and unshare (util-linux)";
  SharedScratch dir;
  const std::string src = dir / "src", mnt = dir / "mnt", out = dir / "out";
  make_mixed_tree(src, 300, 24, 200 * 1024, 11);  // about 5.5 MiB into 2 MiB
  mkdir(mnt.c_str(), 0755);
  // The mount lives only in the private namespace: the result is copied out
  // (cp -a keeps any temporary under its name) before the namespace ends.
  const std::string script = "mount -t tmpfs -o size=2m none '" + mnt + "' || exit 99; '" + kRingcp +
                             "' -a '" + src + "/.' '" + mnt + "/dst'; rc=$?; cp -a '" + mnt + "/dst' '" + out +
                             "' || exit 98; exit $rc";
  const Outcome o = run({"unshare", "-m", "sh", "-c", script}, dir.path());
  if (o.exit_code == 99) GTEST_SKIP() << "cannot mount tmpfs in a private namespace: " << o.err;
  ASSERT_NE(o.exit_code, 98) << describe(o);
  EXPECT_EQ(o.exit_code, 2) << describe(o);
  EXPECT_NE(o.err.find("No space left on device"), std::string::npos) << describe(o);
  for (const std::string& line : [&] {
         std::vector<std::string> lines;
         std::istringstream in(o.err);
         for (std::string l; std::getline(in, l);) lines.push_back(l);
         return lines;
       }())
    EXPECT_EQ(line.rfind("ringcp: ", 0), 0u) << "not one line per problem: " << line;
  const auto problems = verify_copy(src, out, false);
  EXPECT_TRUE(problems.empty()) << join_lines(problems);
  // The filesystem really filled up: not everything is there.
  EXPECT_LT(regular_files(snapshot_tree(out)).size(), regular_files(snapshot_tree(src)).size());
}

// ------------------------------------------------------ SIGKILL, SIGTERM --

class RealFaultsKill : public ::testing::Test {
 protected:
  void SetUp() override {
    src_ = dir_ / "src";
    // ~2000 small files and 12 files of 8 MiB: long enough to be killed
    // in the middle, short enough for CI.
    make_mixed_tree(src_, 2000, 12, 8 << 20, 21);
    // How long a whole copy takes here, page cache warm.
    const std::string probe = dir_ / "probe";
    const Outcome o = run({kRingcp, "-a", src_ + "/.", probe}, dir_.path());
    ASSERT_EQ(o.exit_code, 0) << describe(o);
    full_seconds_ = o.seconds;
    remove_tree(probe);
  }
  TempDir dir_;
  std::string src_;
  double full_seconds_ = 0;
};

TEST_F(RealFaultsKill, sigkill_at_random_moments_then_a_rerun_completes) {
  const char* seed_text = std::getenv("RINGIO_FAULT_SEED");
  const uint64_t seed = seed_text != nullptr ? std::strtoull(seed_text, nullptr, 0)
                                             : uint64_t(std::chrono::system_clock::now().time_since_epoch().count());
  std::printf("kill moments seed %" PRIu64 " (RINGIO_FAULT_SEED replays), full copy %.3f s\n", seed, full_seconds_);
  std::mt19937_64 random(seed);
  const std::string dst = dir_ / "dst";
  int landed = 0;
  for (int attempt = 0; attempt < 12 && landed < 5; ++attempt) {
    // A moment between 5 % and 90 % of a full copy's duration.
    const double fraction = std::uniform_real_distribution<double>(0.05, 0.9)(random);
    Child child({kRingcp, "-a", src_ + "/.", dst}, dir_.path());
    std::this_thread::sleep_for(std::chrono::duration<double>(fraction * full_seconds_));
    if (!child.running()) {
      std::printf("  attempt %d: the copy finished before %.0f%% of the probe time\n", attempt, fraction * 100);
      continue;
    }
    // Still running now: the kill lands before completion.
    ASSERT_EQ(kill(child.pid(), SIGKILL), 0);
    const Outcome o = child.wait();
    ASSERT_EQ(o.signal, SIGKILL) << describe(o);
    ++landed;
    std::printf("  killed at %.0f%% (%.3f s)\n", fraction * 100, o.seconds);
    // Named temporaries may remain until the next run; never a truncated
    // file under a final name.
    const auto problems = verify_copy(src_, dst, false);
    std::vector<std::string> real;
    for (const std::string& p : problems)
      if (p.rfind("temporary left behind", 0) != 0) real.push_back(p);
    EXPECT_TRUE(real.empty()) << "after a kill at " << fraction * 100 << "% (seed " << seed << "):\n" << join_lines(real);
  }
  ASSERT_GE(landed, 3) << "the copy was too fast to be killed in the middle";
  const Outcome rerun = run({kRingcp, "-a", src_ + "/.", dst}, dir_.path());
  EXPECT_EQ(rerun.exit_code, 0) << describe(rerun);
  const auto problems = verify_copy(src_, dst, true);
  EXPECT_TRUE(problems.empty()) << "after the rerun (seed " << seed << "):\n" << join_lines(problems);
}

TEST_F(RealFaultsKill, sigterm_exits_3_and_removes_temporaries) {
  const std::string dst = dir_ / "dst";
  // A first complete copy, so that the interrupted one replaces files
  // (named temporaries, renamed over the originals).
  ASSERT_EQ(run({kRingcp, "-a", src_ + "/.", dst}, dir_.path()).exit_code, 0);
  int landed = 0;
  for (double fraction : {0.1, 0.3, 0.5, 0.7}) {
    Child child({kRingcp, "-a", src_ + "/.", dst}, dir_.path());
    if (!child.wait_until_catching(SIGTERM)) continue;
    std::this_thread::sleep_for(std::chrono::duration<double>(fraction * full_seconds_));
    if (!child.running()) continue;
    ASSERT_EQ(kill(child.pid(), SIGTERM), 0);
    const Outcome o = child.wait();
    ++landed;
    EXPECT_EQ(o.exit_code, 3) << "SIGTERM at " << fraction * 100 << "%: " << describe(o);
    const auto problems = verify_copy(src_, dst, false);
    EXPECT_TRUE(problems.empty()) << "after SIGTERM at " << fraction * 100 << "%:\n" << join_lines(problems);
  }
  ASSERT_GE(landed, 1) << "the copy was too fast to be interrupted";
}

// Replacing existing files with the uring engine (named temporaries, marked,
// renamed over the old files), interrupted 0.2 s in by SIGINT or SIGTERM:
// no file under its final name keeps the temporary marker, and the
// directories lose their replacement marker.
TEST(RealFaultsInterrupt, no_published_file_keeps_the_temporary_marker) {
  int setup_errno = 0;
  if (!raw_io_uring_setup_works(&setup_errno)) GTEST_SKIP() << "io_uring_setup fails: " << strerror(setup_errno);
  TempDir dir;
  const std::string src = dir / "src", dst = dir / "dst";
  mkdir(src.c_str(), 0755);
  for (int i = 0; i < 400; ++i) write_bytes(src + "/f" + std::to_string(i), size_t(i * 53 % 20000), uint64_t(i));
  for (int i = 0; i < 3; ++i) write_bytes(src + "/big" + std::to_string(i), 40 << 20, uint64_t(1000 + i));
  int landed = 0;
  for (const int signal_number : {SIGINT, SIGTERM, SIGINT}) {
    // Older content at every destination name.
    remove_tree(dst);
    ASSERT_EQ(run({"cp", "-a", src, dst}, dir.path()).exit_code, 0);
    for (const auto& [path, entry] : snapshot_tree(dst)) {
      if (!S_ISREG(entry.mode)) continue;
      const int fd = open((dst + "/" + path).c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
      ASSERT_GE(fd, 0);
      ASSERT_EQ(write(fd, "old", 3), 3);
      close(fd);
    }
    Child child({kRingcp, "-a", "--engine=uring", src + "/.", dst}, dir.path());
    if (!child.wait_until_catching(signal_number)) continue;
    // The moment wanted is mid-replacement, whatever this machine's speed:
    // the directory's replacement marker is set before its first file is
    // renamed over an old one; a little later files are being published.
    while (child.running() && getxattr(dst.c_str(), kReplacingXattr, nullptr, 0) < 0)
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (!child.running()) continue;
    ASSERT_EQ(kill(child.pid(), signal_number), 0);
    const Outcome o = child.wait();
    ++landed;
    EXPECT_EQ(o.exit_code, 3) << strsignal(signal_number) << ": " << describe(o);
    std::vector<std::string> marked;
    if (getxattr(dst.c_str(), kReplacingXattr, nullptr, 0) >= 0) marked.push_back(". (" + std::string(kReplacingXattr) + ")");
    for (const auto& [path, entry] : snapshot_tree(dst)) {
      if (S_ISREG(entry.mode) && getxattr((dst + "/" + path).c_str(), kTempMarkerXattr, nullptr, 0) >= 0)
        marked.push_back(path);
    }
    EXPECT_TRUE(marked.empty()) << "after " << strsignal(signal_number) << ", marked:\n" << join_lines(marked);
    EXPECT_TRUE(find_temporaries(dst).empty()) << join_lines(find_temporaries(dst));
  }
  ASSERT_GE(landed, 1) << "the copy was too fast to be interrupted 0.2 s in";
}

// ------------------------------------------------------------ seccomp --

#ifdef RINGIO_HAVE_SECCOMP
// Makes io_uring_setup fail with `code` in this process and what it execs.
std::function<void()> forbid_io_uring(int code) {
  return [code] {
    scmp_filter_ctx filter = seccomp_init(SCMP_ACT_ALLOW);
    if (filter == nullptr || seccomp_rule_add(filter, SCMP_ACT_ERRNO(code), SCMP_SYS(io_uring_setup), 0) != 0 ||
        seccomp_load(filter) != 0) {
      std::fprintf(stderr, "seccomp filter not installed\n");
      _exit(97);
    }
    seccomp_release(filter);
  };
}

class RealFaultsSeccomp : public ::testing::TestWithParam<int> {};

TEST_P(RealFaultsSeccomp, auto_falls_back_to_posix_and_says_why) {
  const int code = GetParam();
  TempDir dir;
  const std::string src = dir / "src", dst = dir / "dst";
  make_mixed_tree(src, 200, 2, 1 << 20, 31);
  const Outcome o = run({kRingcp, "--stats=json", "-a", src + "/.", dst}, dir.path(), forbid_io_uring(code));
  ASSERT_NE(o.exit_code, 97) << "could not install the seccomp filter";
  nlohmann::json stats = expect_complete_copy(o, src, dst);
  if (HasFailure()) return;
  EXPECT_EQ(stats["backend"], "posix") << o.out;
  const std::string reason = stats["backend_reason"].get<std::string>();
  EXPECT_NE(reason.find("io_uring_setup failed"), std::string::npos) << reason;
  EXPECT_NE(reason.find(std::strerror(code)), std::string::npos) << reason;
  EXPECT_NE(reason.find("seccomp"), std::string::npos) << reason;
}

TEST_P(RealFaultsSeccomp, explicit_uring_is_a_fatal_error_with_a_reason) {
  const int code = GetParam();
  TempDir dir;
  const std::string src = dir / "src", dst = dir / "dst";
  make_mixed_tree(src, 10, 0, 0, 32);
  const Outcome o = run({kRingcp, "--engine=uring", "-a", src + "/.", dst}, dir.path(), forbid_io_uring(code));
  EXPECT_EQ(o.exit_code, 3) << describe(o);
  EXPECT_NE(o.err.find("io_uring"), std::string::npos) << describe(o);
  EXPECT_EQ(access(dst.c_str(), F_OK), -1) << "nothing is copied without a backend";
}

INSTANTIATE_TEST_SUITE_P(RealFaults, RealFaultsSeccomp, ::testing::Values(ENOSYS, EPERM),
                         [](const ::testing::TestParamInfo<int>& param_info) {
                           return std::string(param_info.param == ENOSYS ? "ENOSYS" : "EPERM");
                         });
#else
TEST(RealFaultsSeccomp, DISABLED_needs_libseccomp) {}
#endif

// ------------------------------------------------------ RLIMIT_MEMLOCK --

class MemlockRealFaults : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!tool_present("prlimit") || !tool_present("setpriv")) GTEST_SKIP() << "needs prlimit and setpriv (util-linux)";
    src_ = dir_ / "src";
    make_mixed_tree(src_, 300, 4, 2 << 20, 41);
  }
  Outcome copy_with_memlock(uint64_t bytes, const std::string& dst) {
    const std::string limit = std::to_string(bytes);
    return run({"prlimit", "--memlock=" + limit + ":" + limit, "setpriv", "--inh-caps=-ipc_lock",
                "--bounding-set=-ipc_lock", kRingcp, "--stats=json", "-a", src_ + "/.", dst},
               dir_.path());
  }
  TempDir dir_;
  std::string src_;
};

TEST_F(MemlockRealFaults, limit_64k_copies_with_an_unregistered_or_small_pool) {
  const std::string dst = dir_ / "dst";
  const Outcome o = copy_with_memlock(64 * 1024, dst);
  nlohmann::json stats = expect_complete_copy(o, src_, dst);
  if (HasFailure()) return;
  const auto& pool = stats["buffer_pool"];
  if (stats["backend"] == "uring") {
    // 64 KiB cannot hold the ring and MIN (2) buffers of 64 KiB.
    EXPECT_FALSE(pool["registered"].get<bool>()) << o.out;
    EXPECT_FALSE(pool["note"].get<std::string>().empty()) << "the pool does not say why: " << o.out;
    EXPECT_EQ(stats["ops"]["fixed_reads"], 0) << o.out;
  } else {
    // The ring itself did not fit: posix, and the reason says so.
    EXPECT_NE(stats["backend_reason"].get<std::string>().find("io_uring"), std::string::npos) << o.out;
  }
}

TEST_F(MemlockRealFaults, limit_zero_falls_back_to_posix) {
  const std::string dst = dir_ / "dst";
  const Outcome o = copy_with_memlock(0, dst);
  nlohmann::json stats = expect_complete_copy(o, src_, dst);
  if (HasFailure()) return;
  EXPECT_EQ(stats["backend"], "posix") << o.out;
  const std::string reason = stats["backend_reason"].get<std::string>();
  EXPECT_TRUE(reason.find("RLIMIT_MEMLOCK") != std::string::npos ||
              reason.find("Cannot allocate memory") != std::string::npos)
      << reason;
}

// ------------------------------------------------------ RLIMIT_FSIZE --

// Past RLIMIT_FSIZE the kernel sends SIGXFSZ, which kills a process that
// does not ignore it (cp dies there, its directories left unfinished).
// ringcp ignores it: the write fails with EFBIG, that file is reported and
// its temporary dropped, and the rest of the tree is copied and finished.
class RealFaultsFileSizeLimit : public ::testing::TestWithParam<std::string> {};

TEST_P(RealFaultsFileSizeLimit, a_file_over_the_limit_is_reported_and_the_rest_is_finished) {
  if (!tool_present("prlimit")) GTEST_SKIP() << "needs prlimit (util-linux)";
  TempDir dir;
  const std::string src = dir / "src", dst = dir / "dst";
  make_mixed_tree(src, 60, 0, 0, 81);
  write_bytes(src + "/d5/too-big", 3 << 20, 82);
  chmod((src + "/d7").c_str(), 0750);
  const Outcome o = run({"prlimit", "--fsize=1048576", kRingcp, "--engine=" + GetParam(), "-a", src + "/.", dst},
                        dir.path());
  EXPECT_EQ(o.exit_code, 2) << describe(o);
  EXPECT_EQ(o.signal, 0) << describe(o);
  EXPECT_EQ(count_lines(o.err), 1u) << describe(o);
  EXPECT_NE(o.err.find("too-big': File too large"), std::string::npos) << describe(o);
  EXPECT_EQ(access((dst + "/d5/too-big").c_str(), F_OK), -1) << "a partial file under its final name";
  const auto problems = verify_copy(src, dst, false);
  EXPECT_TRUE(problems.empty()) << join_lines(problems);
  // Everything else is there, directories finished (mode set after content).
  EXPECT_EQ(snapshot_tree(dst).size() + 1, snapshot_tree(src).size());
  struct stat st {};
  ASSERT_EQ(stat((dst + "/d7").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0750u);
}

INSTANTIATE_TEST_SUITE_P(Engines, RealFaultsFileSizeLimit, ::testing::Values("uring", "posix"));

// RLIMIT_MEMLOCK from 0 to 128 KiB in 4 KiB steps, without CAP_IPC_LOCK.
// At each step the test first asks the kernel whether the smallest ring fits
// under that limit at all (ringio_memlock_probe, which waits out rings that
// earlier runs closed), then copies with `auto` and with `--engine=uring`.
// `auto` copies at every step, on io_uring from the first step where a ring
// fits; `--engine=uring` copies there and exits 3 with a message below it.
// The buffers (256 KiB, 2 at least) never fit under 128 KiB: the pool runs
// unregistered and says why.
class MemlockRealFaultsSweep : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!tool_present("prlimit") || !tool_present("setpriv")) GTEST_SKIP() << "needs prlimit and setpriv (util-linux)";
    if (!test::raw_io_uring_setup_works() && !test::uring_required()) GTEST_SKIP() << "io_uring_setup fails here";
    src_ = dir_ / "src";
    make_mixed_tree(src_, 40, 1, 6 << 20, 43);
  }
  Outcome copy_with_memlock(uint64_t bytes, const std::string& dst, const std::string& engine) {
    const std::string limit = std::to_string(bytes);
    return run({"prlimit", "--memlock=" + limit + ":" + limit, "setpriv", "--inh-caps=-ipc_lock",
                "--bounding-set=-ipc_lock", kRingcp, "--stats=json", "--engine=" + engine, "-a", src_ + "/.", dst},
               dir_.path());
  }
  TempDir dir_;
  std::string src_;
};

TEST_F(MemlockRealFaultsSweep, zero_to_128k_in_4k_steps_copies_at_every_step) {
  uint64_t first_fit = 0;
  bool fitted = false;
  for (uint64_t limit = 0; limit <= 128 * 1024; limit += 4096) {
    SCOPED_TRACE("RLIMIT_MEMLOCK " + std::to_string(limit));
    const bool ring_fits = test::memlock_probe("ring-fits", limit, 2000);
    if (fitted) {
      EXPECT_TRUE(ring_fits) << "a ring fitted under a smaller limit";
    }
    if (ring_fits && !fitted) first_fit = limit;
    fitted = fitted || ring_fits;

    const std::string dst = dir_ / ("auto-" + std::to_string(limit));
    const Outcome o = copy_with_memlock(limit, dst, "auto");
    nlohmann::json stats = expect_complete_copy(o, src_, dst);
    if (stats.is_object()) {
      const auto& pool = stats["buffer_pool"];
      EXPECT_EQ(stats["backend"], ring_fits ? "uring" : "posix") << o.out;
      EXPECT_FALSE(pool["registered"].get<bool>()) << "2 x 256 KiB cannot fit: " << o.out;
      EXPECT_EQ(stats["ops"]["fixed_reads"], 0) << o.out;
      if (ring_fits) {
        EXPECT_NE(pool["note"].get<std::string>().find("RLIMIT_MEMLOCK " + std::to_string(limit)),
                  std::string::npos)
            << "the pool does not say why it is unregistered: " << o.out;
      } else {
        EXPECT_NE(stats["backend_reason"].get<std::string>().find("RLIMIT_MEMLOCK"), std::string::npos)
            << o.out;
      }
    }
    test::remove_tree(dst);

    const std::string forced = dir_ / ("uring-" + std::to_string(limit));
    const Outcome u = copy_with_memlock(limit, forced, "uring");
    if (ring_fits) {
      nlohmann::json forced_stats = expect_complete_copy(u, src_, forced);
      if (forced_stats.is_object()) {
        EXPECT_EQ(forced_stats["backend"], "uring") << u.out;
      }
    } else {
      EXPECT_EQ(u.exit_code, 3) << describe(u);
      EXPECT_NE(u.err.find("io_uring"), std::string::npos) << describe(u);
      EXPECT_NE(u.err.find("RLIMIT_MEMLOCK"), std::string::npos) << describe(u);
      EXPECT_EQ(count_lines(u.err), 1u) << describe(u);
      EXPECT_EQ(access(forced.c_str(), F_OK), -1) << "nothing is copied without a backend";
    }
    test::remove_tree(forced);
  }
  ASSERT_TRUE(fitted) << "no ring fits even under 128 KiB";
  // Two pages (the rings and the SQEs) is the least a ring can pin.
  EXPECT_GE(first_fit, 8192u);
  std::printf("first limit at which a ring fits: %llu bytes\n", static_cast<unsigned long long>(first_fit));
}

// ------------------------------------------- a source that changes --

enum class Change { append, truncate, overwrite, sparse_append, sparse_overwrite };

// A cached file of 4 MiB or more is written with O_DIRECT from a mapping of
// the source; with --no-direct it is copied in the kernel (copy_file_range),
// and with --no-copy-range too through the buffers. Sparse files always go
// through the buffers.
struct ChangeCase {
  Change change;
  std::vector<std::string> flags;
  const char* name;
};

class RealFaultsChangingSource : public ::testing::TestWithParam<ChangeCase> {};

// Size of the unnamed target the copier is writing (its /proc fd link says
// "(deleted)"), or 0 when there is none yet.
uint64_t target_progress(pid_t pid, const std::string& dst_dir) {
  const std::string fds = "/proc/" + std::to_string(pid) + "/fd";
  DIR* listing = opendir(fds.c_str());
  if (listing == nullptr) return 0;
  uint64_t best = 0;
  while (dirent* entry = readdir(listing)) {
    if (entry->d_name[0] == '.') continue;
    const std::string link = fds + "/" + entry->d_name;
    char target[4096];
    const ssize_t n = readlink(link.c_str(), target, sizeof target - 1);
    if (n <= 0) continue;
    target[n] = '\0';
    if (std::strncmp(target, dst_dir.c_str(), dst_dir.size()) != 0) continue;
    struct stat st {};
    if (stat(link.c_str(), &st) == 0 && S_ISREG(st.st_mode)) best = std::max<uint64_t>(best, uint64_t(st.st_size));
  }
  closedir(listing);
  return best;
}

TEST_P(RealFaultsChangingSource, detected_and_reported_never_silently_wrong) {
  const Change change = GetParam().change;
  TempDir dir;
  const std::string src = dir / "src", dst = dir / "dst";
  mkdir(src.c_str(), 0755);
  constexpr size_t kBig = size_t(192) << 20;
  const std::string big = src + "/big";
  const bool sparse = change == Change::sparse_append || change == Change::sparse_overwrite;
  // Sparse: 2 MiB of data every 4 MiB, so the copier sees many extents.
  auto make_big = [&] {
    if (!sparse) {
      write_bytes(big, kBig, 51);
      return;
    }
    const int fd = open(big.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(ftruncate(fd, off_t(kBig)), 0);
    for (size_t offset = 0; offset < kBig; offset += 4 << 20) {
      const auto data = random_bytes(2 << 20, offset);
      ASSERT_EQ(pwrite(fd, data.data(), data.size(), off_t(offset)), ssize_t(data.size()));
    }
    close(fd);
  };
  make_big();
  for (int i = 0; i < 50; ++i) write_bytes(src + "/small" + std::to_string(i), 1000, uint64_t(i));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a later mtime is a different mtime

  bool acted = false;
  for (int attempt = 0; attempt < 5 && !acted; ++attempt) {
    remove_tree(dst);
    std::vector<std::string> argv = {kRingcp, "-a", src + "/.", dst};
    argv.insert(argv.begin() + 1, GetParam().flags.begin(), GetParam().flags.end());
    Child child(argv, dir.path());
    // Act once an eighth of the big file has reached its target, and at most
    // half: a change seen later could land after ringcp's check that follows
    // the data (a copy of the file as it was, rightly exit 0), and the copy
    // would be judged against the changed source. Seen later: try again.
    bool too_late = false;
    while (child.running() && !too_late) {
      const uint64_t progress = target_progress(child.pid(), dst);
      too_late = progress > kBig / 2;
      if (progress >= kBig / 8 && !too_late) {
        const int fd = open(big.c_str(), O_WRONLY | O_CLOEXEC);
        ASSERT_GE(fd, 0);
        if (change == Change::append || change == Change::sparse_append) {
          const auto more = random_bytes(1 << 20, 52);
          ASSERT_EQ(pwrite(fd, more.data(), more.size(), off_t(kBig)), ssize_t(more.size()));
        } else if (change == Change::truncate) {
          ASSERT_EQ(ftruncate(fd, off_t(kBig / 2)), 0);
        } else {
          const auto patch = random_bytes(4096, 53);
          ASSERT_EQ(pwrite(fd, patch.data(), patch.size(), 0), ssize_t(patch.size()));  // already copied
        }
        close(fd);
        acted = child.running();  // the change landed while the copy ran
        break;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    const Outcome o = child.wait();
    if (!acted) {
      // Too late: restore the source and try again.
      make_big();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    std::printf("  change landed on attempt %d; ringcp exit %d: %s", attempt, o.exit_code, o.err.c_str());
    uint64_t final_size = 0;
    const uint64_t final_hash = hash_file(big, &final_size);
    uint64_t copy_size = 0;
    const uint64_t copy_hash = hash_file(dst + "/big", &copy_size);
    const bool copy_exists = access((dst + "/big").c_str(), F_OK) == 0;
    if (o.exit_code == 0) {
      // Allowed only if the copy is the final source.
      EXPECT_TRUE(copy_exists && copy_hash == final_hash && copy_size == final_size)
          << "exit 0 but the copy (" << copy_size << " bytes) is not the final source (" << final_size
          << " bytes): silently wrong\n"
          << describe(o);
    } else {
      EXPECT_EQ(o.exit_code, 2) << describe(o);
      EXPECT_NE(o.err.find("while it was copied"), std::string::npos) << describe(o);
      EXPECT_NE(o.err.find("big"), std::string::npos) << describe(o);
      EXPECT_FALSE(copy_exists && copy_hash != final_hash)
          << "a copy that is not the source is under the final name (" << copy_size << " bytes)";
    }
    EXPECT_TRUE(find_temporaries(dst).empty());
    // The rest of the tree was copied.
    for (int i = 0; i < 50; ++i)
      EXPECT_EQ(hash_file(dst + "/small" + std::to_string(i)), hash_file(src + "/small" + std::to_string(i)));
  }
  if (!acted) GTEST_SKIP() << "the copy was always done before the change could land";
}

INSTANTIATE_TEST_SUITE_P(RealFaults, RealFaultsChangingSource,
                         ::testing::Values(
                             ChangeCase{Change::append, {}, "grows"},
                             ChangeCase{Change::truncate, {}, "shrinks"},
                             ChangeCase{Change::overwrite, {}, "rewritten_in_place"},
                             ChangeCase{Change::append, {"--no-direct"}, "grows_in_the_kernel"},
                             ChangeCase{Change::truncate, {"--no-direct"}, "shrinks_in_the_kernel"},
                             ChangeCase{Change::overwrite, {"--no-direct"}, "rewritten_in_place_in_the_kernel"},
                             ChangeCase{Change::append, {"--no-direct", "--no-copy-range"}, "grows_through_buffers"},
                             ChangeCase{Change::truncate, {"--no-direct", "--no-copy-range"}, "shrinks_through_buffers"},
                             ChangeCase{Change::overwrite, {"--no-direct", "--no-copy-range"},
                                        "rewritten_in_place_through_buffers"},
                             ChangeCase{Change::sparse_append, {}, "sparse_file_grows"},
                             ChangeCase{Change::sparse_overwrite, {}, "sparse_file_rewritten_in_place"}),
                         [](const ::testing::TestParamInfo<ChangeCase>& param_info) {
                           return std::string(param_info.param.name);
                         });

// ------------------------------------------------------------- --fsync --

// What --fsync promises (DESIGN.md 6, docs/reliability.md): file data is
// fsynced before its name appears, and every directory that gets a new
// entry is fsynced after it, the destination's parent included when the
// copy creates a name there. Power loss cannot be simulated here; the
// fsync count in --stats=json shows which descriptors were synced.
TEST(RealFaultsFsync, every_file_and_every_directory_that_gets_an_entry_is_fsynced) {
  TempDir dir;
  const std::string src = dir / "src";
  mkdir(src.c_str(), 0755);
  mkdir((src + "/a").c_str(), 0755);
  mkdir((src + "/a/b").c_str(), 0755);
  for (const char* name : {"f1", "f2", "a/g1", "a/g2", "a/b/h"}) write_bytes(src + "/" + name, 100, 97);
  auto fsyncs = [&](const std::vector<std::string>& args) -> int64_t {
    std::vector<std::string> argv = {kRingcp, "--fsync", "--stats=json"};
    argv.insert(argv.end(), args.begin(), args.end());
    const Outcome o = run(argv, dir.path());
    EXPECT_EQ(o.exit_code, 0) << describe(o);
    try {
      const auto stats = nlohmann::json::parse(o.out);
      return stats["ops"]["by_op"].value("fsync", int64_t{0});
    } catch (...) {
      ADD_FAILURE() << "no JSON: " << o.out;
      return -1;
    }
  };
  // At least these (an extra fsync of a directory that got no new entry
  // costs time but loses nothing).
  // Into an existing directory: 5 files + into, a, b (into gets the entries).
  mkdir((dir / "into").c_str(), 0755);
  EXPECT_GE(fsyncs({"-a", src + "/.", dir / "into"}), 8);
  // A new tree: 5 files + new, a, b, and the directory that gets "new".
  EXPECT_GE(fsyncs({"-a", src, dir / "new"}), 9) << "the directory holding the new tree's name is not fsynced";
  // One file into a directory: the file, and the directory that gets its name.
  mkdir((dir / "one").c_str(), 0755);
  EXPECT_GE(fsyncs({src + "/f1", dir / "one/"}), 2) << "the directory that gets the file's name is not fsynced";
}

// ------------------------------------- permissions (unprivileged user) --

class RealFaultsUnprivileged : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0 || !tool_present("setpriv")) GTEST_SKIP() << "needs root (to switch to uid 65534) and setpriv";
    // The binary must be reachable by the unprivileged user.
    if (run({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", kRingcp, "--version"}, dir_.path())
            .exit_code != 0)
      GTEST_SKIP() << kRingcp << " is not executable by uid 65534";
  }
  Outcome as_nobody(std::vector<std::string> args) {
    std::vector<std::string> argv = {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", kRingcp};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv, dir_.path());
  }
  SharedScratch dir_;
};

TEST_F(RealFaultsUnprivileged, permission_denied_sources_are_reported_and_the_rest_is_copied) {
  const std::string src = dir_ / "src", dst = dir_ / "dst";
  make_mixed_tree(src, 200, 1, 1 << 20, 61);
  write_bytes(src + "/d3/secret", 1000, 62, 0000);        // unreadable file
  write_bytes(src + "/d4/secret2", 70000, 63, 0200);      // write-only file
  mkdir((src + "/locked").c_str(), 0755);
  write_bytes(src + "/locked/inside", 100, 64);
  chmod((src + "/locked").c_str(), 0000);                 // unreadable directory
  mkdir((src + "/noread").c_str(), 0755);
  write_bytes(src + "/noread/inside", 100, 65);
  chmod((src + "/noread").c_str(), 0311);                 // not listable
  mkdir(dst.c_str(), 0755);
  ASSERT_EQ(chown(dst.c_str(), kNobody, kNobody), 0);

  const Outcome o = as_nobody({"-a", src + "/.", dst});
  EXPECT_EQ(o.exit_code, 2) << describe(o);
  for (const char* name : {"secret'", "secret2'", "locked'", "noread'"}) {
    EXPECT_NE(o.err.find(name), std::string::npos) << name << " not reported\n" << describe(o);
  }
  EXPECT_NE(o.err.find("Permission denied"), std::string::npos) << describe(o);
  EXPECT_EQ(count_lines(o.err), 4u) << "one line per problem\n" << describe(o);
  // Everything readable arrived.
  chmod((src + "/locked").c_str(), 0755);
  chmod((src + "/noread").c_str(), 0755);
  const auto problems = verify_copy(src, dst, false);
  EXPECT_TRUE(problems.empty()) << join_lines(problems);
  const TreeSnapshot copy = snapshot_tree(dst);
  for (const std::string& path : regular_files(snapshot_tree(src))) {
    const bool denied = path == "d3/secret" || path == "d4/secret2" || path.rfind("locked/", 0) == 0 ||
                        path.rfind("noread/", 0) == 0;
    if (!denied) {
      EXPECT_EQ(copy.count(path), 1u) << path << " was readable but not copied";
    }
  }
}

// RLIMIT_NPROC 1 for a user with no other process: io_uring cannot start an
// io-wq worker, and the kernel completes each request it would hand to one
// with -ECANCELED, unrun. ringcp runs those itself; before, every such
// statx or openat failed ("Operation canceled", exit 2) where cp copies.
TEST_F(RealFaultsUnprivileged, one_process_limit_leaves_io_uring_without_workers_and_the_copy_completes) {
  const std::string uid = "3999999";  // a user that runs nothing else
  if (run({"pgrep", "-U", uid}, dir_.path()).exit_code == 0) GTEST_SKIP() << "uid " << uid << " has processes";
  const std::string src = dir_ / "src", dst = dir_ / "dst";
  make_mixed_tree(src, 100, 2, 3 << 20, 71);
  mkdir(dst.c_str(), 0755);
  ASSERT_EQ(chown(dst.c_str(), 3999999, 3999999), 0);
  // LeakSanitizer needs a thread at exit, which this limit forbids: an
  // ASan build checks everything else.
  const char* asan = std::getenv("ASAN_OPTIONS");
  const std::string asan_options = std::string("ASAN_OPTIONS=") + (asan != nullptr ? asan : "") + ":detect_leaks=0";
  const Outcome o = run({"prlimit", "--nproc=1", "env", asan_options, "setpriv", "--reuid=" + uid, "--regid=" + uid,
                         "--clear-groups", kRingcp, "--stats=json", "-r", src + "/.", dst},
                        dir_.path());
  nlohmann::json stats = expect_complete_copy(o, src, dst);
  if (stats.is_object() && test::raw_io_uring_setup_works()) {
    EXPECT_EQ(stats["backend"], "uring") << o.out;
  }
}

TEST_F(RealFaultsUnprivileged, read_only_destination_directory) {
  const std::string src = dir_ / "src", dst = dir_ / "ro";
  make_mixed_tree(src, 20, 0, 0, 71);
  mkdir(dst.c_str(), 0755);  // root's: the unprivileged user can neither write nor chmod it
  const Outcome tree = as_nobody({"-a", src + "/.", dst});
  EXPECT_EQ(tree.exit_code, 2) << describe(tree);
  EXPECT_NE(tree.err.find("Permission denied"), std::string::npos) << describe(tree);
  const Outcome file = as_nobody({src + "/d1/known1", dst + "/"});
  EXPECT_EQ(file.exit_code, 2) << describe(file);
  EXPECT_NE(file.err.find("cannot create regular file"), std::string::npos) << describe(file);
  EXPECT_NE(file.err.find("Permission denied"), std::string::npos) << describe(file);
  EXPECT_TRUE(snapshot_tree(dst).size() == 1) << "something appeared in the read-only directory";
}

TEST_F(RealFaultsUnprivileged, names_that_are_not_utf8_are_quoted_one_line_each) {
  const std::string src = dir_ / "src", dst = dir_ / "dst";
  mkdir(src.c_str(), 0755);
  const std::string bad = "bad\xff\xfe";
  const std::string newline = "new\nline";
  write_bytes(src + "/" + bad, 100, 81, 0000);
  write_bytes(src + "/" + newline, 100, 82, 0000);
  write_bytes(src + "/ok", 100, 83);
  mkdir(dst.c_str(), 0755);
  ASSERT_EQ(chown(dst.c_str(), kNobody, kNobody), 0);
  const Outcome o = as_nobody({"-a", "--stats=json", src + "/.", dst});
  nlohmann::json stats_document;
  EXPECT_EQ(o.exit_code, 2) << describe(o);
  EXPECT_EQ(count_lines(o.err), 2u) << "a name broke a line\n" << describe(o);
  EXPECT_NE(o.err.find("new'$'\\n''line'"), std::string::npos) << describe(o);
  EXPECT_NE(o.err.find("bad\xff\xfe"), std::string::npos) << "the name is kept byte for byte\n" << describe(o);
  EXPECT_NO_THROW(stats_document = nlohmann::json::parse(o.out)) << "the JSON is not valid UTF-8/JSON: " << o.out;
  EXPECT_EQ(hash_file(dst + "/ok"), hash_file(src + "/ok"));
}

// -------------------------------------------------------- bad input --

class RealFaultsBadInput : public ::testing::Test {
 protected:
  Outcome ringcp(std::vector<std::string> args) {
    args.insert(args.begin(), kRingcp);
    return run(args, dir_.path());
  }
  TempDir dir_;
};

TEST_F(RealFaultsBadInput, destination_is_a_file) {
  const std::string src = dir_ / "src", file = dir_ / "file";
  make_mixed_tree(src, 5, 0, 0, 91);
  write_bytes(file, 10, 92);
  Outcome o = ringcp({"-r", src, file});
  EXPECT_EQ(o.exit_code, 1) << describe(o);
  EXPECT_NE(o.err.find("cannot overwrite non-directory"), std::string::npos) << describe(o);
  o = ringcp({src + "/d1/known1", src + "/d2/known2", file});
  EXPECT_EQ(o.exit_code, 1) << describe(o);
  EXPECT_NE(o.err.find("is not a directory"), std::string::npos) << describe(o);
  o = ringcp({src + "/d1/known1", file + "/sub"});
  EXPECT_EQ(o.exit_code, 2) << describe(o);
  EXPECT_NE(o.err.find("Not a directory"), std::string::npos) << describe(o);
  EXPECT_EQ(hash_file(file), hash_bytes(std::string(reinterpret_cast<const char*>(random_bytes(10, 92).data()), 10)));
}

TEST_F(RealFaultsBadInput, source_is_the_destination) {
  const std::string src = dir_ / "src";
  make_mixed_tree(src, 5, 0, 0, 93);
  const TreeSnapshot before = snapshot_tree(src);
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{src + "/d1/known1", src + "/d1/known1"}, {"-a", src + "/.", src}, {"-r", src, src}}) {
    const Outcome o = ringcp(args);
    EXPECT_EQ(o.exit_code, 1) << args.back() << ": " << describe(o);
    EXPECT_TRUE(o.err.find("are the same file") != std::string::npos || o.err.find("into itself") != std::string::npos)
        << describe(o);
  }
  EXPECT_TRUE(snapshot_differences(before, snapshot_tree(src)).empty());
}

TEST_F(RealFaultsBadInput, destination_inside_the_source) {
  const std::string src = dir_ / "src";
  make_mixed_tree(src, 5, 0, 0, 94);
  const TreeSnapshot before = snapshot_tree(src);
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"-r", src, src + "/d1/inner"}, {"-a", src + "/.", src + "/d2"}}) {
    const Outcome o = ringcp(args);
    EXPECT_EQ(o.exit_code, 1) << describe(o);
    EXPECT_NE(o.err.find("into itself"), std::string::npos) << describe(o);
  }
  EXPECT_TRUE(snapshot_differences(before, snapshot_tree(src)).empty());
}

TEST_F(RealFaultsBadInput, symlink_loop_is_copied_as_links_or_reported_with_L) {
  const std::string src = dir_ / "src";
  mkdir(src.c_str(), 0755);
  ASSERT_EQ(symlink("b", (src + "/a").c_str()), 0);
  ASSERT_EQ(symlink("a", (src + "/b").c_str()), 0);
  write_bytes(src + "/plain", 1000, 95);
  // -a: symlinks are copied as symlinks, loop or not.
  Outcome o = ringcp({"-a", src + "/.", dir_ / "as-links"});
  EXPECT_EQ(o.exit_code, 0) << describe(o);
  const auto problems = verify_copy(src, dir_ / "as-links", true);
  EXPECT_TRUE(problems.empty()) << join_lines(problems);
  // -L: following a and b loops; both reported (ELOOP), the rest copied.
  o = ringcp({"-rL", src + "/.", dir_ / "followed"});
  EXPECT_EQ(o.exit_code, 2) << describe(o);
  EXPECT_NE(o.err.find("Too many levels of symbolic links"), std::string::npos) << describe(o);
  EXPECT_EQ(count_lines(o.err), 2u) << describe(o);
  EXPECT_EQ(hash_file(dir_ / "followed/plain"), hash_file(src + "/plain"));
  // A loop named on the command line.
  o = ringcp({"-L", src + "/a", dir_ / "one"});
  EXPECT_EQ(o.exit_code, 2) << describe(o);
  EXPECT_NE(o.err.find("Too many levels of symbolic links"), std::string::npos) << describe(o);
}

// GNU cp -rL reports "cannot copy cyclic symbolic link" for a symlink to an
// ancestor directory and copies the rest. A copier that follows it recurses
// until it runs out of descriptors.
TEST_F(RealFaultsBadInput, symlink_to_an_ancestor_with_L_is_a_reported_cycle) {
  const std::string src = dir_ / "src", dst = dir_ / "dst";
  mkdir(src.c_str(), 0755);
  mkdir((src + "/sub").c_str(), 0755);
  write_bytes(src + "/sub/file", 1000, 96);
  ASSERT_EQ(symlink("..", (src + "/sub/up").c_str()), 0);
  // A low descriptor limit makes a copier that follows the cycle stop after
  // ~120 levels instead of ~5,000 (seconds instead of a minute under ASan).
  std::vector<std::string> argv = {"timeout", "60", kRingcp, "-rL", src + "/.", dst};
  if (tool_present("prlimit")) argv.insert(argv.begin(), {"prlimit", "--nofile=256:256"});
  const Outcome o = run(argv, dir_.path());
  EXPECT_NE(o.exit_code, 124) << "ringcp did not finish within 60 s";
  EXPECT_EQ(o.exit_code, 2) << "exit " << o.exit_code << ", " << count_lines(o.err) << " lines on stderr, last: "
                            << o.err.substr(o.err.size() > 300 ? o.err.size() - 300 : 0);
  EXPECT_LE(count_lines(o.err), 2u) << "the cycle is reported once, not once per level; first lines:\n"
                                    << o.err.substr(0, 600);
  EXPECT_TRUE(o.err.find("cycl") != std::string::npos || o.err.find("loop") != std::string::npos)
      << "no message names the cycle; stderr starts:\n" << o.err.substr(0, 600);
  EXPECT_EQ(hash_file(dst + "/sub/file"), hash_file(src + "/sub/file")) << "the regular file was not copied";
  size_t depth = 0;
  for (const auto& [path, entry] : snapshot_tree(dst)) depth = std::max<size_t>(depth, size_t(std::count(path.begin(), path.end(), '/')));
  EXPECT_LE(depth, 3u) << "the copy followed the cycle " << depth << " levels deep";
  // A tree deeper than PATH_MAX: rm walks it with descriptors.
  run_command({"rm", "-rf", dst});
}

}  // namespace
}  // namespace ringio::test
