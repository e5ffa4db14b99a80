// libFuzzer target for what ringcp does with untrusted text before any I/O:
// option values (parse_size, parse_count, --preserve lists), the I/O
// configuration they produce (IoConfig::validate), the placement rules
// (plan_copy, on paths under a directory that does not exist, so that its
// stat(2) calls are cheap ENOENTs and touch nothing), and the quoting of
// names in messages and JSON (quote_name, escape_invalid_utf8).
//
// Oracles, not re-implementations: a quoted name contains no control byte
// and reads back (shell rules) as the original; an escaped text is valid
// UTF-8 and equals the input when the input was valid UTF-8; a parsed size
// is the digits times the suffix without overflow; an accepted IoConfig
// satisfies the documented rules.
//
// Built with clang (-fsanitize=fuzzer,address,undefined) by tests/fuzz/
// CMakeLists.txt. clang 14 cannot compile libstdc++ 12's <ranges> views;
// nothing included here pulls them in.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "ringio/config.hpp"
#include "ringio/copy.hpp"
#include "copy/options_parse.hpp"

namespace {

[[noreturn]] void fail(const char* what, const std::string& input) {
  std::fprintf(stderr, "oracle failed: %s\ninput (%zu bytes):", what, input.size());
  for (unsigned char c : input) std::fprintf(stderr, " %02x", c);
  std::fprintf(stderr, "\n");
  std::abort();
}

bool valid_utf8(const std::string& text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    size_t length = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
    if (length == 0 || i + length > text.size()) return false;
    uint32_t code = length == 1 ? c : c & (0x7f >> length);
    for (size_t k = 1; k < length; ++k) {
      const auto d = static_cast<unsigned char>(text[i + k]);
      if ((d & 0xc0) != 0x80) return false;
      code = (code << 6) | (d & 0x3f);
    }
    static const uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (code < kMin[length] || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return false;
    i += length;
  }
  return true;
}

// Reads a quote_name() result back with the shell's rules: '...' literal,
// "..." literal (quote_name only double-quotes text without $`\ and "),
// $'...' with \n \t \r \xHH and \' escapes, and a bare \'. Returns false on
// anything else.
bool shell_unquote(const std::string& quoted, std::string* out) {
  size_t i = 0;
  out->clear();
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  while (i < quoted.size()) {
    const char c = quoted[i];
    if (c == '\'') {
      const size_t end = quoted.find('\'', i + 1);
      if (end == std::string::npos) return false;
      out->append(quoted, i + 1, end - i - 1);
      i = end + 1;
    } else if (c == '"') {
      const size_t end = quoted.find('"', i + 1);
      if (end == std::string::npos) return false;
      out->append(quoted, i + 1, end - i - 1);
      i = end + 1;
    } else if (c == '\\' && i + 1 < quoted.size()) {
      out->push_back(quoted[i + 1]);
      i += 2;
    } else if (c == '$' && i + 1 < quoted.size() && quoted[i + 1] == '\'') {
      i += 2;
      for (;;) {
        if (i >= quoted.size()) return false;
        if (quoted[i] == '\'') {
          ++i;
          break;
        }
        if (quoted[i] != '\\') {
          out->push_back(quoted[i++]);
          continue;
        }
        if (i + 1 >= quoted.size()) return false;
        const char e = quoted[i + 1];
        if (e == 'n') out->push_back('\n');
        else if (e == 't') out->push_back('\t');
        else if (e == 'r') out->push_back('\r');
        else if (e == '\'' || e == '\\') out->push_back(e);
        else if (e == 'x') {
          if (i + 3 >= quoted.size() || hex(quoted[i + 2]) < 0 || hex(quoted[i + 3]) < 0) return false;
          out->push_back(static_cast<char>(hex(quoted[i + 2]) * 16 + hex(quoted[i + 3])));
          i += 4;
          continue;
        } else {
          return false;
        }
        i += 2;
      }
    } else {
      return false;  // a bare character: the name was not fully quoted
    }
  }
  return true;
}

void check_quote(const std::string& name) {
  const std::string quoted = ringio::quote_name(name);
  for (unsigned char c : quoted) {
    if (c < 0x20 || c == 0x7f) fail("quote_name left a control byte", name);
  }
  std::string back;
  if (!shell_unquote(quoted, &back)) fail("quote_name output is not shell-quoted text", name);
  if (back != name) fail("quote_name does not read back as the name", name);
}

void check_escape(const std::string& text) {
  const std::string escaped = ringio::escape_invalid_utf8(text);
  if (!valid_utf8(escaped)) fail("escape_invalid_utf8 produced invalid UTF-8", text);
  if (valid_utf8(text) && escaped != text) fail("escape_invalid_utf8 changed valid UTF-8", text);
  if (escaped.size() > text.size() * 4) fail("escape_invalid_utf8 grew more than 4x", text);
}

void check_size(const std::string& text) {
  const std::optional<uint64_t> parsed = ringio::parse_size(text);
  // What the documented grammar accepts: digits, then "", B, K, k, KiB, M,
  // MiB, G, GiB; the product must fit in 64 bits.
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  const std::string suffix = text.substr(digits);
  unsigned shift = 99;
  if (suffix.empty() || suffix == "B") shift = 0;
  else if (suffix == "K" || suffix == "k" || suffix == "KiB") shift = 10;
  else if (suffix == "M" || suffix == "MiB") shift = 20;
  else if (suffix == "G" || suffix == "GiB") shift = 30;
  if (digits == 0 || shift == 99) {
    if (parsed) fail("parse_size accepted text outside its grammar", text);
    return;
  }
  unsigned __int128 value = 0;
  for (size_t i = 0; i < digits && value <= UINT64_MAX; ++i) value = value * 10 + unsigned(text[i] - '0');
  value <<= shift;
  if (value > UINT64_MAX) {
    if (parsed) fail("parse_size accepted an overflowing size", text);
    return;
  }
  // Very long digit strings may be refused even when they fit (leading zeros).
  if (parsed && *parsed != static_cast<uint64_t>(value)) fail("parse_size returned the wrong value", text);
  if (!parsed && digits <= 19) fail("parse_size refused a valid size", text);
}

void check_count(const std::string& text, uint32_t low, uint32_t high) {
  const std::optional<uint32_t> parsed = ringio::parse_count(text, low, high);
  if (!parsed) return;
  if (*parsed < low || *parsed > high) fail("parse_count returned a value out of range", text);
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos)
    fail("parse_count accepted something that is not a plain number", text);
  if (std::to_string(*parsed) != text.substr(std::min(text.find_first_not_of('0'), text.size() - 1)))
    fail("parse_count value does not match its digits", text);
}

