#!/usr/bin/env bash
# Structure checks on a configured and built tree (default build/release):
#  1. the copier library reaches the kernel only through the Backend: its
#     objects have no undefined references to file-system syscall wrappers;
#  2. no source file in src/ is over 600 lines;
#  3. no function in the copier is over 80 lines (clang-tidy's
#     readability-function-size).
# Exit status: 0 when all hold; each violation is printed.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/release}
status=0

forbidden='open|open64|openat|openat64|statx|stat|stat64|lstat|lstat64|fstat|fstat64|fstatat|fstatat64|__xstat|__lxstat|__fxstat|__fxstatat|read|pread|pread64|write|pwrite|pwrite64|close|closedir|opendir|fdopendir|readdir|readdir64|lseek|lseek64|fcntl|fcntl64|fsync|fdatasync|unlink|unlinkat|rename|renameat|renameat2|link|linkat|mkdir|mkdirat|symlink|symlinkat|readlink|readlinkat|chmod|fchmod|fchmodat|chown|fchown|lchown|fchownat|utimensat|futimens|utimes|getxattr|setxattr|listxattr|removexattr|lgetxattr|lsetxattr|llistxattr|lremovexattr|fgetxattr|fsetxattr|flistxattr|fremovexattr|access|faccessat|mmap|mmap64|munmap|madvise|posix_fadvise|posix_fadvise64|copy_file_range|ioctl|syscall|umask|getrlimit|getrlimit64|setrlimit|setrlimit64|realpath|statfs|fstatfs|fstatfs64|truncate|ftruncate|fallocate|getdents64'
archive=$build/libringio_copy.a
if [[ ! -f $archive ]]; then
  echo "check_structure: $archive not found (build first)"
  exit 2
fi
bad=$(nm -u --format=posix "$archive" 2>/dev/null | awk '{print $1}' | sed 's/@.*//' | grep -Ex "$forbidden" | sort -u)
if [[ -n $bad ]]; then
  echo "copier calls the kernel directly (nm -u $archive):"
  for symbol in $bad; do
    echo "  $symbol: $(nm -A -u "$archive" 2>/dev/null | grep -E " U $symbol(@|$)" | cut -d: -f2 | sort -u | tr '\n' ' ')"
  done
  status=1
fi

while read -r lines file; do
  [[ $file == total ]] && continue
  if ((lines > 600)); then
    echo "$file: $lines lines (limit 600)"
    status=1
  fi
done < <(find src -name '*.cpp' -o -name '*.hpp' | xargs wc -l)

if ! command -v clang-tidy >/dev/null; then
  echo "check_structure: clang-tidy not installed"
  exit 2
fi
sources=$(find src/copy -name '*.cpp' ! -name '*_test.cpp' | sort)
tidy=$(clang-tidy -p "$build" --quiet \
  --checks='-*,readability-function-size' \
  --config='{CheckOptions: [{key: readability-function-size.LineThreshold, value: 80}]}' \
  --warnings-as-errors='readability-function-size' $sources 2>&1)
if grep -q 'readability-function-size' <<<"$tidy"; then
  grep -A1 'readability-function-size' <<<"$tidy" | grep -v '^--$'
  status=1
fi
((status == 0)) && echo "structure: the copier reaches the kernel only through the Backend; files <= 600 lines; copier functions <= 80 lines"
exit $status
