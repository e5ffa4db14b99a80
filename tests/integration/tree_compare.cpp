#include "integration/tree_compare.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <set>
#include <sstream>

namespace ringio::itest {

namespace {

std::string errno_text(int code) { return std::strerror(code); }

std::string octal(mode_t mode) {
  char text[16];
  std::snprintf(text, sizeof text, "0%o", static_cast<unsigned>(mode));
  return text;
}

std::string type_name(mode_t type) {
  switch (type) {
    case S_IFREG: return "regular file";
    case S_IFDIR: return "directory";
    case S_IFLNK: return "symlink";
    case S_IFIFO: return "fifo";
    case S_IFSOCK: return "socket";
    case S_IFCHR: return "character device";
    case S_IFBLK: return "block device";
    default: return "unknown type " + octal(type);
  }
}

std::string time_text(const struct timespec& t) {
  char text[48];
  std::snprintf(text, sizeof text, "%lld.%09ld", static_cast<long long>(t.tv_sec), t.tv_nsec);
  return text;
}

std::string map_text(const std::vector<std::pair<uint64_t, uint64_t>>& map) {
  std::string out = "[";
  for (size_t i = 0; i < map.size(); ++i) {
    if (i != 0) out += ", ";
    out += std::to_string(map[i].first) + "-" + std::to_string(map[i].second);
  }
  return out + "]";
}

std::string bytes_text(const std::string& value) {
  std::string out;
  for (unsigned char c : value) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    }
  }
  return out;
}

std::string join(const std::string& directory, const std::string& name) {
  return directory == "." ? name : directory + "/" + name;
}

std::string proc_path(int dirfd, const std::string& name) {
  return "/proc/self/fd/" + std::to_string(dirfd) + (name.empty() ? "" : "/" + name);
}

// Every attribute of the entry `name` in `dirfd` (name empty: dirfd itself),
// without following a symlink.
void read_xattrs(int dirfd, const std::string& name, Entry& entry) {
  const std::string path = proc_path(dirfd, name);
  std::vector<char> names(4096);
  ssize_t listed;
  for (;;) {
    listed = llistxattr(path.c_str(), names.data(), names.size());
    if (listed >= 0 || errno != ERANGE) break;
    names.resize(names.size() * 4);
  }
  if (listed < 0) {
    if (errno != ENOTSUP) entry.problem += "llistxattr: " + errno_text(errno) + "; ";
    return;
  }
  for (ssize_t i = 0; i < listed;) {
    const std::string key(names.data() + i);
    i += static_cast<ssize_t>(key.size()) + 1;
    if (key == "security.selinux") continue;  // a label, not the file's data
    static std::vector<char> value(65536);
    const ssize_t got = lgetxattr(path.c_str(), key.c_str(), value.data(), value.size());
    if (got < 0) {
      entry.problem += "lgetxattr " + key + ": " + errno_text(errno) + "; ";
      continue;
    }
    entry.xattrs[key] = std::string(value.data(), static_cast<size_t>(got));
  }
}

void fill_from_stat(Entry& entry, const struct stat& st) {
  entry.type = st.st_mode & S_IFMT;
  entry.mode = st.st_mode & 07777;
  entry.size = static_cast<uint64_t>(st.st_size);
  entry.blocks = static_cast<uint64_t>(st.st_blocks);
  entry.uid = st.st_uid;
  entry.gid = st.st_gid;
  entry.mtime = st.st_mtim;
  entry.ctime = st.st_ctim;
  entry.device = st.st_dev;
  entry.inode = st.st_ino;
  entry.nlink = st.st_nlink;
  entry.rdev = st.st_rdev;
}

void scan_entry(int dirfd, const std::string& name, const std::string& relative,
                const ScanOptions& options, Scan& scan);

// The names in the directory open at `fd` (which stays open), without "."
// and ".."; nullopt, with errno set, when it cannot be listed.
std::optional<std::vector<std::string>> list_names(int fd) {
  const int listing = dup(fd);
  DIR* stream = listing >= 0 ? fdopendir(listing) : nullptr;
  if (stream == nullptr) {
    const int error = errno;
    if (listing >= 0) close(listing);
    errno = error;
    return std::nullopt;
  }
  std::vector<std::string> names;
  while (dirent* item = readdir(stream)) {
    if (std::strcmp(item->d_name, ".") != 0 && std::strcmp(item->d_name, "..") != 0)
      names.emplace_back(item->d_name);
  }
  closedir(stream);
  return names;
}

