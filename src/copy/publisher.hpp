// The on-disk safety protocol, in one place. A new file is an unnamed
// O_TMPFILE inode linked under its final name only once complete; where a
// filesystem has no O_TMPFILE, or a file replaces another, it is written
// under a marked temporary name and renamed over the final one. Markers
// tell a later run which temporaries (and which final names, after a kill
// between a rename and the marker's removal) are ours to clean up.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <random>
#include <string>
#include <string_view>

#include "copy/io_queue.hpp"
#include "copy/reporter.hpp"

namespace ringio::copy {

// Marker xattr on named temporaries (replacements, filesystems without
// O_TMPFILE): a later run removes a temporary only when it carries it, or,
// on a filesystem without xattrs, when its name's check characters match.
inline constexpr const char* kTempMarkerXattr = "user.ringcp.partial";
// On a destination directory while a marked file may be under its final
// name there (between a rename over an existing file and the marker's
// removal): after a killed run, the next run removes markers from final
// names in directories that carry it. Neither attribute is ever copied.
inline constexpr const char* kReplacingXattr = "user.ringcp.replacing";
inline constexpr const char* kTempPrefix = ".ringcp-";
// Unnamed targets are created with these bits (less the umask): nobody can
// open an O_TMPFILE inode, and when the source has them too, as most files
// do, no fchmod is needed.
inline constexpr mode_t kTempFileMode = 0666;

// ringcp's own attributes are never copied: a copy of a file a killed run
// left marked would carry the marker on.
bool is_ringcp_attribute(const char* name);
// ".ringcp-" + 8 random characters + 4 that check them + ".tmp".
bool is_checked_temp_name(std::string_view name);

// Room for "/proc/self/fd/N", the name an unnamed file is linked from when
// linkat(AT_EMPTY_PATH) is not allowed.
struct ProcPath {
  char text[40] = {};
};
// "/proc/self/fd/N": the name an open descriptor has in /proc.
const char* proc_fd_path(int fd, ProcPath& path);

class Publisher {
 public:
  Publisher(IoQueue& queue, Reporter& reporter);

  std::string temp_name();
  // Creates the target: unnamed (O_TMPFILE), or under a new temporary name
  // stored in *temp_name when `named`.
  Request open_target(int dirfd, bool named, std::string* temp_name);
  // Gives the open file `fd` the name `name` in `dirfd`.
  Request link_into(int fd, int dirfd, const char* name, ProcPath& proc_path) const;

  // Attribute checks and markers, run now (a fault schedule reaches them).
  bool has_attribute(int fd, const char* name);
  bool has_default_acl(int dirfd);
  bool set_marker(int fd, const char* name);
  // Removes attribute `name`: 0 or an errno (none when it is absent). A
  // read-only copy's owner gets its write bit lent for the call.
  int remove_marker(int fd, const char* name);

  // A killed run can leave marked temporaries in `dirfd`, and marked final
  // names when the directory carries kReplacingXattr: removes them. False
  // when the directory could not be read (reported).
  bool remove_stale_temporaries(int dirfd, const std::string& display);

 private:
  bool clean_entry(int dirfd, const std::string& display, std::string_view name, bool temporary,
                   std::vector<std::string>* stale);

  IoQueue& queue_;
  Reporter& reporter_;
  std::mt19937_64 random_;
  bool use_empty_path_link_;
};

}  // namespace ringio::copy
