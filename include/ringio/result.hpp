// Errors as values at the library boundary: the operation, the errno and the
// path(s) it concerned. g++ 12 has no std::expected, so this is a small one.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace ringio {

struct Error {
  std::string operation;  // "open", "io_uring_setup", "register buffers", ...
  int code = 0;           // a positive errno value; 0 for errors with no errno
  std::string path;       // empty when the operation has no path
  std::string detail;     // extra words for errors that errno cannot express

  // "open 'a/b': Permission denied" / "invalid config: buffer size ..."
  std::string message() const;
};

Error make_error(std::string operation, int code, std::string path = {});

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::move(value)) {}           // NOLINT: implicit by design
  Result(Error error) : state_(std::move(error)) {}       // NOLINT: implicit by design

  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & {
    assert(ok());
    return std::get<0>(state_);
  }
  T&& value() && {
    assert(ok());
    return std::get<0>(std::move(state_));
  }
  const T& value() const& {
    assert(ok());
    return std::get<0>(state_);
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }

  const Error& error() const {
    assert(!ok());
    return std::get<1>(state_);
  }

 private:
  std::variant<T, Error> state_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), failed_(true) {}  // NOLINT: implicit by design

  bool ok() const { return !failed_; }
  explicit operator bool() const { return ok(); }
  const Error& error() const {
    assert(failed_);
    return error_;
  }

 private:
  Error error_;
  bool failed_ = false;
};

using Status = Result<void>;

}  // namespace ringio
