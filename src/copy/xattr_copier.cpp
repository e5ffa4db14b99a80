#include "copy/xattr_copier.hpp"

#include <cerrno>
#include <cstring>

#include "copy/publisher.hpp"

namespace ringio::copy {

namespace {

// The largest value and list the kernel allows (XATTR_SIZE_MAX, XATTR_LIST_MAX).
constexpr size_t kXattrBytesMax = 65536;

}  // namespace

Request XattrCopier::list(int source_fd) {
  names_.resize(kXattrBytesMax);
  names_length_ = 0;
  cursor_ = 0;
  return Request::flistxattr(source_fd, names_.data(), names_.size());
}

void XattrCopier::listed(int64_t result, Reporter& reporter, const std::string& source_display) {
  // EOPNOTSUPP: the source's filesystem has no attributes to copy.
  if (result < 0 && result != -EOPNOTSUPP)
    reporter.error("cannot list extended attributes of " + quote_name(source_display) + ": " +
                   errno_text(int(-result)));
  names_length_ = result > 0 ? size_t(result) : 0;
  cursor_ = 0;
}

const char* XattrCopier::key() {
  while (cursor_ < names_length_ && is_ringcp_attribute(names_.data() + cursor_)) next_key();
  return cursor_ < names_length_ ? names_.data() + cursor_ : nullptr;
}

void XattrCopier::next_key() { cursor_ += std::strlen(names_.data() + cursor_) + 1; }

Request XattrCopier::get(int source_fd) {
  value_.resize(kXattrBytesMax);
  return Request::fgetxattr(source_fd, names_.data() + cursor_, value_.data(), value_.size());
}

Request XattrCopier::set(int target_fd, uint64_t value_size) {
  return Request::fsetxattr(target_fd, names_.data() + cursor_, value_.data(), value_size);
}

bool XattrCopier::got(int64_t result, Reporter& reporter, const std::string& source_display) {
  if (result >= 0) return true;
  // ENODATA: the attribute was removed since it was listed.
  if (result != -ENODATA)
    reporter.error("cannot read extended attribute " + quote_name(names_.data() + cursor_) + " of " +
                   quote_name(source_display) + ": " + errno_text(int(-result)));
  next_key();
  return false;
}

void XattrCopier::was_set(int64_t result, Reporter& reporter, const std::string& target_display) {
  if (result < 0)
    reporter.error("failed to preserve extended attribute " + quote_name(names_.data() + cursor_) + " for " +
                   quote_name(target_display) + ": " + errno_text(int(-result)));
  next_key();
}

void XattrCopier::copy_now(IoQueue& queue, int source_fd, int target_fd, Reporter& reporter,
                           const std::string& source_display, const std::string& target_display) {
  listed(queue.execute_now(list(source_fd)), reporter, source_display);
  while (key() != nullptr) {
    const int64_t size = queue.execute_now(get(source_fd));
    if (got(size, reporter, source_display)) was_set(queue.execute_now(set(target_fd, uint64_t(size))), reporter, target_display);
  }
}

}  // namespace ringio::copy
