// Parsing of ringcp's option values, kept in the library so that it is unit
// tested and fuzzed on its own.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "ringio/copy.hpp"

namespace ringio {

// "64K", "1M", "2G", "65536" -> bytes (K/M/G are powers of 1024); nullopt
// for anything else, for signs, and for values that overflow.
std::optional<uint64_t> parse_size(const std::string& text);

// A plain decimal count in [min_value, max_value], nothing else.
std::optional<uint32_t> parse_count(const std::string& text, uint32_t min_value, uint32_t max_value);

// "mode,ownership,timestamps,links,xattr,all" (context is taken as xattr):
// sets each to `value`. false with *bad_item set for an unknown item.
bool apply_preserve_list(const std::string& list, bool value, PreserveSet& preserve,
                         std::string* bad_item);

}  // namespace ringio