void scan_directory_contents(int fd, const std::string& relative, const ScanOptions& options,
                             Scan& scan) {
  std::optional<std::vector<std::string>> names = list_names(fd);
  if (!names) {
    scan[relative].problem += "cannot list: " + errno_text(errno) + "; ";
    return;
  }
  std::sort(names->begin(), names->end());
  for (const std::string& name : *names) scan_entry(fd, name, join(relative, name), options, scan);
}

void scan_entry(int dirfd, const std::string& name, const std::string& relative,
                const ScanOptions& options, Scan& scan) {
  Entry& entry = scan[relative];  // std::map: stays valid while children are inserted
  entry.path = relative;
  struct stat st {};
  if (fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    entry.problem += "fstatat: " + errno_text(errno) + "; ";
    return;
  }
  fill_from_stat(entry, st);
  if (options.xattrs) read_xattrs(dirfd, name, entry);
  if (S_ISLNK(st.st_mode)) {
    std::vector<char> target(static_cast<size_t>(st.st_size) + 2);
    const ssize_t n = readlinkat(dirfd, name.c_str(), target.data(), target.size());
    if (n < 0) entry.problem += "readlinkat: " + errno_text(errno) + "; ";
    else entry.link_target.assign(target.data(), static_cast<size_t>(n));
  } else if (S_ISREG(st.st_mode) && options.contents) {
    const int fd = openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
      entry.problem += "open: " + errno_text(errno) + "; ";
    } else {
      std::string problem;
      if (!hash_file(fd, &entry.content_hash, &entry.data_map, &problem)) entry.problem += problem + "; ";
      close(fd);
    }
  } else if (S_ISDIR(st.st_mode)) {
    const int fd = openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      entry.problem += "open directory: " + errno_text(errno) + "; ";
      return;
    }
    scan_directory_contents(fd, relative, options, scan);
    close(fd);
  }
}

void compare_entry(const Entry& a, const Entry& b, const CompareOptions& options, bool is_root,
                   std::vector<std::string>& out) {
  const std::string where = "'" + printable(a.path) + "'";
  if (!b.problem.empty()) out.push_back(where + ": copy unreadable: " + b.problem);
  if (a.type != b.type) {
    out.push_back(where + ": type differs: source " + type_name(a.type) + ", copy " + type_name(b.type));
    return;
  }
  const bool metadata = !is_root || options.root_metadata;
  if (metadata && a.mode != b.mode && a.type != S_IFLNK)
    out.push_back(where + ": mode differs: source " + octal(a.mode) + ", copy " + octal(b.mode));
  if (metadata && options.owner && (a.uid != b.uid || a.gid != b.gid)) {
    out.push_back(where + ": owner differs: source " + std::to_string(a.uid) + ":" + std::to_string(a.gid) +
                  ", copy " + std::to_string(b.uid) + ":" + std::to_string(b.gid));
  }
  if (metadata && options.mtime && (a.mtime.tv_sec != b.mtime.tv_sec || a.mtime.tv_nsec != b.mtime.tv_nsec))
    out.push_back(where + ": mtime differs: source " + time_text(a.mtime) + ", copy " + time_text(b.mtime));
  if (options.ctime && (a.ctime.tv_sec != b.ctime.tv_sec || a.ctime.tv_nsec != b.ctime.tv_nsec))
    out.push_back(where + ": ctime differs: before " + time_text(a.ctime) + ", after " + time_text(b.ctime));
  if (options.inode && a.type != S_IFDIR && a.inode != b.inode)
    out.push_back(where + ": inode differs (the entry was replaced): before " + std::to_string(a.inode) +
                  ", after " + std::to_string(b.inode));
  if (a.type == S_IFREG && options.contents) {
    if (a.size != b.size) {
      out.push_back(where + ": size differs: source " + std::to_string(a.size) + ", copy " + std::to_string(b.size));
    } else if (a.content_hash != b.content_hash) {
      out.push_back(where + ": content differs (xxh3 of " + std::to_string(a.size) + " bytes)");
    }
    if (options.hole_map && a.data_map != b.data_map)
      out.push_back(where + ": data/hole map differs: source " + map_text(a.data_map) + ", copy " +
                    map_text(b.data_map));
  }
  if (a.type == S_IFLNK && a.link_target != b.link_target)
    out.push_back(where + ": symlink target differs: source '" + printable(a.link_target) + "', copy '" +
                  printable(b.link_target) + "'");
  if ((a.type == S_IFCHR || a.type == S_IFBLK) && a.rdev != b.rdev)
    out.push_back(where + ": device number differs");
  if (metadata && options.xattrs && a.xattrs != b.xattrs) {
    for (const auto& [key, value] : a.xattrs) {
      auto it = b.xattrs.find(key);
      if (it == b.xattrs.end()) out.push_back(where + ": xattr " + key + " missing in the copy");
      else if (it->second != value)
        out.push_back(where + ": xattr " + key + " differs: source '" + bytes_text(value) + "', copy '" +
                      bytes_text(it->second) + "'");
    }
    for (const auto& [key, value] : b.xattrs) {
      if (a.xattrs.count(key) == 0)
        out.push_back(where + ": extra xattr " + key + "='" + bytes_text(value) + "' in the copy");
    }
  }
}

