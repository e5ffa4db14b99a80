#include "copy/options_parse.hpp"

#include <sstream>

namespace ringio {

namespace {
bool all_digits(const std::string& text) {
  return !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
}
}  // namespace

std::optional<uint64_t> parse_size(const std::string& text) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0 || digits > 19) return std::nullopt;
  uint64_t value = 0;
  for (size_t i = 0; i < digits; ++i) {
    const uint64_t digit = uint64_t(text[i] - '0');
    if (value > (UINT64_MAX - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  const std::string suffix = text.substr(digits);
  unsigned shift = 0;
  if (suffix.empty() || suffix == "B") shift = 0;
  else if (suffix == "K" || suffix == "k" || suffix == "KiB") shift = 10;
  else if (suffix == "M" || suffix == "MiB") shift = 20;
  else if (suffix == "G" || suffix == "GiB") shift = 30;
  else return std::nullopt;
  if (value > (UINT64_MAX >> shift)) return std::nullopt;
  return value << shift;
}

std::optional<uint32_t> parse_count(const std::string& text, uint32_t min_value, uint32_t max_value) {
  if (!all_digits(text) || text.size() > 10) return std::nullopt;
  const uint64_t value = std::stoull(text);
  if (value < min_value || value > max_value) return std::nullopt;
  return static_cast<uint32_t>(value);
}

bool apply_preserve_list(const std::string& list, bool value, PreserveSet& preserve,
                         std::string* bad_item) {
  std::stringstream stream(list);
  std::string item;
  bool any = false;
  while (std::getline(stream, item, ',')) {
    any = true;
    if (item == "mode") {
      preserve.mode = value;
    } else if (item == "ownership") {
      preserve.ownership = value;
    } else if (item == "timestamps") {
      preserve.timestamps = value;
    } else if (item == "links") {
      preserve.links = value;
    } else if (item == "xattr" || item == "context") {
      preserve.xattr = value;
    } else if (item == "all") {
      preserve.mode = preserve.ownership = preserve.timestamps = preserve.links = preserve.xattr = value;
    } else {
      *bad_item = item;
      return false;
    }
  }
  if (!any) *bad_item = list;
  return any;
}

}  // namespace ringio
