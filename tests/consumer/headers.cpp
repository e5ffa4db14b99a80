// Every public header of the I/O library compiles on its own from the
// installed include directory (no src/ on the include path).
#include "ringio/adaptive_buffer_sizer.hpp"
#include "ringio/backend.hpp"
#include "ringio/buffer_group.hpp"
#include "ringio/config.hpp"
#include "ringio/kernel_support.hpp"
#include "ringio/pinned_memory_budget.hpp"
#include "ringio/result.hpp"
