#!/usr/bin/env bash
# LibraryConsumer.io_only_links_without_xxhash (ctest): a program that uses
# only the I/O library builds and links against the installed package with
# no xxhash anywhere.
#
# usage: run.sh CMAKE BUILD_DIR CXX
#
# Installs BUILD_DIR into a temporary prefix, hides libxxhash from pkg-config
# (only liburing.pc and the installed ringio*.pc are visible), then:
#   1. CMake: configures and builds tests/consumer/ with find_package(ringio)
#      and ringio::ringio (its CMakeLists fails if the exported
#      INTERFACE_LINK_LIBRARIES mention xxhash or if ringio::copy appears);
#   2. pkg-config: compiles main.cpp with `pkg-config --static --cflags --libs ringio`;
# and for each: no xxhash on the link line, no XXH symbol in the binary,
# and the binary reads a file to the right byte count and FNV-1a hash.
set -euo pipefail

CMAKE="$1"
BUILD="$2"
CXX="$3"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/ringio-consumer.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "-- $*"; }

step "install $BUILD into $TMP/prefix"
"$CMAKE" --install "$BUILD" --prefix "$TMP/prefix" >"$TMP/install.log" || {
  cat "$TMP/install.log" >&2; fail "cmake --install"; }
RINGIO_PC="$(find "$TMP/prefix" -name ringio.pc -print -quit)"
[[ -n "$RINGIO_PC" ]] || fail "ringio.pc was not installed"
[[ -f "$(dirname "$RINGIO_PC")/ringio-copy.pc" ]] || fail "ringio-copy.pc was not installed"

# pkg-config sees liburing and the installed ringio, nothing else.
mkdir "$TMP/pc"
cp "$(pkg-config --variable=pcfiledir liburing)/liburing.pc" "$TMP/pc/"
export PKG_CONFIG_LIBDIR="$TMP/pc:$(dirname "$RINGIO_PC")"
unset PKG_CONFIG_PATH
if pkg-config --exists libxxhash; then fail "libxxhash is still visible to pkg-config"; fi

# A file to read: several buffers long, with a short last one.
INPUT="$TMP/input"
head -c 1000003 /dev/urandom >"$INPUT"
EXPECTED="$(python3 - "$INPUT" <<'PY'
import sys
h = 14695981039346656037
data = open(sys.argv[1], "rb").read()
for b in data:
    h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
print(f"{len(data)} {h:016x}")
PY
)"

check_binary() {  # name binary link-line-file
  local name="$1" binary="$2" link_line="$3"
  if grep -qi xxhash "$link_line"; then
    cat "$link_line" >&2; fail "$name: the link line mentions xxhash"
  fi
  if nm -C "$binary" | grep -i xxh >&2; then fail "$name: XXH symbols in the binary"; fi
  # The posix backend: the check is about linking, and the posix path
  # pins no memory (other runs on this machine share the memlock account).
  local out
  out="$(RINGIO_DISABLE_IOURING=1 "$binary" "$INPUT")" || fail "$name: exit status $?"
  [[ "$(head -n1 <<<"$out")" == "$EXPECTED" ]] ||
    fail "$name: read '$(head -n1 <<<"$out")', expected '$EXPECTED'"
  echo "$name: ok ($(head -n1 <<<"$out"))"
}

step "CMake consumer: find_package(ringio), ringio::ringio"
GENERATOR=()
command -v ninja >/dev/null && GENERATOR=(-G Ninja)
"$CMAKE" -S "$HERE" -B "$TMP/cmake-build" "${GENERATOR[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_COMPILER="$CXX" -DCMAKE_PREFIX_PATH="$TMP/prefix" \
  -DRINGIO_CONSUMER_EXPECT_NO_COPY=ON >"$TMP/configure.log" 2>&1 || {
  cat "$TMP/configure.log" >&2; fail "consumer configure"; }
grep 'INTERFACE_LINK_LIBRARIES' "$TMP/configure.log"
"$CMAKE" --build "$TMP/cmake-build" --verbose >"$TMP/build.log" 2>&1 || {
  cat "$TMP/build.log" >&2; fail "consumer build"; }
grep -- '-o ringio-consumer' "$TMP/build.log" >"$TMP/cmake-link.txt" ||
  { cat "$TMP/build.log" >&2; fail "no link line in the build log"; }
check_binary "cmake" "$TMP/cmake-build/ringio-consumer" "$TMP/cmake-link.txt"

step "pkg-config consumer: pkg-config --static --cflags --libs ringio"
FLAGS="$(pkg-config --static --cflags --libs ringio)" || fail "pkg-config ringio"
echo "pkg-config --static --cflags --libs ringio: $FLAGS" | tee "$TMP/pc-link.txt"
# shellcheck disable=SC2086  # FLAGS is a list of words
"$CXX" -std=c++20 -O1 -Wall -Wextra -Wpedantic -Wconversion -Werror \
  "$HERE/main.cpp" "$HERE/headers.cpp" -o "$TMP/ringio-consumer-pc" $FLAGS ||
  fail "pkg-config consumer build"
check_binary "pkg-config" "$TMP/ringio-consumer-pc" "$TMP/pc-link.txt"

# The copier's .pc file asks for xxhash (with the system's .pc files back).
COPY_LIBS="$(env -u PKG_CONFIG_LIBDIR PKG_CONFIG_PATH="$(dirname "$RINGIO_PC")" \
  pkg-config --static --libs ringio-copy)" || fail "pkg-config ringio-copy"
echo "pkg-config --static --libs ringio-copy: $COPY_LIBS"
[[ "$COPY_LIBS" == *-lringio_copy*-lringio*-lxxhash* || "$COPY_LIBS" == *-lringio_copy*-lxxhash*-lringio* ]] ||
  fail "ringio-copy.pc: expected -lringio_copy, -lringio and -lxxhash"
echo "PASS"
