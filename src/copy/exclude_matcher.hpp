// --exclude: patterns compiled once, matched against an entry's path
// relative to the copy's root.
#pragma once

#include <string>
#include <vector>

namespace ringio::copy {

class ExcludeMatcher {
 public:
  explicit ExcludeMatcher(const std::vector<std::string>& patterns);

  bool empty() const { return patterns_.empty(); }
  // `relative`: "a/b/c" below the root of the copy.
  bool excluded(const std::string& relative, bool is_dir) const;

 private:
  struct Pattern {
    std::string glob;
    bool dirs_only = false;  // "name/": directories only
    bool anchored = false;   // contains a slash: matched against the whole relative path
  };
  std::vector<Pattern> patterns_;
};

}  // namespace ringio::copy
