#include "copy/exclude_matcher.hpp"

#include <fnmatch.h>

namespace ringio::copy {

ExcludeMatcher::ExcludeMatcher(const std::vector<std::string>& patterns) {
  for (const std::string& text : patterns) {
    Pattern pattern;
    pattern.glob = text;
    if (pattern.glob.size() > 1 && pattern.glob.back() == '/') {
      pattern.dirs_only = true;
      pattern.glob.pop_back();
    }
    pattern.anchored = pattern.glob.find('/') != std::string::npos;
    if (pattern.anchored && pattern.glob.front() == '/') pattern.glob.erase(0, 1);
    patterns_.push_back(std::move(pattern));
  }
}

bool ExcludeMatcher::excluded(const std::string& relative, bool is_dir) const {
  const auto slash = relative.rfind('/');
  const std::string leaf = slash == std::string::npos ? relative : relative.substr(slash + 1);
  for (const Pattern& pattern : patterns_) {
    if (pattern.dirs_only && !is_dir) continue;
    const std::string& subject = pattern.anchored ? relative : leaf;
    if (fnmatch(pattern.glob.c_str(), subject.c_str(), 0) == 0) return true;
  }
  return false;
}

}  // namespace ringio::copy