// Groups of non-directory paths sharing an inode (singletons left out).
std::set<std::vector<std::string>> link_groups(const Scan& scan) {
  std::map<std::pair<uint64_t, uint64_t>, std::vector<std::string>> by_inode;
  for (const auto& [path, entry] : scan) {
    if (entry.type != S_IFDIR && entry.type != 0) by_inode[{entry.device, entry.inode}].push_back(path);
  }
  std::set<std::vector<std::string>> groups;
  for (auto& [key, paths] : by_inode) {
    if (paths.size() > 1) {
      std::sort(paths.begin(), paths.end());
      groups.insert(paths);
    }
  }
  return groups;
}

std::string group_text(const std::vector<std::string>& group) {
  std::string out = "{";
  for (size_t i = 0; i < group.size(); ++i) out += (i ? ", '" : "'") + printable(group[i]) + "'";
  return out + "}";
}

}  // namespace

bool hash_file(int fd, uint64_t* hash, std::vector<std::pair<uint64_t, uint64_t>>* data_map,
               std::string* problem) {
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    *problem = "fstat: " + errno_text(errno);
    return false;
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  data_map->clear();
  uint64_t offset = 0;
  while (offset < size) {
    const off_t data = lseek(fd, static_cast<off_t>(offset), SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;
      *problem = "SEEK_DATA: " + errno_text(errno);
      return false;
    }
    off_t hole = lseek(fd, data, SEEK_HOLE);
    if (hole < 0) {
      *problem = "SEEK_HOLE: " + errno_text(errno);
      return false;
    }
    const uint64_t end = std::min<uint64_t>(static_cast<uint64_t>(hole), size);
    data_map->emplace_back(static_cast<uint64_t>(data), end);
    offset = end;
  }
  // Allocated once: a fresh 1 MiB vector per file dominates a scan of
  // thousands of small files in unoptimized (sanitizer) builds.
  static const std::vector<uint8_t> zeros(1 << 20, 0);
  static std::vector<uint8_t> buffer(1 << 20);
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  uint64_t position = 0;
  auto feed_zeros = [&](uint64_t until) {
    while (position < until) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(zeros.size(), until - position));
      XXH3_64bits_update(state, zeros.data(), n);
      position += n;
    }
  };
  bool ok = true;
  for (const auto& [start, end] : *data_map) {
    feed_zeros(start);
    while (position < end) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(buffer.size(), end - position));
      const ssize_t n = pread(fd, buffer.data(), want, static_cast<off_t>(position));
      if (n <= 0) {
        *problem = n < 0 ? "pread: " + errno_text(errno) : "pread: unexpected end of file";
        ok = false;
        break;
      }
      XXH3_64bits_update(state, buffer.data(), static_cast<size_t>(n));
      position += static_cast<uint64_t>(n);
    }
    if (!ok) break;
  }
  if (ok) feed_zeros(size);
  *hash = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  return ok;
}

