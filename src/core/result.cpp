#include "ringio/result.hpp"

#include <cstring>

namespace ringio {

std::string Error::message() const {
  std::string text = operation;
  if (!path.empty()) {
    text += " '";
    text += path;
    text += "'";
  }
  if (code != 0) {
    text += ": ";
    text += std::strerror(code);
  }
  if (!detail.empty()) {
    text += code != 0 ? " (" : ": ";
    text += detail;
    if (code != 0) text += ")";
  }
  return text;
}

Error make_error(std::string operation, int code, std::string path) {
  Error error;
  error.operation = std::move(operation);
  error.code = code;
  error.path = std::move(path);
  return error;
}

}  // namespace ringio
