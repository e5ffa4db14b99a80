// RINGIO_STATS=1: the one stderr line every backend prints on teardown.
#pragma once

#include "ringio/backend.hpp"

namespace ringio {

// Prints "acquires=... buffers=B ... backend=K fixed_reads=..." when
// RINGIO_STATS=1; nothing otherwise.
void print_teardown_stats(BackendKind kind, const RegisteredBufferStats& pool, const OpCounts& ops);

}  // namespace ringio