Scan scan_tree(const std::string& root, const ScanOptions& options) {
  Scan scan;
  Entry& entry = scan["."];
  entry.path = ".";
  struct stat st {};
  if (fstatat(AT_FDCWD, root.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    entry.problem = "cannot stat the root " + printable(root) + ": " + errno_text(errno);
    return scan;
  }
  if (!S_ISDIR(st.st_mode)) {
    // A single entry: scan it from its parent directory.
    const auto slash = root.rfind('/');
    const std::string parent = slash == std::string::npos ? "." : (slash == 0 ? "/" : root.substr(0, slash));
    const std::string name = slash == std::string::npos ? root : root.substr(slash + 1);
    scan.clear();
    const int parent_fd = open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (parent_fd < 0) {
      scan["."].path = ".";
      scan["."].problem = "cannot open " + printable(parent) + ": " + errno_text(errno);
      return scan;
    }
    scan_entry(parent_fd, name, ".", options, scan);
    close(parent_fd);
    return scan;
  }
  const int fd = open(root.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    entry.problem = "cannot open the root " + printable(root) + ": " + errno_text(errno);
    return scan;
  }
  fill_from_stat(entry, st);
  if (options.xattrs) read_xattrs(fd, "", entry);
  scan_directory_contents(fd, ".", options, scan);
  close(fd);
  return scan;
}

CompareOptions archive_compare_options() {
  CompareOptions options;
  options.owner = geteuid() == 0;
  return options;
}

std::vector<std::string> compare_scans(const Scan& expected, const Scan& actual, const CompareOptions& options) {
  std::vector<std::string> out;
  for (const auto& [path, a] : expected) {
    if (!a.problem.empty()) out.push_back("'" + printable(path) + "': source unreadable: " + a.problem);
    auto it = actual.find(path);
    if (it == actual.end()) {
      out.push_back("'" + printable(path) + "': missing in the copy (" + type_name(a.type) + ")");
      continue;
    }
    compare_entry(a, it->second, options, path == ".", out);
  }
  for (const auto& [path, b] : actual) {
    if (expected.count(path) == 0)
      out.push_back("'" + printable(path) + "': extra in the copy (" + type_name(b.type) + ")");
  }
  if (options.link_groups) {
    const auto a_groups = link_groups(expected);
    const auto b_groups = link_groups(actual);
    for (const auto& group : a_groups) {
      if (b_groups.count(group) == 0)
        out.push_back("hard-link group " + group_text(group) + " is not one group in the copy");
    }
    for (const auto& group : b_groups) {
      if (a_groups.count(group) == 0)
        out.push_back("hard-link group " + group_text(group) + " in the copy is not one group in the source");
    }
  }
  return out;
}

std::vector<std::string> compare_trees(const std::string& expected, const std::string& actual,
                                       const CompareOptions& options) {
  ScanOptions scan_options;
  scan_options.contents = options.contents;
  scan_options.xattrs = options.xattrs;
  return compare_scans(scan_tree(expected, scan_options), scan_tree(actual, scan_options), options);
}

std::vector<std::string> temporaries_in(const Scan& scan) {
  std::vector<std::string> found;
  for (const auto& [path, entry] : scan) {
    const auto slash = path.rfind('/');
    const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
    if (name.rfind(".ringcp-", 0) == 0) found.push_back(printable(path));
  }
  return found;
}

std::string format_differences(const std::vector<std::string>& differences, size_t limit) {
  std::ostringstream out;
  out << differences.size() << " difference(s)";
  for (size_t i = 0; i < differences.size() && i < limit; ++i) out << "\n  " << differences[i];
  if (differences.size() > limit) out << "\n  ...";
  return out.str();
}

std::string printable(const std::string& path) {
  std::string out;
  size_t start = 0;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string::npos) slash = path.size();
    const std::string component = path.substr(start, slash - start);
    std::string shown;
    for (unsigned char c : component.size() > 40 ? component.substr(0, 12) : component) {
      if (c >= 0x20 && c < 0x7f && c != '\\') {
        shown += static_cast<char>(c);
      } else {
        char hex[8];
        std::snprintf(hex, sizeof hex, "\\x%02x", c);
        shown += hex;
      }
    }
    if (component.size() > 40) shown += "...[" + std::to_string(component.size()) + " bytes]";
    out += shown;
    if (slash == path.size()) break;
    out += '/';
    start = slash + 1;
  }
  return out;
}

namespace {
// Removes everything in the directory open at `fd` (which stays open).
void remove_children(int fd) {
  if (const auto children = list_names(fd))
    for (const std::string& child : *children) remove_tree_at(fd, child);
}
}  // namespace

void remove_tree_at(int dirfd, const std::string& name) {
  struct stat st {};
  if (fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    fchmodat(dirfd, name.c_str(), 0700, 0);
    const int fd = openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
      remove_children(fd);
      close(fd);
    }
    unlinkat(dirfd, name.c_str(), AT_REMOVEDIR);
  } else {
    unlinkat(dirfd, name.c_str(), 0);
  }
}

void clear_directory(const std::string& directory) {
  const int fd = open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return;
  remove_children(fd);
  close(fd);
}

}  // namespace ringio::itest
