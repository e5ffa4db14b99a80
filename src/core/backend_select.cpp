// Backend selection: the best backend the machine offers, posix last, every
// fallback explained in one line.
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "posix/posix_backend.hpp"
#include "ringio/backend.hpp"
#include "ringio/kernel_support.hpp"
#include "uring/uring_backend.hpp"

namespace ringio {

namespace {

bool uring_disabled_by_environment() {
  const char* value = std::getenv("RINGIO_DISABLE_IOURING");
  return value != nullptr && std::strcmp(value, "1") == 0;
}

// Why io_uring cannot be used here, or empty when it can.
std::string why_not_uring() {
  if (uring_disabled_by_environment()) return "io_uring disabled by RINGIO_DISABLE_IOURING=1";
  const KernelSupport& support = kernel_support();
  if (!support.ring_available()) {
    std::string why = std::string("io_uring_setup failed: ") + std::strerror(support.setup_errno);
    switch (support.setup_errno) {
      case ENOSYS: why += " (kernel without io_uring, or a seccomp filter)"; break;
      case EPERM: why += " (io_uring_disabled sysctl, or a seccomp filter)"; break;
      case ENOMEM: why += " (RLIMIT_MEMLOCK too small for a ring)"; break;
      default: break;
    }
    return why;
  }
  if (std::string missing = support.missing_required_opcodes(); !missing.empty())
    return "io_uring lacks required opcodes: " + missing;
  return {};
}

}  // namespace

std::vector<BackendKind> available_backends() {
  std::vector<BackendKind> kinds;
  if (why_not_uring().empty()) kinds.push_back(BackendKind::uring);
  kinds.push_back(BackendKind::posix);
  return kinds;
}

Result<BackendSelection> make_backend(EngineChoice choice, const IoConfig& config,
                                      BufferAllocator allocator) {
  if (Status valid = config.validate(); !valid) return valid.error();
  BackendSelection selection;
  auto choose_posix = [&](std::string why) {
    selection.kind = BackendKind::posix;
    selection.reason = why;
    selection.backend = std::make_unique<posix::PosixBackend>(config, allocator, std::move(why));
    return std::move(selection);
  };

  if (choice == EngineChoice::posix) return choose_posix("posix backend requested");

  if (std::string why = why_not_uring(); !why.empty()) {
    if (choice == EngineChoice::uring) {
      Error error = make_error("uring backend", kernel_support().setup_errno);
      error.detail = why;
      return error;
    }
    return choose_posix(why);
  }

  // The probe's ring is not this one: a larger ring can still be refused
  // (RLIMIT_MEMLOCK, descriptors). Whatever the reason, `automatic` copies
  // on without io_uring.
  auto uring = uring::UringBackend::create(config, allocator);
  if (!uring) {
    if (choice == EngineChoice::uring) return uring.error();
    return choose_posix("io_uring ring setup failed: " + uring.error().message());
  }
  selection.kind = BackendKind::uring;
  selection.reason = choice == EngineChoice::uring ? "uring backend requested"
                                                   : "io_uring available: " + kernel_support().describe();
  selection.backend = std::move(uring.value());
  return selection;
}

}  // namespace ringio
