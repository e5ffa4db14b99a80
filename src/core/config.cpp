#include "ringio/config.hpp"

#include <bit>
#include <string>

namespace ringio {

IoConfig IoConfig::defaults() { return IoConfig{}; }

IoConfig IoConfig::for_large_files() {
  IoConfig config;
  config.sq_entries = 256;
  config.buffer_size_bytes = 256 * 1024;
  config.initial_buffers = 16;
  return config;
}

IoConfig IoConfig::for_small_files() {
  IoConfig config;
  config.sq_entries = 128;
  config.buffer_size_bytes = 16 * 1024;
  config.initial_buffers = 8;
  return config;
}

namespace {
Status invalid(std::string what) {
  Error error;
  error.operation = "invalid config";
  error.detail = std::move(what);
  return error;
}
}  // namespace

Status IoConfig::validate() const {
  // The kernel rounds SQ entries up to a power of two and caps them at 32768.
  if (sq_entries == 0) return invalid("sq_entries must be at least 1");
  if (sq_entries > 32768) return invalid("sq_entries must be at most 32768");
  if (buffer_size_bytes < kPageSizeBytes)
    return invalid("buffer_size_bytes must be at least 4096 (one page)");
  if (!std::has_single_bit(buffer_size_bytes))
    return invalid("buffer_size_bytes must be a power of two, got " +
                   std::to_string(buffer_size_bytes));
  if (buffer_size_bytes > kMaxBufferSizeBytes)
    return invalid("buffer_size_bytes must be at most 1 GiB (the kernel's per-buffer cap)");
  if (min_buffers == 0) return invalid("min_buffers must be at least 1");
  if (max_buffers < min_buffers) return invalid("max_buffers must be >= min_buffers");
  if (max_buffers > 16384)
    return invalid("max_buffers must be at most 16384 (the kernel's registered-buffer cap)");
  if (initial_buffers < min_buffers || initial_buffers > max_buffers)
    return invalid("initial_buffers must lie in [min_buffers, max_buffers], got " +
                   std::to_string(initial_buffers));
  if (sqpoll && sqpoll_idle_ms == 0) return invalid("sqpoll_idle_ms must be at least 1");
  return {};
}

}  // namespace ringio
