// Every backend operation as a direct system call (two for set_direct_io,
// and for map_file with advice). The posix backend runs
// all of them this way; the uring backend runs here the operations the ring
// has no opcode for (readlinkat, fchmod, getdents, map_file, ...).
#pragma once

#include <cstdint>

#include "ringio/backend.hpp"

namespace ringio::posix {

// The result as a completion would carry it: >= 0, or -errno.
int64_t execute(const Request& request);

}  // namespace ringio::posix
