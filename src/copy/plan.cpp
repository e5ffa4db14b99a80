// Where each source lands, by cp's rules. Pure path logic plus statx of the
// arguments (run directly through the I/O library); nothing is created here.
#include <fcntl.h>
#include <linux/stat.h>
#include <sys/stat.h>

#include <string>

#include "ringio/copy.hpp"

namespace ringio {

namespace {

Error usage_error(std::string detail) {
  Error error;
  error.operation = "usage";
  error.detail = std::move(detail);
  return error;
}

// "a/b///" -> "a/b"; "/" stays "/".
std::string strip_trailing_slashes(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return path;
}

std::string base_name(const std::string& path) {
  const std::string stripped = strip_trailing_slashes(path);
  const auto slash = stripped.rfind('/');
  return slash == std::string::npos ? stripped : stripped.substr(slash + 1);
}

struct PathInfo {
  bool exists = false;
  bool is_dir = false;
  uint64_t device = 0;
  uint64_t inode = 0;
  bool same_file(const PathInfo& other) const {
    return exists && other.exists && device == other.device && inode == other.inode;
  }
};

PathInfo path_info(const std::string& path, bool follow = true) {
  struct statx st {};
  PathInfo info;
  if (execute_direct(Request::statx(AT_FDCWD, path.c_str(), follow ? 0 : AT_SYMLINK_NOFOLLOW,
                                    STATX_TYPE | STATX_INO, &st)) != 0)
    return info;
  info.exists = true;
  info.is_dir = S_ISDIR(st.stx_mode);
  info.device = (uint64_t{st.stx_dev_major} << 32) | st.stx_dev_minor;
  info.inode = st.stx_ino;
  return info;
}

// True when `directory` (with include_self) or one of its ancestors is
// `outer`: followed up by "..", as the kernel resolves it (symlinks and
// mount points included).
bool lies_below(const std::string& directory, const PathInfo& outer, bool include_self) {
  std::string path = directory;
  PathInfo current = path_info(path);
  if (!current.exists) return false;
  if (include_self && current.same_file(outer)) return true;
  for (int depth = 0; depth < 4096; ++depth) {
    path += "/..";
    const PathInfo up = path_info(path);
    if (!up.exists || up.same_file(current)) return false;  // the root is its own parent
    if (up.same_file(outer)) return true;
    current = up;
  }
  return false;
}

// The directory that holds `path` ("." for a bare name).
std::string parent_of(const std::string& path) {
  const std::string stripped = strip_trailing_slashes(path);
  const auto slash = stripped.rfind('/');
  return slash == std::string::npos ? "." : (slash == 0 ? "/" : stripped.substr(0, slash));
}

}  // namespace

Result<std::vector<CopyRoot>> plan_copy(const std::vector<std::string>& sources,
                                        const std::string& destination,
                                        const CopyOptions& options) {
  if (sources.empty()) return usage_error("missing destination file operand after '" + destination + "'");
  const PathInfo target = path_info(destination);
  const bool target_is_dir = target.is_dir;
  if (sources.size() > 1 && !target_is_dir) {
    return usage_error("target " + quote_name(destination) + " is not a directory");
  }

  std::vector<CopyRoot> roots;
  for (const std::string& source : sources) {
    const bool follow = options.symlinks != SymlinkMode::no_dereference;
    const PathInfo st = path_info(source, follow);
    if (!st.exists) {
      // Reported by the engine as a per-entry error, like cp does.
      roots.push_back({source, target_is_dir ? strip_trailing_slashes(destination) + "/" + base_name(source)
                                             : destination});
      continue;
    }
    CopyRoot root;
    root.source = source;
    const std::string name = base_name(source);
    if (target_is_dir) {
      root.destination = strip_trailing_slashes(destination);
      if (name != "." && name != "/") root.destination += "/" + name;
    } else {
      root.destination = destination;
    }
    if (st.is_dir && options.recursive) {
      // Refuse a directory into itself: the destination (or the directory
      // that will hold it) lies inside the source.
      const std::string leaf = base_name(root.destination);
      if (lies_below(parent_of(root.destination), st, leaf != ".")) {
        return usage_error("cannot copy a directory, " + quote_name(source) + ", into itself, " +
                           quote_name(root.destination));
      }
    }
    const PathInfo dest = path_info(root.destination);
    if ((!st.is_dir || options.recursive) && dest.same_file(st)) {
      return usage_error(quote_name(source) + " and " + quote_name(root.destination) + " are the same file");
    }
    // A directory without -r stays a root: the engine reports "omitting
    // directory" and the exit status says something was not copied.
    if (st.is_dir && options.recursive && dest.exists && !dest.is_dir) {
      return usage_error("cannot overwrite non-directory " + quote_name(root.destination) + " with directory " +
                         quote_name(source));
    }
    roots.push_back(std::move(root));
  }
  return roots;
}

}  // namespace ringio
