#include "copy/publisher.hpp"

#include <dirent.h>  // DT_* entry types
#include <fcntl.h>
#include <linux/stat.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstdio>
#include <vector>

#include "copy/directory_reader.hpp"

namespace ringio::copy {

namespace {

// The check characters make the name its own marker where a filesystem
// keeps no xattrs (vfat, exFAT): a temporary a killed run left there can
// still be told from a file that merely looks like one (1 in 36^4 would
// pass by chance).
constexpr char kTempAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
constexpr size_t kTempRandomChars = 8;
constexpr size_t kTempCheckChars = 4;
constexpr std::string_view kTempSuffix = ".tmp";

std::string temp_name_check(std::string_view random) {
  uint64_t hash = XXH3_64bits_withSeed(random.data(), random.size(), 0x72696e67637074ull /* "ringcpt" */);
  std::string check;
  for (size_t i = 0; i < kTempCheckChars; ++i, hash /= 36) check += kTempAlphabet[hash % 36];
  return check;
}

}  // namespace

bool is_ringcp_attribute(const char* name) { return std::string_view(name).starts_with("user.ringcp."); }

bool is_checked_temp_name(std::string_view name) {
  const std::string_view prefix = kTempPrefix;
  if (name.size() != prefix.size() + kTempRandomChars + kTempCheckChars + kTempSuffix.size() ||
      !name.starts_with(prefix) || !name.ends_with(kTempSuffix))
    return false;
  const std::string_view random = name.substr(prefix.size(), kTempRandomChars);
  return name.substr(prefix.size() + kTempRandomChars, kTempCheckChars) == temp_name_check(random);
}

Publisher::Publisher(IoQueue& queue, Reporter& reporter)
    : queue_(queue), reporter_(reporter), use_empty_path_link_(geteuid() == 0) {
  std::random_device seed;
  random_.seed((uint64_t{seed()} << 32) | seed());
}

std::string Publisher::temp_name() {
  std::string random;
  for (size_t i = 0; i < kTempRandomChars; ++i) random += kTempAlphabet[random_() % 36];
  return kTempPrefix + random + temp_name_check(random) + std::string(kTempSuffix);
}

Request Publisher::open_target(int dirfd, bool named, std::string* temp_name_out) {
  if (!named) return Request::openat(dirfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, kTempFileMode);
  *temp_name_out = temp_name();
  return Request::openat(dirfd, temp_name_out->c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
}

// linkat(AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH; others link the
// descriptor's /proc name, following it.
Request Publisher::link_into(int fd, int dirfd, const char* name, ProcPath& proc_path) const {
  if (use_empty_path_link_) return Request::linkat(fd, "", dirfd, name, AT_EMPTY_PATH);
  return Request::linkat(AT_FDCWD, proc_fd_path(fd, proc_path), dirfd, name, AT_SYMLINK_FOLLOW);
}

const char* proc_fd_path(int fd, ProcPath& path) {
  std::snprintf(path.text, sizeof path.text, "/proc/self/fd/%d", fd);
  return path.text;
}

bool Publisher::has_attribute(int fd, const char* name) {
  return queue_.execute_now(Request::fgetxattr(fd, name, nullptr, 0)) >= 0;
}

// A directory with a default ACL gives new files their permissions from the
// ACL, not from the umask. Unknown counts as yes.
bool Publisher::has_default_acl(int dirfd) {
  const int64_t rc = queue_.execute_now(Request::fgetxattr(dirfd, "system.posix_acl_default", nullptr, 0));
  return rc >= 0 || (rc != -ENODATA && rc != -EOPNOTSUPP);
}

bool Publisher::set_marker(int fd, const char* name) {
  return queue_.execute_now(Request::fsetxattr(fd, name, "1", 1)) == 0;
}

int Publisher::remove_marker(int fd, const char* name) {
  int64_t rc = queue_.execute_now(Request::fremovexattr(fd, name));
  if (rc == 0 || rc == -ENODATA) return 0;
  if (rc != -EACCES) return int(-rc);
  struct statx st {};
  rc = queue_.execute_now(Request::statx(fd, "", AT_EMPTY_PATH, STATX_MODE, &st));
  if (rc == 0) rc = queue_.execute_now(Request::fchmod(fd, (st.stx_mode & 07777) | S_IWUSR));
  if (rc < 0) return int(-rc);
  rc = queue_.execute_now(Request::fremovexattr(fd, name));
  queue_.execute_now(Request::fchmod(fd, st.stx_mode & 07777));
  return rc == 0 || rc == -ENODATA ? 0 : int(-rc);
}

// False when the entry could not be checked or cleaned (reported).
bool Publisher::clean_entry(int dirfd, const std::string& display, std::string_view name, bool temporary,
                            std::vector<std::string>* stale) {
  const std::string entry(name);
  const std::string shown = quote_name(join_path(display, entry));
  const int64_t file = queue_.execute_now(
      Request::openat(dirfd, entry.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
  // Gone since it was listed, or a symlink: not ours. Else a temporary that
  // cannot be checked is left, and said.
  if (file == -ENOENT || file == -ELOOP || (file < 0 && !temporary)) return true;
  if (file < 0) {
    reporter_.error("cannot check temporary " + shown + ": " + errno_text(int(-file)));
    return false;
  }
  const int fd = int(file);
  const int64_t marked = queue_.execute_now(Request::fgetxattr(fd, kTempMarkerXattr, nullptr, 0));
  bool cleaned = true;
  // Without xattrs on this filesystem the name's check is the marker.
  if ((marked >= 0 || marked == -EOPNOTSUPP) && temporary) {
    if (marked >= 0 || is_checked_temp_name(name)) stale->push_back(entry);
  } else if (marked >= 0) {
    const int code = remove_marker(fd, kTempMarkerXattr);
    if (code != 0) reporter_.error("cannot remove the temporary marker from " + shown + ": " + errno_text(code));
    else reporter_.verbose("removed a stale temporary marker from " + shown);
    cleaned = code == 0;
  } else if (marked != -ENODATA && marked != -EOPNOTSUPP) {
    reporter_.error("cannot check " + std::string(temporary ? "temporary " : "") + shown + ": " +
                    errno_text(int(-marked)));
    cleaned = false;
  }
  queue_.execute_now(Request::close(fd));
  return cleaned;
}

bool Publisher::remove_stale_temporaries(int dirfd, const std::string& display) {
  const bool replacing = has_attribute(dirfd, kReplacingXattr);
  // A fresh open file description: a dup would share the read position.
  const int64_t fd = queue_.execute_now(Request::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd < 0) {
    reporter_.error("cannot read directory " + quote_name(display) + ": " + errno_text(int(-fd)));
    return false;
  }
  std::vector<std::string> stale;
  DirectoryReader reader(queue_, int(fd));
  DirectoryEntry entry;
  int rc;
  bool all_clean = true;
  while ((rc = reader.next(&entry)) > 0) {
    const bool temporary = entry.name.starts_with(kTempPrefix);
    if (!temporary && (!replacing || (entry.type != DT_REG && entry.type != DT_UNKNOWN))) continue;
    all_clean &= clean_entry(dirfd, display, entry.name, temporary, &stale);
  }
  queue_.execute_now(Request::close(int(fd)));
  if (rc < 0) reporter_.error("cannot read directory " + quote_name(display) + ": " + errno_text(-rc));
  // Only once every entry was seen and cleaned: else the next run must look again.
  if (replacing && rc == 0 && all_clean) queue_.execute_now(Request::fremovexattr(dirfd, kReplacingXattr));
  for (const std::string& name : stale) {
    const int64_t removed = queue_.execute_now(Request::unlinkat(dirfd, name.c_str(), 0));
    const std::string shown = quote_name(join_path(display, name));
    if (removed == 0) reporter_.verbose("removed stale temporary " + shown);
    else if (removed != -ENOENT) reporter_.error("cannot remove stale temporary " + shown + ": " + errno_text(int(-removed)));
  }
  return rc == 0;
}

}  // namespace ringio::copy
