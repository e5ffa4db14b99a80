#include "core/teardown_stats.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace ringio {

void print_teardown_stats(BackendKind kind, const RegisteredBufferStats& pool, const OpCounts& ops) {
  const char* env = std::getenv("RINGIO_STATS");
  if (env == nullptr || std::strcmp(env, "1") != 0) return;
  std::fprintf(stderr,
               "%s backend=%s fixed_reads=%llu fixed_writes=%llu plain_reads=%llu plain_writes=%llu "
               "ring_metadata_ops=%llu inline_metadata_ops=%llu\n",
               format_stats_line(pool).c_str(), backend_name(kind),
               static_cast<unsigned long long>(ops.fixed_reads),
               static_cast<unsigned long long>(ops.fixed_writes),
               static_cast<unsigned long long>(ops.plain_reads),
               static_cast<unsigned long long>(ops.plain_writes),
               static_cast<unsigned long long>(ops.ring_metadata_ops),
               static_cast<unsigned long long>(ops.inline_metadata_ops));
}

}  // namespace ringio
