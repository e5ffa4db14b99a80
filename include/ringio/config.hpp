// IoConfig: what a ring and its buffer pool are made of. Presets follow the
// design contract (DESIGN.md section 5); every setter-free field is checked by
// validate(), which names the field and the rule it broke.
#pragma once

#include <cstdint>

#include "ringio/result.hpp"

namespace ringio {

enum class AdaptiveBuffers : uint8_t { automatic, off };

// How a group resizes its registered table (DESIGN.md section 3). `sparse`
// needs IORING_REGISTER_BUFFERS2 + BUFFERS_UPDATE and falls back to
// `reregister` when the kernel lacks them.
enum class ResizeMode : uint8_t { sparse, reregister };

struct IoConfig {
  uint32_t sq_entries = 64;
  uint32_t buffer_size_bytes = 64 * 1024;
  uint32_t initial_buffers = 8;
  // Upper bound of the pool; the effective bound is also limited by the
  // kernel's registered-buffer cap and the pinned-memory budget.
  uint32_t max_buffers = 64;
  uint32_t min_buffers = 2;

  bool direct_io = false;
  bool register_files = false;
  bool register_buffers = true;
  bool sqpoll = false;
  uint32_t sqpoll_idle_ms = 1000;
  AdaptiveBuffers adaptive_buffers = AdaptiveBuffers::automatic;
  ResizeMode resize_mode = ResizeMode::sparse;
  // Cap on io-wq workers per ring (bounded and unbounded); 0 leaves the
  // kernel default. Parallel file creation contends inside the filesystem.
  uint32_t iowq_max_workers = 0;

  static IoConfig defaults();
  static IoConfig for_large_files();
  static IoConfig for_small_files();

  // Ok, or an Error whose detail says which field is wrong and why.
  Status validate() const;
};

inline constexpr uint32_t kMaxBufferSizeBytes = 1u << 30;  // kernel cap per buffer
inline constexpr uint32_t kPageSizeBytes = 4096;

}  // namespace ringio
