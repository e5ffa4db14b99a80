// The tree copier behind ringcp: where things land (cp's rules), what is
// preserved, and the pipelined engine that copies on any ringio backend.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ringio/backend.hpp"
#include "ringio/config.hpp"
#include "ringio/result.hpp"

namespace ringio {

enum class SymlinkMode : uint8_t {
  no_dereference,  // -P / -d: copy symlinks as symlinks
  dereference,     // -L: copy what they point at
  command_line,    // -H: follow symlinks named on the command line only
};
enum class SparseMode : uint8_t { automatic, always, never };
enum class ReflinkMode : uint8_t { automatic, always, never };
enum class ClobberMode : uint8_t {
  overwrite,       // default: replace existing files
  no_clobber,      // -n: never replace an existing file
  update_older,    // -u: replace only when the source is newer (or the target is missing)
  skip_unchanged,  // --skip-unchanged: skip when size and mtime match
};

struct PreserveSet {
  // Exact permission bits, setuid/setgid/sticky included. Without it a copy
  // gets the source's bits less the umask, as cp does.
  bool mode = false;
  bool ownership = false;
  bool timestamps = false;
  bool links = false;  // hard links within the copy
  bool xattr = false;
  static PreserveSet all() { return {true, true, true, true, true}; }
};

struct CopyOptions {
  bool recursive = false;
  SymlinkMode symlinks = SymlinkMode::dereference;
  PreserveSet preserve;
  bool one_file_system = false;
  ClobberMode clobber = ClobberMode::overwrite;
  SparseMode sparse = SparseMode::automatic;
  ReflinkMode reflink = ReflinkMode::automatic;
  bool delete_extraneous = false;  // --delete
  bool dry_run = false;
  std::vector<std::string> excludes;  // fnmatch patterns (rsync-style, simplified)
  bool verify = false;
  bool fsync = false;
  // A file of 4 MiB or more that is mostly in the page cache is copied by
  // the kernel (copy_file_range) instead of through the buffer pool.
  bool copy_in_kernel = true;
  int verbosity = 0;  // -v: 1, -q: -1
  // Without --preserve=mode a copy gets the source's bits less this mask, as
  // cp does with the process's umask. The library never reads or changes
  // the process's umask (another thread may be using it): ringcp passes its own.
  uint32_t umask = 022;

  EngineChoice engine = EngineChoice::automatic;
  IoConfig io = IoConfig::defaults();
  uint32_t files_in_flight_max = 64;
  // Directories the walk keeps open at once (two descriptors each): past
  // it, directories it will come back to are closed and opened again by
  // name, so a tree of any depth copies whatever RLIMIT_NOFILE allows.
  uint32_t directories_open_max = 64;
};

// One thing to copy: the source as the user named it and the destination
// path it is copied to (already resolved by plan_copy).
struct CopyRoot {
  std::string source;       // as given ("a/b/", "dir/.")
  std::string destination;  // the path the copy gets
};

// cp's placement rules: DST an existing directory -> each SRC goes inside it
// (SRC/. -> its contents); otherwise DST is the copy of the single SRC.
// Errors are usage errors (exit status 1).
Result<std::vector<CopyRoot>> plan_copy(const std::vector<std::string>& sources,
                                        const std::string& destination,
                                        const CopyOptions& options);

struct CopyProgress {
  std::atomic<uint64_t> files_done{0};
  std::atomic<uint64_t> bytes_done{0};  // bytes written to the destination
};

struct CopyReport {
  uint64_t files_copied = 0;
  uint64_t directories_created = 0;
  uint64_t symlinks_copied = 0;
  uint64_t hard_links_made = 0;
  uint64_t specials_copied = 0;  // FIFOs, devices, sockets
  uint64_t files_skipped = 0;    // -n, -u, --skip-unchanged
  uint64_t entries_deleted = 0;  // --delete
  uint64_t bytes_copied = 0;
  uint64_t files_reflinked = 0;
  uint64_t files_from_mapping = 0;  // large cached files written with O_DIRECT from a mapping
  uint64_t files_in_kernel = 0;     // large cached files copied with copy_file_range
  uint64_t errors = 0;
  bool interrupted = false;
  double seconds = 0;
  BackendKind backend = BackendKind::posix;
  std::string backend_reason;
  std::string backend_description;
  RegisteredBufferStats pool;
  OpCounts ops;
};

// Copies every root. Problems with single entries are reported through
// `report_error` (one line each, without the "ringcp: " prefix) and counted;
// the copy of everything else goes on. A fatal problem (no backend) is an
// Error. `stop` is polled: when it becomes true, no new work starts,
// in-flight work is finished or abandoned, temporaries are removed, and the
// report says interrupted.
struct CopyCallbacks {
  std::function<void(const std::string& message)> report_error;
  std::function<void(const std::string& message)> report_verbose;
  const std::atomic<bool>* stop = nullptr;
  CopyProgress* progress = nullptr;
  // Wraps the selected backend (tests inject faults this way).
  std::function<std::unique_ptr<Backend>(std::unique_ptr<Backend>)> decorate_backend;
};
Result<CopyReport> run_copy(const std::vector<CopyRoot>& roots, const CopyOptions& options,
                            const CopyCallbacks& callbacks);

// 'name' quoted as cp quotes names in messages: control bytes and quotes
// cannot break the line.
std::string quote_name(const std::string& name);
// Valid UTF-8 kept; every byte of an invalid sequence becomes "\xNN".
std::string escape_invalid_utf8(const std::string& text);

}  // namespace ringio
