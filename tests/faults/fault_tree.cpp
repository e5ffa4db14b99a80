#include "faults/fault_tree.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <stdexcept>
#include <string_view>

#include "support/test_util.hpp"

namespace ringio::test {

namespace {

void check(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error(what + ": " + std::strerror(errno));
}

void write_all(const std::string& path, const std::vector<uint8_t>& bytes, mode_t mode) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  check(fd >= 0, "create " + path);
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = write(fd, bytes.data() + done, bytes.size() - done);
    check(n > 0, "write " + path);
    done += size_t(n);
  }
  check(fchmod(fd, mode) == 0, "chmod " + path);
  close(fd);
}

void walk(const std::string& root, const std::string& relative,
          const std::function<void(const std::string&, const struct stat&)>& visit) {
  const std::string path = relative.empty() ? root : root + "/" + relative;
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) return;
  visit(relative, st);
  if (!S_ISDIR(st.st_mode)) return;
  DIR* dir = opendir(path.c_str());
  if (dir == nullptr) return;
  std::vector<std::string> names;
  while (dirent* entry = readdir(dir)) {
    if (std::strcmp(entry->d_name, ".") != 0 && std::strcmp(entry->d_name, "..") != 0)
      names.emplace_back(entry->d_name);
  }
  closedir(dir);
  for (const std::string& name : names) walk(root, relative.empty() ? name : relative + "/" + name, visit);
}

}  // namespace

std::string memory_scratch_base() {
  struct statfs fs {};
  if (statfs("/dev/shm", &fs) == 0 && fs.f_type == TMPFS_MAGIC && access("/dev/shm", W_OK) == 0) return "/dev/shm";
  return "";
}

TreeStats make_tree(const std::string& root, uint64_t seed, const TreeShape& shape) {
  std::mt19937_64 random(seed);
  auto uniform = [&](uint64_t low, uint64_t high) {  // [low, high]
    return std::uniform_int_distribution<uint64_t>(low, high)(random);
  };
  TreeStats stats;
  std::vector<std::string> dirs = {""};
  std::vector<int> depth = {0};
  auto full = [&](const std::string& relative) { return relative.empty() ? root : root + "/" + relative; };
  auto join = [](const std::string& dir, const std::string& name) { return dir.empty() ? name : dir + "/" + name; };

  // Names a copier must not trip over: spaces, quotes, UTF-8, a newline.
  static const char* kOddNames[] = {"with space", "it's", "caf\xc3\xa9", "new\nline", "-dash", "tab\there"};

  for (uint32_t i = 0; i < shape.directories; ++i) {
    size_t parent = 0;
    do parent = uniform(0, dirs.size() - 1);
    while (depth[parent] >= 5);
    const std::string name = join(dirs[parent], (i % 9 == 4 ? std::string(kOddNames[i % 6]) + "-d" : "d") + std::to_string(i));
    check(mkdir(full(name).c_str(), 0755) == 0, "mkdir " + name);
    dirs.push_back(name);
    depth.push_back(depth[parent] + 1);
    ++stats.entries;
  }
  static const mode_t kModes[] = {0644, 0600, 0755, 0444, 0640};
  std::vector<std::string> files;
  auto add_file = [&](const std::string& relative, size_t size) {
    const auto bytes = random_bytes(size, random());
    write_all(full(relative), bytes, kModes[uniform(0, 4)]);
    files.push_back(relative);
    ++stats.entries;
    ++stats.regular_files;
    stats.bytes += size;
  };
  for (uint32_t i = 0; i < shape.small_files; ++i) {
    const double r = std::uniform_real_distribution<double>(0, 1)(random);
    size_t size;
    if (r < 0.08) size = 0;
    else if (r < 0.72) size = uniform(1, 4096);
    else if (r < 0.80) size = std::array<size_t, 6>{16383, 16384, 16385, 65535, 65536, 65537}[uniform(0, 5)];
    else size = uniform(4097, 130 * 1024);
    const std::string name = i % 37 == 5 ? std::string(kOddNames[i % 6]) + std::to_string(i) : "f" + std::to_string(i);
    add_file(join(dirs[uniform(0, dirs.size() - 1)], name), size);
  }
  for (uint32_t i = 0; i < shape.large_files; ++i)
    add_file(join(dirs[uniform(0, dirs.size() - 1)], "large" + std::to_string(i)), uniform(200 * 1024, 600 * 1024));
  for (uint32_t i = 0; i < shape.huge_files; ++i)
    add_file(join(dirs[uniform(0, dirs.size() - 1)], "huge" + std::to_string(i)), uniform(4 << 20, 18 << 20));
  for (uint32_t i = 0; i < shape.sparse_files; ++i) {
    const std::string relative = join(dirs[uniform(0, dirs.size() - 1)], "sparse" + std::to_string(i));
    const int fd = open(full(relative).c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    check(fd >= 0, "create " + relative);
    check(ftruncate(fd, 512 * 1024) == 0, "truncate " + relative);
    for (uint64_t offset : {uint64_t{0}, uint64_t{300 * 1024}}) {
      const auto bytes = random_bytes(8192, random());
      check(pwrite(fd, bytes.data(), bytes.size(), off_t(offset)) == ssize_t(bytes.size()), "pwrite " + relative);
    }
    close(fd);
    files.push_back(relative);
    ++stats.entries;
    ++stats.regular_files;
    stats.bytes += 512 * 1024;
  }
  for (uint32_t i = 0; i < shape.symlinks; ++i) {
    const std::string dir = dirs[uniform(0, dirs.size() - 1)];
    const std::string target = i % 5 == 0 ? "nowhere/missing" + std::to_string(i) : "../" + files[uniform(0, files.size() - 1)];
    check(symlink(target.c_str(), full(join(dir, "link" + std::to_string(i))).c_str()) == 0, "symlink");
    ++stats.entries;
  }
  for (uint32_t i = 0; i < shape.hard_links; ++i) {
    const std::string& existing = files[uniform(0, files.size() - 1)];
    const std::string existing_dir = existing.rfind('/') == std::string::npos ? "" : existing.substr(0, existing.rfind('/'));
    std::string dir;
    do dir = dirs[uniform(0, dirs.size() - 1)];
    while (dir == existing_dir && dirs.size() > 1);
    const std::string name = join(dir, "hard" + std::to_string(i));
    check(link(full(existing).c_str(), full(name).c_str()) == 0, "link " + name);
    ++stats.entries;
    ++stats.regular_files;
  }
  // Drawn after everything else, so that the entries above stay the same.
  for (uint32_t i = 0; i < shape.fifos; ++i) {
    const std::string name = join(dirs[uniform(0, dirs.size() - 1)], "fifo" + std::to_string(i));
    check(mkfifo(full(name).c_str(), 0640) == 0, "mkfifo " + name);
    ++stats.entries;
  }
  for (uint32_t i = 0; i < shape.xattr_files && !files.empty(); ++i) {
    const std::string& file = i == 0 && dirs.size() > 1 ? dirs[1] : files[uniform(0, files.size() - 1)];
    const std::string value = "value-" + std::to_string(i);
    // A filesystem without user xattrs (tmpfs before Linux 6.6) keeps none.
    lsetxattr(full(file).c_str(), "user.fault_tree", value.data(), value.size(), 0);
  }
  return stats;
}

uint64_t hash_bytes(const std::string& bytes) { return std::hash<std::string_view>{}(bytes); }

uint64_t hash_file(const std::string& path, uint64_t* size) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return 0;
  std::string bytes;
  char chunk[65536];
  ssize_t n;
  while ((n = read(fd, chunk, sizeof chunk)) > 0) bytes.append(chunk, size_t(n));
  close(fd);
  if (size != nullptr) *size = bytes.size();
  return hash_bytes(bytes);
}

