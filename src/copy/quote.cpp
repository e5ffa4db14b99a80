// Names in messages and JSON: quoted so that no byte of a file name can
// break a line or a document.
#include <string>

#include "ringio/copy.hpp"

namespace ringio {

namespace {

bool needs_escape(unsigned char c) { return c < 0x20 || c == 0x7f; }

// Length of the valid UTF-8 sequence starting at text[i], or 0.
size_t utf8_sequence_length(const std::string& text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char lead = byte(i);
  size_t length = 0;
  uint32_t min_code = 0;
  if (lead < 0x80) return 1;
  if ((lead & 0xe0) == 0xc0) {
    length = 2;
    min_code = 0x80;
  } else if ((lead & 0xf0) == 0xe0) {
    length = 3;
    min_code = 0x800;
  } else if ((lead & 0xf8) == 0xf0) {
    length = 4;
    min_code = 0x10000;
  } else {
    return 0;
  }
  if (i + length > text.size()) return 0;
  uint32_t code = lead & (0x7f >> length);
  for (size_t k = 1; k < length; ++k) {
    if ((byte(i + k) & 0xc0) != 0x80) return 0;
    code = (code << 6) | (byte(i + k) & 0x3f);
  }
  if (code < min_code || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return 0;
  return length;
}

}  // namespace

std::string quote_name(const std::string& name) {
  // Like GNU cp's shell-escape quoting: 'plain', "it's", and control bytes
  // as $'\n' pieces between quoted runs.
  bool has_control = false;
  bool has_single_quote = false;
  for (unsigned char c : name) {
    has_control |= needs_escape(c);
    has_single_quote |= c == '\'';
  }
  if (!has_control) {
    if (!has_single_quote) return "'" + name + "'";
    bool double_quotable = true;
    for (char c : name) double_quotable &= c != '"' && c != '$' && c != '`' && c != '\\';
    if (double_quotable) return "\"" + name + "\"";
  }
  std::string out = "'";
  for (unsigned char c : name) {
    if (c == '\'') {
      out += "'\\''";
    } else if (needs_escape(c)) {
      static const char kHex[] = "0123456789abcdef";
      out += "'$'\\";
      switch (c) {
        case '\n': out += 'n'; break;
        case '\t': out += 't'; break;
        case '\r': out += 'r'; break;
        default:
          out += 'x';
          out += kHex[c >> 4];
          out += kHex[c & 0xf];
      }
      out += "''";
    } else {
      out += static_cast<char>(c);
    }
  }
  out += "'";
  return out;
}

std::string escape_invalid_utf8(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    const size_t length = utf8_sequence_length(text, i);
    if (length == 0) {
      static const char kHex[] = "0123456789abcdef";
      const auto c = static_cast<unsigned char>(text[i]);
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
      ++i;
    } else {
      out.append(text, i, length);
      i += length;
    }
  }
  return out;
}

}  // namespace ringio