void check_preserve(const std::string& list) {
  for (bool value : {true, false}) {
    ringio::PreserveSet preserve;
    if (!value) preserve = ringio::PreserveSet::all();
    std::string bad;
    const bool ok = ringio::apply_preserve_list(list, value, preserve, &bad);
    static const char* kNames[] = {"mode", "ownership", "timestamps", "links", "xattr", "context", "all"};
    if (ok) {
      // Every comma-separated item is a known name.
      size_t start = 0;
      while (start <= list.size()) {
        size_t end = list.find(',', start);
        if (end == std::string::npos) end = list.size();
        const std::string item = list.substr(start, end - start);
        bool known = false;
        for (const char* name : kNames) known |= item == name;
        if (!known && !(item.empty() && end == list.size() && start != 0)) fail("apply_preserve_list accepted an unknown item", list);
        start = end + 1;
      }
    } else {
      // The bad item is one of the list's items (possibly empty, as in
      // "mode,,links"), and not a known name.
      bool is_item = list.empty() && bad.empty();
      size_t start = 0;
      while (start <= list.size()) {
        size_t end = list.find(',', start);
        if (end == std::string::npos) end = list.size();
        is_item |= list.compare(start, end - start, bad) == 0 && end - start == bad.size();
        start = end + 1;
      }
      if (!is_item) fail("apply_preserve_list named a bad item that is not in the list", list);
      for (const char* name : kNames) {
        if (bad == name) fail("apply_preserve_list refused a known name", list);
      }
    }
  }
}

void check_config(const uint8_t* data, size_t size) {
  auto u32 = [&](size_t at) {
    uint32_t value = 0;
    if (at + 4 <= size) std::memcpy(&value, data + at, 4);
    return value;
  };
  ringio::IoConfig config;
  config.sq_entries = u32(0);
  config.buffer_size_bytes = u32(4);
  config.initial_buffers = u32(8) % 20000;
  config.max_buffers = u32(12) % 20000;
  config.min_buffers = u32(16) % 20000;
  config.sqpoll = size > 20 && (data[20] & 1) != 0;
  config.sqpoll_idle_ms = u32(21) % 3;
  const ringio::Status status = config.validate();
  if (!status) {
    if (status.error().message().empty()) fail("IoConfig::validate refused without a message", "");
    return;
  }
  const bool power_of_two = config.buffer_size_bytes != 0 && (config.buffer_size_bytes & (config.buffer_size_bytes - 1)) == 0;
  if (config.sq_entries == 0 || config.sq_entries > 32768 || !power_of_two || config.buffer_size_bytes < 4096 ||
      config.buffer_size_bytes > ringio::kMaxBufferSizeBytes || config.min_buffers == 0 ||
      config.max_buffers < config.min_buffers || config.max_buffers > 16384 ||
      config.initial_buffers < config.min_buffers || config.initial_buffers > config.max_buffers ||
      (config.sqpoll && config.sqpoll_idle_ms == 0))
    fail("IoConfig::validate accepted a config that breaks its rules", "");
}

void check_plan(const std::string& text) {
  // Operands separated by '\n', all under a directory that does not exist.
  static const std::string kBase = "/nonexistent-ringio-fuzz/";
  std::vector<std::string> operands;
  size_t start = 0;
  while (start <= text.size() && operands.size() < 8) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string operand = text.substr(start, end - start);
    operand.erase(std::remove(operand.begin(), operand.end(), '\0'), operand.end());
    operands.push_back(kBase + operand);
    start = end + 1;
  }
  if (operands.size() < 2) return;
  const std::string destination = operands.back();
  operands.pop_back();
  ringio::CopyOptions options;
  options.recursive = true;
  auto roots = ringio::plan_copy(operands, destination, options);
  if (operands.size() > 1) {
    // DST does not exist, so it is not a directory: a usage error.
    if (roots) fail("plan_copy accepted several sources into a missing directory", text);
    return;
  }
  if (!roots) fail("plan_copy refused one missing source (the engine reports it)", text);
  if (roots->size() != 1 || (*roots)[0].source != operands[0] || (*roots)[0].destination != destination)
    fail("plan_copy placed a single source elsewhere than DST", text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t selector = data[0];
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (selector % 7) {
    case 0: check_quote(text); break;
    case 1: check_escape(text); break;
    case 2: check_size(text); break;
    case 3: check_count(text, 1, selector % 2 ? 16384 : 32768); break;
    case 4: check_preserve(text); break;
    case 5: check_config(data + 1, size - 1); break;
    case 6: check_plan(text); break;
  }
  return 0;
}