TreeSnapshot snapshot_tree(const std::string& root) {
  TreeSnapshot snapshot;
  walk(root, "", [&](const std::string& relative, const struct stat& st) {
    EntrySnapshot entry;
    entry.mode = st.st_mode;
    entry.size = uint64_t(st.st_size);
    entry.mtime_ns = int64_t(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
    entry.ctime_ns = int64_t(st.st_ctim.tv_sec) * 1000000000 + st.st_ctim.tv_nsec;
    entry.inode = st.st_ino;
    const std::string path = relative.empty() ? root : root + "/" + relative;
    if (S_ISREG(st.st_mode)) {
      entry.content_hash = hash_file(path);
    } else if (S_ISLNK(st.st_mode)) {
      char target[4096];
      const ssize_t n = readlink(path.c_str(), target, sizeof target);
      entry.link_target.assign(target, n > 0 ? size_t(n) : 0);
      entry.content_hash = hash_bytes(entry.link_target);
    }
    snapshot[relative] = entry;
  });
  return snapshot;
}

std::vector<std::string> snapshot_differences(const TreeSnapshot& before, const TreeSnapshot& after) {
  std::vector<std::string> differences;
  for (const auto& [path, entry] : before) {
    auto it = after.find(path);
    if (it == after.end()) {
      differences.push_back("'" + path + "' disappeared");
      continue;
    }
    const EntrySnapshot& now = it->second;
    if (now.mode != entry.mode) differences.push_back("'" + path + "' mode changed");
    if (now.size != entry.size) differences.push_back("'" + path + "' size changed");
    if (now.content_hash != entry.content_hash) differences.push_back("'" + path + "' content changed");
    if (now.mtime_ns != entry.mtime_ns) differences.push_back("'" + path + "' mtime changed");
    if (now.ctime_ns != entry.ctime_ns) differences.push_back("'" + path + "' ctime changed (metadata touched)");
  }
  for (const auto& [path, entry] : after) {
    if (before.count(path) == 0) differences.push_back("'" + path + "' appeared");
  }
  return differences;
}

std::vector<std::string> find_temporaries(const std::string& root) {
  std::vector<std::string> found;
  walk(root, "", [&](const std::string& relative, const struct stat&) {
    const std::string name = relative.substr(relative.rfind('/') == std::string::npos ? 0 : relative.rfind('/') + 1);
    if (name.rfind(".ringcp-", 0) == 0) found.push_back(relative);
  });
  return found;
}

std::vector<std::string> regular_files(const TreeSnapshot& snapshot) {
  std::vector<std::string> paths;
  for (const auto& [path, entry] : snapshot) {
    if (S_ISREG(entry.mode)) paths.push_back(path);
  }
  return paths;
}

}  // namespace ringio::test
