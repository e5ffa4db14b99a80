// Where each source lands, by cp's rules. Pure path logic plus stat(2) of
// the arguments; nothing is created here.
#include <sys/stat.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
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

std::string real_path(const std::string& path) {
  char resolved[PATH_MAX];
  return realpath(path.c_str(), resolved) != nullptr ? std::string(resolved) : std::string();
}

// True when `inner` is `outer` or lies below it (both absolute, resolved).
bool is_inside(const std::string& inner, const std::string& outer) {
  if (outer.empty() || inner.empty()) return false;
  if (outer == "/") return true;
  return inner == outer || (inner.size() > outer.size() && inner.compare(0, outer.size(), outer) == 0 &&
                            inner[outer.size()] == '/');
}

}  // namespace

Result<std::vector<CopyRoot>> plan_copy(const std::vector<std::string>& sources,
                                        const std::string& destination,
                                        const CopyOptions& options) {
  if (sources.empty()) return usage_error("missing destination file operand after '" + destination + "'");
  struct stat target {};
  const bool target_exists = stat(destination.c_str(), &target) == 0;
  const bool target_is_dir = target_exists && S_ISDIR(target.st_mode);
  if (sources.size() > 1 && !target_is_dir) {
    return usage_error("target " + quote_name(destination) + " is not a directory");
  }

  std::vector<CopyRoot> roots;
  for (const std::string& source : sources) {
    struct stat st {};
    const bool follow = options.symlinks != SymlinkMode::no_dereference;
    if ((follow ? stat(source.c_str(), &st) : lstat(source.c_str(), &st)) != 0) {
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
    if (S_ISDIR(st.st_mode) && options.recursive) {
      // Refuse a directory into itself: the destination (or the directory
      // that will hold it) resolves inside the source.
      const std::string source_real = real_path(source);
      std::string parent = strip_trailing_slashes(root.destination);
      const auto slash = parent.rfind('/');
      parent = slash == std::string::npos ? "." : (slash == 0 ? "/" : parent.substr(0, slash));
      const std::string parent_real = real_path(parent);
      const std::string leaf = base_name(root.destination);
      const std::string dest_real =
          parent_real.empty() ? std::string()
                              : (leaf == "." ? parent_real : (parent_real == "/" ? "/" + leaf : parent_real + "/" + leaf));
      if (is_inside(dest_real, source_real) && dest_real != source_real) {
        return usage_error("cannot copy a directory, " + quote_name(source) + ", into itself, " +
                           quote_name(root.destination));
      }
      struct stat dest_st {};
      if (stat(root.destination.c_str(), &dest_st) == 0 && dest_st.st_dev == st.st_dev &&
          dest_st.st_ino == st.st_ino) {
        return usage_error(quote_name(source) + " and " + quote_name(root.destination) +
                           " are the same file");
      }
    } else if (!S_ISDIR(st.st_mode)) {
      struct stat dest_st {};
      if (stat(root.destination.c_str(), &dest_st) == 0 && dest_st.st_dev == st.st_dev &&
          dest_st.st_ino == st.st_ino) {
        return usage_error(quote_name(source) + " and " + quote_name(root.destination) +
                           " are the same file");
      }
    }
    // A directory without -r stays a root: the engine reports "omitting
    // directory" and the exit status says something was not copied.
    if (S_ISDIR(st.st_mode) && options.recursive) {
      struct stat dest_st {};
      if (stat(root.destination.c_str(), &dest_st) == 0 && !S_ISDIR(dest_st.st_mode)) {
        return usage_error("cannot overwrite non-directory " + quote_name(root.destination) +
                           " with directory " + quote_name(source));
      }
    }
    roots.push_back(std::move(root));
  }
  return roots;
}

}  // namespace ringio
