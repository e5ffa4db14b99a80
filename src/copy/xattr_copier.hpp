// One extended-attribute copier for files and directories: list the
// source's names, then get and set each (ringcp's own markers excepted).
// An attribute that cannot be read or set is reported and the rest copied.
#pragma once

#include <string>
#include <vector>

#include "copy/io_queue.hpp"
#include "copy/reporter.hpp"

namespace ringio::copy {

class XattrCopier {
 public:
  // The requests, for a caller that runs them asynchronously.
  Request list(int source_fd);
  // flistxattr's result: the names to copy (EOPNOTSUPP: none; reported otherwise).
  void listed(int64_t result, Reporter& reporter, const std::string& source_display);
  // The next name to copy, or nullptr when all are done.
  const char* key();
  Request get(int source_fd);
  Request set(int target_fd, uint64_t value_size);
  // After get (result) or set (result) of key(): reports a failure, and
  // returns true when the set is to be issued next.
  bool got(int64_t result, Reporter& reporter, const std::string& source_display);
  void was_set(int64_t result, Reporter& reporter, const std::string& target_display);

  // All of it now, for a directory (finished one at a time).
  void copy_now(IoQueue& queue, int source_fd, int target_fd, Reporter& reporter, const std::string& source_display,
                const std::string& target_display);

 private:
  void next_key();

  std::vector<char> names_;  // kept at its full size: no zero-fill per file
  std::vector<char> value_;
  size_t names_length_ = 0;
  size_t cursor_ = 0;
};

}  // namespace ringio::copy
