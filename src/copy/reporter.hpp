// How the copier's rooms tell the user: one line per problem through the
// caller's callback, counted in the report.
#pragma once

#include <cstring>
#include <string>

#include "ringio/copy.hpp"

namespace ringio::copy {

class Reporter {
 public:
  Reporter(const CopyCallbacks& callbacks, CopyReport& report, int verbosity)
      : callbacks_(callbacks), report_(report), verbosity_(verbosity) {}

  void error(const std::string& message) {
    ++report_.errors;
    if (callbacks_.report_error) callbacks_.report_error(message);
  }
  // A line that is not an error (exit status unchanged).
  void warning(const std::string& message) {
    if (callbacks_.report_error) callbacks_.report_error("warning: " + message);
  }
  void verbose(const std::string& message) {
    if (verbosity_ > 0 && callbacks_.report_verbose) callbacks_.report_verbose(message);
  }
  CopyReport& report() { return report_; }
  const CopyCallbacks& callbacks() const { return callbacks_; }

 private:
  const CopyCallbacks& callbacks_;
  CopyReport& report_;
  int verbosity_;
};

inline std::string errno_text(int code) { return std::strerror(code); }

inline std::string join_path(const std::string& directory, const std::string& name) {
  if (directory.empty()) return name;
  return directory == "/" ? "/" + name : directory + "/" + name;
}

}  // namespace ringio::copy
