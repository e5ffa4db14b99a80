// The pipelined tree copier. One thread, one backend (ring): the walker
// reads directories with descriptors (so depth is not limited by PATH_MAX),
// every regular file becomes a FileTask whose steps are requests on the
// backend, and file data moves in pool buffers: read into a registered
// buffer, write from the same buffer. Many files and chunks are in flight at
// once, bounded by the pool (a miss parks the file until a buffer returns)
// and by files_in_flight_max.
//
// Safety: new files are unnamed O_TMPFILE inodes linked into place when
// complete; replacements and filesystems without O_TMPFILE use a marked
// temporary name renamed over the target. The source is only ever read.
#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "ringio/copy.hpp"

namespace ringio {

namespace {

using Clock = std::chrono::steady_clock;

// Files at least this large skip the buffer pool when they are mostly in the
// page cache (written with O_DIRECT from a mapping of the source, or copied
// in the kernel), else are read with O_DIRECT where the filesystem allows.
constexpr uint64_t kLargeFileBytes = 4 << 20;
// One unbuffered request moves at most this much: copy_file_range runs on
// the submitting thread, so a piece bounds how long other files wait for it.
constexpr uint64_t kUnbufferedPieceBytes = 8 << 20;
// A request refused with EAGAIN goes again after a pause that doubles with
// each refusal in a row, between these bounds.
constexpr std::chrono::microseconds kRetryPauseMin{50};
constexpr std::chrono::microseconds kRetryPauseMax{4000};

// user_data layout: [tag:8][slot:40][what:16].
enum class Tag : uint8_t { file = 1, chunk = 2, sync = 3 };
uint64_t make_user_data(Tag tag, uint64_t slot, uint16_t what) {
  return (uint64_t{static_cast<uint8_t>(tag)} << 56) | (slot << 16) | what;
}
Tag tag_of(uint64_t user_data) { return static_cast<Tag>(user_data >> 56); }
uint64_t slot_of(uint64_t user_data) { return (user_data >> 16) & ((uint64_t{1} << 40) - 1); }
uint16_t what_of(uint64_t user_data) { return static_cast<uint16_t>(user_data); }

std::string errno_text(int code) { return std::strerror(code); }

// A filesystem that keeps no owners or permission bits refuses to set them
// on an entry we just created: vfat says EPERM, a FUSE filesystem without
// the operation ENOSYS. That is the filesystem, not a failure of the entry.
bool is_attribute_not_kept(int code) { return code == EPERM || code == ENOSYS || code == EOPNOTSUPP; }

// The destination cannot make this hard link (vfat has none: EPERM; a
// filesystem's link limit: EMLINK): the name gets its own copy instead.
bool is_link_refused(int code) {
  return code == EPERM || code == EMLINK || code == EOPNOTSUPP || code == ENOSYS || code == EXDEV;
}

// FICLONE errors that say these two filesystems cannot share extents (as
// coreutils' is_CLONENOTSUP), not that this one file failed.
bool is_clone_unsupported(int code) {
  return code == EXDEV || code == EOPNOTSUPP || code == ENOTTY || code == EINVAL || code == ENOSYS ||
         code == EBADF || code == EPERM || code == EACCES || code == ETXTBSY;
}

// A directory with a default ACL gives new files their permissions from the
// ACL, not from the umask. Unknown counts as yes.
bool has_default_acl(int dirfd) {
  if (fgetxattr(dirfd, "system.posix_acl_default", nullptr, 0) >= 0) return true;
  return errno != ENODATA && errno != EOPNOTSUPP;
}

// Unnamed targets are created with these bits (less the umask): nobody can
// open an O_TMPFILE inode, and when the source has them too, as most files
// do, no fchmod is needed.
constexpr mode_t kTempFileMode = 0666;

// Pseudo filesystems make a file's content when it is read: the size they
// report (0, or a page) says nothing about it. Their files are read until
// end of file, as cp reads every file.
bool holds_files_of_unknown_size(int dirfd) {
  struct statfs fs {};
  if (fstatfs(dirfd, &fs) != 0) return false;
  switch (static_cast<uint64_t>(fs.f_type)) {
    case PROC_SUPER_MAGIC:
    case SYSFS_MAGIC:
    case DEBUGFS_MAGIC:
    case TRACEFS_MAGIC:
    case SECURITYFS_MAGIC:
    case CGROUP_SUPER_MAGIC:
    case CGROUP2_SUPER_MAGIC:
    case EFIVARFS_MAGIC:
    case PSTOREFS_MAGIC:
    case BPF_FS_MAGIC:
      return true;
    default:
      return false;
  }
}

// A named temporary is ".ringcp-" + 8 random characters + 4 that check
// them (a hash keyed with ringcp's own seed) + ".tmp". The check is the
// marker where a filesystem keeps no xattrs (vfat, exFAT): a temporary a
// killed run left there can still be told from a file that merely looks
// like one (1 in 36^4 would pass by chance).
constexpr char kTempAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
constexpr size_t kTempRandomChars = 8;
constexpr size_t kTempCheckChars = 4;
constexpr const char* kTempSuffix = ".tmp";

std::string temp_name_check(std::string_view random) {
  uint64_t hash = XXH3_64bits_withSeed(random.data(), random.size(), 0x72696e67637074ull /* "ringcpt" */);
  std::string check;
  for (size_t i = 0; i < kTempCheckChars; ++i, hash /= 36) check += kTempAlphabet[hash % 36];
  return check;
}

bool is_checked_temp_name(std::string_view name) {
  const std::string_view prefix = kTempPrefix, suffix = kTempSuffix;
  if (name.size() != prefix.size() + kTempRandomChars + kTempCheckChars + suffix.size() ||
      !name.starts_with(prefix) || !name.ends_with(suffix))
    return false;
  const std::string_view random = name.substr(prefix.size(), kTempRandomChars);
  return name.substr(prefix.size() + kTempRandomChars, kTempCheckChars) == temp_name_check(random);
}

// ringcp's own attributes (the temporary marker, the directory's
// replacement marker) are never copied: a copy of a file a killed run left
// marked would carry the marker on.
bool is_ringcp_attribute(const char* name) { return std::strncmp(name, "user.ringcp.", 12) == 0; }

bool has_attribute(int fd, const char* name) { return fgetxattr(fd, name, nullptr, 0) >= 0; }

bool set_marker(int fd, const char* name) { return fsetxattr(fd, name, "1", 1, 0) == 0; }

// Removes attribute `name` from fd; 0 or an errno (none when it is absent).
// Changing a user.* attribute needs write permission on the inode, which a
// read-only copy (mode 0444) does not give its owner: the owner's write bit
// is lent for the call.
int remove_marker(int fd, const char* name) {
  if (fremovexattr(fd, name) == 0 || errno == ENODATA) return 0;
  struct stat st {};
  if (errno != EACCES || fstat(fd, &st) != 0 || fchmod(fd, st.st_mode | S_IWUSR) != 0) return errno;
  const int code = fremovexattr(fd, name) == 0 || errno == ENODATA ? 0 : errno;
  fchmod(fd, st.st_mode & 07777);
  return code;
}

// A directory stream on a fresh open file description of `name` in `dirfd`
// (a dup would share the read position with every other reader), or
// nullptr with errno set. fdopendir leaves the descriptor to the caller when
// it fails: it is closed here then.
DIR* open_directory_stream(int dirfd, const char* name) {
  const int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return nullptr;
  DIR* stream = fdopendir(fd);
  if (stream == nullptr) {
    const int code = errno;
    close(fd);
    errno = code;
  }
  return stream;
}

struct DirNode {
  DirNode* parent = nullptr;
  DIR* source_stream = nullptr;  // owns the source directory descriptor
  int source_fd = -1;
  int target_fd = -1;
  std::string source_display;  // for messages
  std::string target_display;
  std::string target_relative;  // from the root's anchor, for hard links
  int anchor_fd = -1;           // the root's destination parent
  struct statx source_stat {};
  bool is_root_parent = false;  // the pseudo node that holds a root entry
  bool target_preexisted = false;
  bool created = false;
  bool default_acl = true;  // new files may get other bits than mode & ~umask (until checked)
  bool walk_done = false;
  bool had_error = false;
  bool queued_for_finalize = false;
  bool replacing_marked = false;  // kReplacingXattr set by this run, removed at finalize
  bool replacing_mark_tried = false;
  bool source_sizes_unknown = false;  // a pseudo filesystem (holds_files_of_unknown_size)
  uint32_t pending = 0;  // children not finished (files in flight, open subdirectories)
  uint64_t root_device = 0;
  std::unordered_set<std::string> seen;  // names copied, for --delete
};

enum class Step : uint8_t {
  opening,
  reflink,
  data,
  check_source,
  truncate,
  chown,
  chmod,
  list_xattrs,
  copy_xattr,
  times,
  verify,
  fsync,
  publish,
  publish_temp_name,
  rename_into_place,
  unmark,
  link_existing,
  link_existing_temp,
  closing,
  done,
};

enum What : uint16_t {
  kOpenSource,
  kStatSource,
  kOpenTarget,
  kStatTarget,
  kStepOp,
  kCloseSource,
  kCloseTarget,
  kGetXattr,
  kSetXattr,
  kChunkRead,
  kChunkWrite,
  kUnbufferedPiece,
};

struct LinkGroup {
  int anchor_fd = -1;
  std::string target_relative;
  std::string target_display;  // for messages
  bool complete = false;
  bool failed = false;
  std::vector<uint32_t> waiting;  // task slots to link once complete
};

struct FileTask {
  bool active = false;
  DirNode* dir = nullptr;
  std::string name;  // same in source and target directory, except for roots
  std::string target_name;
  int source_fd = -1;
  int target_fd = -1;
  struct statx source_stat {};
  struct statx target_stat {};
  bool target_exists = false;
  bool named_temp = false;      // target_fd is a named temporary (no O_TMPFILE)
  bool temp_linked = false;     // temp_name exists in the target directory
  bool marked = false;          // the target carries kTempMarkerXattr
  bool published = false;       // the target is under its final name: only unmark is left
  std::string temp_name;
  // A named temporary set aside while temp_name names a hard link waiting
  // to be renamed over an existing file (link_existing_temp).
  std::string set_aside_temp_name;
  char proc_path[40] = {};
  Step step = Step::opening;
  uint32_t ops_pending = 0;
  int error = 0;
  std::string error_message;
  bool cancelled = false;
  // data
  std::vector<std::pair<uint64_t, uint64_t>> extents;  // [offset, end) with data
  size_t extent_index = 0;
  uint64_t next_offset = 0;
  uint32_t chunks_in_flight = 0;
  bool needs_truncate = false;
  bool direct = false;             // the source is read with O_DIRECT
  bool in_kernel = false;          // the data goes by copy_file_range, not through buffers
  const uint8_t* mapping = nullptr;  // the source mapped: written from here with O_DIRECT
  uint64_t mapping_length = 0;
  uint64_t mapping_released = 0;  // pages below this offset are unmapped again
  uint64_t direct_write_end = 0;   // end of the O_DIRECT part; the rest is written buffered
  uint32_t refusals = 0;           // EAGAIN completions of unbuffered pieces in a row
  bool unbuffered() const { return in_kernel || mapping != nullptr; }
  bool parked = false;
  // The size is not known before reading (a pseudo file, or size 0): one
  // buffer at a time is read and written until a read returns 0.
  bool size_unknown = false;
  bool end_of_file = false;
  // xattrs
  std::vector<char> xattr_names;   // kept at its full size: no zero-fill per file
  size_t xattr_names_length = 0;   // bytes of names flistxattr returned
  size_t xattr_cursor = 0;
  std::vector<char> xattr_value;
  // hard links
  LinkGroup* link_group = nullptr;  // this task's group
  bool link_owner = false;
  struct timespec times[2] = {};
};

struct Chunk {
  bool active = false;
  uint32_t task = 0;
  BufferSlot slot;
  uint64_t offset = 0;
  uint32_t length = 0;     // bytes this chunk carries
  uint32_t requested = 0;  // bytes asked of the read (more than length at the file's end)
  uint32_t done = 0;       // bytes read, then bytes written
  bool writing = false;
  uint32_t refusals = 0;  // EAGAIN completions in a row
};

class Engine {
 public:
  Engine(Backend& backend, const CopyOptions& options, const CopyCallbacks& callbacks,
         CopyReport& report)
      : backend_(backend), pool_(backend.buffers()), options_(options), callbacks_(callbacks),
        report_(report) {
    tasks_.resize(options.files_in_flight_max);
    for (uint32_t i = options.files_in_flight_max; i > 0; --i) free_tasks_.push_back(i - 1);
    chunks_.resize(std::max<uint32_t>(options.io.max_buffers, 1));
    for (uint32_t i = static_cast<uint32_t>(chunks_.size()); i > 0; --i) free_chunks_.push_back(i - 1);
    use_empty_path_link_ = geteuid() == 0;
    euid_ = geteuid();
    egid_ = getegid();
    umask_ = umask(0);
    umask(umask_);
    std::random_device seed;
    random_.seed((uint64_t{seed()} << 32) | seed());
  }

  void run(const std::vector<CopyRoot>& roots);

 private:
  // ---- plumbing ----
  void submit(Request request);
  void flush_overflow();
  int64_t sync_op(Request request);
  void reap_and_dispatch(unsigned min_completions);
  void dispatch(const Completion& completion);
  bool stop_requested() const {
    return callbacks_.stop != nullptr && callbacks_.stop->load(std::memory_order_relaxed);
  }
  void error(const std::string& message) {
    ++report_.errors;
    if (callbacks_.report_error) callbacks_.report_error(message);
  }
  void verbose(const std::string& message) {
    if (options_.verbosity > 0 && callbacks_.report_verbose) callbacks_.report_verbose(message);
  }

  // ---- walk ----
  void start_root(const CopyRoot& root);
  void walk_some();
  void handle_entry(DirNode* parent, const std::string& name, const std::string& target_name,
                    unsigned char type, bool is_root);
  void enter_directory(DirNode* parent, const std::string& name, const std::string& target_name,
                       const struct statx& st);
  void copy_symlink(DirNode* parent, const std::string& name, const std::string& target_name,
                    const struct statx& st);
  void copy_special(DirNode* parent, const std::string& name, const std::string& target_name,
                    const struct statx& st);
  void child_finished(DirNode* dir);
  void finalize_directories();
  void finalize(DirNode* dir);
  void remove_stale_temporaries(DirNode* dir);
  void copy_directory_attributes(DirNode* dir);
  void note_replacement(DirNode* dir);
  void delete_extraneous(DirNode* dir);
  uint64_t remove_tree(int dirfd, const std::string& name, const std::string& display);
  bool excluded(const std::string& relative, bool is_dir) const;
  int64_t create_in_place_of(DirNode* parent, const std::string& target_name,
                             const std::function<Request(const char* name)>& make);
  void apply_path_metadata(DirNode* parent, const std::string& target_name,
                           const struct statx& st, const std::string& display);
  static std::string join(const std::string& directory, const std::string& name) {
    if (directory.empty()) return name;
    return directory == "/" ? "/" + name : directory + "/" + name;
  }
  std::string source_path(const DirNode* dir, const std::string& name) const {
    return join(dir->source_display, name);
  }
  std::string target_path(const DirNode* dir, const std::string& name) const {
    return join(dir->target_display, name);
  }
  uint32_t target_mode(const struct statx& st) const;
  std::string random_temp_name();

  // ---- files ----
  void start_file(DirNode* dir, const std::string& name, const std::string& target_name);
  void on_file_completion(uint32_t slot, uint16_t what, int64_t result);
  void after_opening(uint32_t slot);
  void advance(uint32_t slot);
  Step next_step(const FileTask& task) const;
  void begin_closing(uint32_t slot);
  void stop_everything();
  bool issue_step(uint32_t slot);
  void fail(uint32_t slot, const std::string& what, const std::string& path, int code);
  void copy_instead_of_link(uint32_t slot, const std::string& target, int code);
  void modes_not_kept(const std::string& display, int code);
  void schedule_chunks(uint32_t slot);
  void on_chunk_completion(uint32_t chunk_index, uint16_t what, int64_t result);
  void schedule_unbuffered(uint32_t slot);
  void schedule_read_to_end(uint32_t slot);
  bool start_chunk_read(uint32_t slot, uint64_t length, bool ask_more);
  Request unbuffered_piece(uint32_t slot);
  void resubmit_later(const Request& request, uint32_t refusals_in_a_row);
  void submit_due_requests();
  void sleep_until_a_request_is_due();
  void on_unbuffered_completion(uint32_t slot, int64_t result);
  bool try_mapped_direct_write(FileTask& task);
  void stop_mapped_direct_write(FileTask& task);
  void release_chunk(uint32_t chunk_index);
  void retry_parked();
  void finish_task(uint32_t slot);
  int verify_file(FileTask& task);
  bool should_skip(const FileTask& task) const;
  void plan_extents(FileTask& task);
  void choose_data_path(FileTask& task);
  void try_direct_io(FileTask& task);
  void stop_direct_io(FileTask& task);
  void step_op(uint32_t slot, Request request) {
    tasks_[slot].ops_pending = 1;
    request.user_data = make_user_data(Tag::file, slot, kStepOp);
    submit(request);
  }

  Backend& backend_;
  RegisteredBufferGroup& pool_;
  const CopyOptions& options_;
  const CopyCallbacks& callbacks_;
  CopyReport& report_;

  std::vector<FileTask> tasks_;
  std::vector<uint32_t> free_tasks_;
  std::vector<Chunk> chunks_;
  std::vector<uint32_t> free_chunks_;
  std::deque<uint32_t> parked_;  // tasks waiting for a buffer or a chunk
  std::deque<Request> overflow_;  // requests the backend had no room for
  struct DeferredRequest {
    Clock::time_point due;
    Request request;
  };
  std::vector<DeferredRequest> deferred_;  // refused with EAGAIN, submitted again when due
  uint32_t active_tasks_ = 0;

  std::vector<std::unique_ptr<DirNode>> nodes_;  // every live directory node
  std::vector<DirNode*> stack_;                  // directories being read, innermost last
  std::deque<DirNode*> finalize_queue_;
  std::vector<CopyRoot> pending_roots_;
  size_t next_root_ = 0;

  std::map<std::pair<uint64_t, uint64_t>, LinkGroup> link_groups_;
  std::vector<char> dir_xattr_names_, dir_xattr_value_;  // sized once, reused for every directory
  bool use_empty_path_link_ = true;
  mode_t umask_ = 022;
  uid_t euid_ = 0;
  gid_t egid_ = 0;
  bool tmpfile_unsupported_ = false;
  std::set<uint64_t> reflink_refused_devices_;  // sources whose files cannot be cloned to the target
  bool modes_not_kept_said_ = false;
  bool stopping_ = false;
  uint64_t sync_sequence_ = 0;
  uint64_t sync_waiting_ = 0;
  int64_t sync_result_ = 0;
  bool sync_done_ = false;
  std::mt19937_64 random_;
};

// ------------------------------------------------------------ plumbing --

void Engine::submit(Request request) {
  if (!overflow_.empty() || !backend_.prepare(request)) overflow_.push_back(request);
}

// -EAGAIN: the kernel (or the device's queue) has no room now. The same
// request goes again after a pause; other work goes on meanwhile, and with
// nothing else in flight the engine sleeps until it is due. Nothing spins.
void Engine::resubmit_later(const Request& request, uint32_t refusals_in_a_row) {
  const uint32_t doublings = std::min<uint32_t>(refusals_in_a_row - 1, 16);
  const auto pause = std::min<std::chrono::microseconds>(kRetryPauseMin * (int64_t{1} << doublings), kRetryPauseMax);
  deferred_.push_back(DeferredRequest{Clock::now() + pause, request});
}

void Engine::submit_due_requests() {
  if (deferred_.empty()) return;
  const auto now = Clock::now();
  for (size_t i = 0; i < deferred_.size();) {
    if (deferred_[i].due > now) {
      ++i;
      continue;
    }
    submit(deferred_[i].request);
    deferred_[i] = deferred_.back();
    deferred_.pop_back();
  }
}

void Engine::sleep_until_a_request_is_due() {
  auto due = deferred_.front().due;
  for (const DeferredRequest& deferred : deferred_) due = std::min(due, deferred.due);
  const auto pause = due - Clock::now();
  if (pause <= Clock::duration::zero()) return;
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(pause).count();
  const struct timespec length = {time_t(ns / 1000000000), long(ns % 1000000000)};
  nanosleep(&length, nullptr);
}

void Engine::flush_overflow() {
  while (!overflow_.empty() && backend_.prepare(overflow_.front())) overflow_.pop_front();
}

void Engine::reap_and_dispatch(unsigned min_completions) {
  Completion completions[128];
  const int n = backend_.submit_and_reap(completions, min_completions);
  if (n < 0) {
    if (n != -EINTR) error(std::string("ring: ") + errno_text(-n));
    return;
  }
  for (int i = 0; i < n; ++i) dispatch(completions[i]);
  flush_overflow();
}

// Runs one request to completion while everything else keeps flowing. Only
// the walker and directory finalization call it, never a completion handler.
int64_t Engine::sync_op(Request request) {
  const uint64_t id = ++sync_sequence_;
  request.user_data = make_user_data(Tag::sync, id, 0);
  sync_waiting_ = id;
  sync_done_ = false;
  submit(request);
  while (!sync_done_) reap_and_dispatch(1);
  sync_waiting_ = 0;
  return sync_result_;
}

void Engine::dispatch(const Completion& completion) {
  switch (tag_of(completion.user_data)) {
    case Tag::sync:
      if (slot_of(completion.user_data) == sync_waiting_) {
        sync_result_ = completion.result;
        sync_done_ = true;
      }
      return;
    case Tag::file:
      on_file_completion(static_cast<uint32_t>(slot_of(completion.user_data)),
                         what_of(completion.user_data), completion.result);
      return;
    case Tag::chunk:
      on_chunk_completion(static_cast<uint32_t>(slot_of(completion.user_data)),
                          what_of(completion.user_data), completion.result);
      return;
  }
}

// ---------------------------------------------------------------- walk --

uint32_t Engine::target_mode(const struct statx& st) const {
  const uint32_t bits = st.stx_mode & 07777;
  if (options_.preserve.mode) return bits;
  // Without --preserve=mode cp gives the source's permission bits less the
  // umask, and no setuid/setgid/sticky.
  return bits & ~umask_ & 0777;
}

std::string Engine::random_temp_name() {
  std::string random;
  for (size_t i = 0; i < kTempRandomChars; ++i) random += kTempAlphabet[random_() % 36];
  return kTempPrefix + random + temp_name_check(random) + kTempSuffix;
}

bool Engine::excluded(const std::string& relative, bool is_dir) const {
  for (const std::string& pattern_text : options_.excludes) {
    std::string pattern = pattern_text;
    bool dirs_only = false;
    if (pattern.size() > 1 && pattern.back() == '/') {
      dirs_only = true;
      pattern.pop_back();
    }
    if (dirs_only && !is_dir) continue;
    const bool anchored = pattern.find('/') != std::string::npos;
    const std::string subject =
        anchored ? relative : relative.substr(relative.rfind('/') == std::string::npos ? 0 : relative.rfind('/') + 1);
    if (anchored && !pattern.empty() && pattern.front() == '/') pattern.erase(0, 1);
    if (fnmatch(pattern.c_str(), subject.c_str(), 0) == 0) return true;
  }
  return false;
}

void Engine::start_root(const CopyRoot& root) {
  auto split = [](const std::string& path, std::string* parent, std::string* leaf) {
    std::string stripped = path;
    while (stripped.size() > 1 && stripped.back() == '/') stripped.pop_back();
    if (stripped == "/") {
      *parent = "/";
      *leaf = ".";
      return;
    }
    const auto slash = stripped.rfind('/');
    *parent = slash == std::string::npos ? "." : (slash == 0 ? "/" : stripped.substr(0, slash));
    *leaf = slash == std::string::npos ? stripped : stripped.substr(slash + 1);
  };
  std::string source_parent, source_leaf, target_parent, target_leaf;
  split(root.source, &source_parent, &source_leaf);
  split(root.destination, &target_parent, &target_leaf);

  auto node = std::make_unique<DirNode>();
  node->is_root_parent = true;
  node->walk_done = true;
  const int64_t source_fd = sync_op(Request::openat(AT_FDCWD, source_parent.c_str(),
                                                    O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (source_fd < 0) {
    error("cannot stat " + quote_name(root.source) + ": " + errno_text(int(-source_fd)));
    return;
  }
  node->source_fd = static_cast<int>(source_fd);
  node->source_sizes_unknown = holds_files_of_unknown_size(node->source_fd);
  int64_t target_fd = -1;
  if (!options_.dry_run || access(target_parent.c_str(), F_OK) == 0) {
    target_fd = sync_op(Request::openat(AT_FDCWD, target_parent.c_str(),
                                        O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (target_fd < 0) {
      error("cannot create " + quote_name(root.destination) + ": " + errno_text(int(-target_fd)));
      sync_op(Request::close(node->source_fd));
      return;
    }
  }
  node->target_fd = static_cast<int>(target_fd);
  node->default_acl = has_default_acl(node->target_fd);
  node->anchor_fd = node->target_fd;
  // Messages name entries as the user did: "src/a/b".
  node->source_display = root.source.find('/') == std::string::npos ? "" : source_parent;
  node->target_display = root.destination.find('/') == std::string::npos ? "" : target_parent;
  // Only after a killed replacement: this directory is not ours to scan.
  if (!options_.dry_run && node->target_fd >= 0 && has_attribute(node->target_fd, kReplacingXattr))
    remove_stale_temporaries(node.get());
  DirNode* raw = node.get();
  nodes_.push_back(std::move(node));

  struct statx st {};
  const int follow = options_.symlinks == SymlinkMode::no_dereference ? AT_SYMLINK_NOFOLLOW : 0;
  const int64_t rc = sync_op(Request::statx(raw->source_fd, source_leaf.c_str(), follow,
                                            STATX_BASIC_STATS, &st));
  if (rc < 0) {
    error("cannot stat " + quote_name(root.source) + ": " + errno_text(int(-rc)));
    raw->pending = 0;
    finalize(raw);
    return;
  }
  raw->root_device = makedev(st.stx_dev_major, st.stx_dev_minor);
  raw->pending = 1;  // the root entry
  unsigned char type = DT_UNKNOWN;
  if (S_ISDIR(st.stx_mode)) type = DT_DIR;
  else if (S_ISREG(st.stx_mode)) type = DT_REG;
  else if (S_ISLNK(st.stx_mode)) type = DT_LNK;
  else type = DT_FIFO;
  handle_entry(raw, source_leaf, target_leaf, type, true);
  child_finished(raw);  // handle_entry took its own count
}

void Engine::walk_some() {
  while (!stopping_ && active_tasks_ < tasks_.size()) {
    if (stack_.empty()) {
      if (next_root_ >= pending_roots_.size()) return;
      start_root(pending_roots_[next_root_++]);
      continue;
    }
    DirNode* dir = stack_.back();
    errno = 0;
    dirent* entry = readdir(dir->source_stream);
    if (entry == nullptr) {
      if (errno != 0) {
        dir->had_error = true;
        error("cannot read directory " + quote_name(dir->source_display) + ": " + errno_text(errno));
      }
      stack_.pop_back();
      dir->walk_done = true;
      dir->pending += 1;  // balanced by child_finished below
      child_finished(dir);
      continue;
    }
    const std::string name = entry->d_name;
    if (name == "." || name == "..") continue;
    handle_entry(dir, name, name, entry->d_type, false);
  }
}

void Engine::handle_entry(DirNode* parent, const std::string& name, const std::string& target_name,
                          unsigned char type, bool is_root) {
  const std::string display = source_path(parent, name);
  if (!is_root && !options_.excludes.empty()) {
    const std::string relative = parent->target_relative.empty() ? name : parent->target_relative + "/" + name;
    if (excluded(relative, type == DT_DIR)) return;
  }
  if (options_.delete_extraneous && !is_root) parent->seen.insert(name);

  struct statx st {};
  const bool follow = options_.symlinks == SymlinkMode::dereference ||
                      (is_root && options_.symlinks == SymlinkMode::command_line);
  // The walker needs full metadata for everything but regular files, whose
  // statx runs in parallel with their open.
  if (type != DT_REG || follow) {
    const int64_t rc = sync_op(Request::statx(parent->source_fd, name.c_str(),
                                              follow ? 0 : AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &st));
    if (rc < 0) {
      parent->had_error = true;
      error("cannot stat " + quote_name(display) + ": " + errno_text(int(-rc)));
      return;
    }
    if (S_ISDIR(st.stx_mode)) type = DT_DIR;
    else if (S_ISREG(st.stx_mode)) type = DT_REG;
    else if (S_ISLNK(st.stx_mode)) type = DT_LNK;
    else type = DT_FIFO;
  }
  switch (type) {
    case DT_DIR:
      if (!options_.recursive) {
        error("-r not specified; omitting directory " + quote_name(display));
        return;
      }
      enter_directory(parent, name, target_name, st);
      return;
    case DT_REG:
      start_file(parent, name, target_name);
      return;
    case DT_LNK:
      copy_symlink(parent, name, target_name, st);
      return;
    default:
      copy_special(parent, name, target_name, st);
      return;
  }
}

void Engine::enter_directory(DirNode* parent, const std::string& name,
                             const std::string& target_name, const struct statx& st) {
  const std::string display = source_path(parent, name);
  const std::string target_display = target_path(parent, target_name);
  // Following symlinks can lead back to a directory being copied: refuse a
  // directory that is its own ancestor (as cp does).
  for (const DirNode* ancestor = parent; ancestor != nullptr && !ancestor->is_root_parent;
       ancestor = ancestor->parent) {
    if (ancestor->source_stat.stx_ino == st.stx_ino &&
        ancestor->source_stat.stx_dev_major == st.stx_dev_major &&
        ancestor->source_stat.stx_dev_minor == st.stx_dev_minor) {
      parent->had_error = true;
      error("cannot copy cyclic symbolic link " + quote_name(display));
      return;
    }
  }
  const int follow = options_.symlinks == SymlinkMode::dereference ? 0 : O_NOFOLLOW;
  const int64_t source_fd = sync_op(Request::openat(parent->source_fd, name.c_str(),
                                                    O_RDONLY | O_DIRECTORY | O_CLOEXEC | follow));
  if (source_fd < 0) {
    parent->had_error = true;
    error("cannot open directory " + quote_name(display) + ": " + errno_text(int(-source_fd)));
    return;
  }
  DIR* source_stream = fdopendir(static_cast<int>(source_fd));
  if (source_stream == nullptr) {
    // ENOMEM, or a descriptor that is not a directory after all.
    parent->had_error = true;
    error("cannot read directory " + quote_name(display) + ": " + errno_text(errno));
    sync_op(Request::close(static_cast<int>(source_fd)));
    return;
  }
  auto node = std::make_unique<DirNode>();
  node->parent = parent;
  node->source_fd = static_cast<int>(source_fd);
  node->source_stream = source_stream;
  node->source_sizes_unknown = holds_files_of_unknown_size(node->source_fd);
  node->source_display = display;
  node->target_display = target_display;
  node->target_relative = parent->is_root_parent ? target_name : parent->target_relative + "/" + target_name;
  if (parent->is_root_parent && target_name == ".") node->target_relative = "";
  node->anchor_fd = parent->anchor_fd;
  node->source_stat = st;
  node->root_device = parent->root_device;
  const bool other_filesystem =
      options_.one_file_system && makedev(st.stx_dev_major, st.stx_dev_minor) != parent->root_device;

  if (options_.dry_run) {
    verbose("would create directory " + quote_name(target_display));
    node->target_fd = -1;
    if (parent->target_fd >= 0) {
      const int64_t existing = sync_op(Request::openat(parent->target_fd, target_name.c_str(),
                                                       O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
      if (existing >= 0) {
        node->target_fd = static_cast<int>(existing);
        node->target_preexisted = true;
      }
    }
  } else {
    const int64_t made = sync_op(Request::mkdirat(parent->target_fd, target_name.c_str(), S_IRWXU));
    if (made < 0 && made != -EEXIST) {
      parent->had_error = true;
      error("cannot create directory " + quote_name(target_display) + ": " + errno_text(int(-made)));
      closedir(node->source_stream);
      return;
    }
    node->created = made == 0;
    node->target_preexisted = made == -EEXIST;
    if (node->created) ++report_.directories_created;
    const int64_t target_fd = sync_op(Request::openat(parent->target_fd, target_name.c_str(),
                                                      O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
    if (target_fd < 0) {
      parent->had_error = true;
      const int code = int(-target_fd);
      error(code == ENOTDIR || code == ELOOP
                ? "cannot overwrite non-directory " + quote_name(target_display) + " with directory " +
                      quote_name(display)
                : "cannot open directory " + quote_name(target_display) + ": " + errno_text(code));
      closedir(node->source_stream);
      return;
    }
    node->target_fd = static_cast<int>(target_fd);
    node->default_acl = has_default_acl(node->target_fd);
    if (node->target_preexisted) remove_stale_temporaries(node.get());
  }
  verbose(quote_name(display) + " -> " + quote_name(target_display));
  parent->pending += 1;
  DirNode* raw = node.get();
  nodes_.push_back(std::move(node));
  if (other_filesystem) {
    raw->walk_done = true;
    raw->pending = 1;
    child_finished(raw);
    return;
  }
  stack_.push_back(raw);
}

void Engine::copy_symlink(DirNode* parent, const std::string& name, const std::string& target_name,
                          const struct statx& st) {
  const std::string display = source_path(parent, name);
  const std::string target_display = target_path(parent, target_name);
  std::vector<char> link(st.stx_size + 2);
  const int64_t length = sync_op(Request::readlinkat(parent->source_fd, name.c_str(), link.data(), link.size()));
  if (length < 0) {
    parent->had_error = true;
    error("cannot read symbolic link " + quote_name(display) + ": " + errno_text(int(-length)));
    return;
  }
  link[size_t(length)] = '\0';
  if (options_.dry_run) {
    verbose("would create symbolic link " + quote_name(target_display));
    return;
  }
  int64_t rc = sync_op(Request::symlinkat(link.data(), parent->target_fd, target_name.c_str()));
  if (rc == -EEXIST) {
    struct statx existing {};
    if (sync_op(Request::statx(parent->target_fd, target_name.c_str(), AT_SYMLINK_NOFOLLOW,
                               STATX_TYPE | STATX_MTIME | STATX_SIZE, &existing)) == 0) {
      if (S_ISDIR(existing.stx_mode)) {
        error("cannot overwrite directory " + quote_name(target_display) + " with non-directory");
        return;
      }
      if (options_.clobber == ClobberMode::no_clobber) {
        ++report_.files_skipped;
        return;
      }
    }
    rc = create_in_place_of(parent, target_name, [&](const char* temp_name) {
      return Request::symlinkat(link.data(), parent->target_fd, temp_name);
    });
  }
  if (rc < 0) {
    parent->had_error = true;
    error("cannot create symbolic link " + quote_name(target_display) + ": " + errno_text(int(-rc)));
    return;
  }
  ++report_.symlinks_copied;
  apply_path_metadata(parent, target_name, st, target_display);
}

void Engine::copy_special(DirNode* parent, const std::string& name, const std::string& target_name,
                          const struct statx& st) {
  const std::string target_display = target_path(parent, target_name);
  if (options_.dry_run) {
    verbose("would create special file " + quote_name(target_display) + " from " +
            quote_name(source_path(parent, name)));
    return;
  }
  const uint64_t device = makedev(st.stx_rdev_major, st.stx_rdev_minor);
  int64_t rc = sync_op(Request::mknodat(parent->target_fd, target_name.c_str(),
                                        (st.stx_mode & S_IFMT) | 0600, device));
  if (rc == -EEXIST && options_.clobber != ClobberMode::no_clobber) {
    rc = create_in_place_of(parent, target_name, [&](const char* temp_name) {
      return Request::mknodat(parent->target_fd, temp_name, (st.stx_mode & S_IFMT) | 0600, device);
    });
  } else if (rc == -EEXIST) {
    ++report_.files_skipped;
    return;
  }
  if (rc < 0) {
    parent->had_error = true;
    error("cannot create special file " + quote_name(target_display) + ": " + errno_text(int(-rc)));
    return;
  }
  ++report_.specials_copied;
  apply_path_metadata(parent, target_name, st, target_display);
}

// Replaces an existing `target_name` with a new entry that `make` creates:
// made under a temporary name, renamed over the old one, removed if the
// rename fails. Returns 0 or -errno.
int64_t Engine::create_in_place_of(DirNode* parent, const std::string& target_name,
                                   const std::function<Request(const char* name)>& make) {
  const std::string temp = random_temp_name();
  int64_t rc = sync_op(make(temp.c_str()));
  if (rc == 0) {
    rc = sync_op(Request::renameat(parent->target_fd, temp.c_str(), parent->target_fd, target_name.c_str()));
  }
  // Also after a failed create: some filesystems leave the entry behind
  // (FUSE drivers' mknod makes a regular file, then fails with EIO). Not
  // after EEXIST: that name is someone else's.
  if (rc < 0 && rc != -EEXIST) sync_op(Request::unlinkat(parent->target_fd, temp.c_str(), 0));
  return rc;
}

// Owner, mode and times of an entry that cannot be opened (symlink, FIFO,
// device): by name, without following.
void Engine::apply_path_metadata(DirNode* parent, const std::string& target_name,
                                 const struct statx& st, const std::string& display) {
  const bool is_link = S_ISLNK(st.stx_mode);
  if (options_.preserve.ownership) {
    const int64_t rc = sync_op(Request::fchownat(parent->target_fd, target_name.c_str(), st.stx_uid,
                                                 st.stx_gid, AT_SYMLINK_NOFOLLOW));
    if (rc < 0 && !is_attribute_not_kept(int(-rc)))
      error("failed to preserve ownership for " + quote_name(display) + ": " + errno_text(int(-rc)));
  }
  if (!is_link) {
    // No fchmodat(AT_SYMLINK_NOFOLLOW) is needed: this is not a symlink.
    if (fchmodat(parent->target_fd, target_name.c_str(), target_mode(st), 0) != 0) {
      if (is_attribute_not_kept(errno)) modes_not_kept(display, errno);  // we just made it
      else error("failed to preserve permissions for " + quote_name(display) + ": " + errno_text(errno));
    }
  }
  if (options_.preserve.timestamps) {
    const struct timespec times[2] = {{st.stx_atime.tv_sec, st.stx_atime.tv_nsec},
                                      {st.stx_mtime.tv_sec, st.stx_mtime.tv_nsec}};
    const int64_t rc = sync_op(Request::utimensat(parent->target_fd, target_name.c_str(), times, AT_SYMLINK_NOFOLLOW));
    if (rc < 0) error("failed to preserve times for " + quote_name(display) + ": " + errno_text(int(-rc)));
  }
}

void Engine::child_finished(DirNode* dir) {
  assert(dir->pending > 0);
  if (--dir->pending == 0 && dir->walk_done && !dir->queued_for_finalize) {
    dir->queued_for_finalize = true;
    finalize_queue_.push_back(dir);
  }
}

void Engine::finalize_directories() {
  while (!finalize_queue_.empty()) {
    DirNode* dir = finalize_queue_.front();
    finalize_queue_.pop_front();
    finalize(dir);
  }
}

void Engine::finalize(DirNode* dir) {
  // Every file of this directory is unmarked by now.
  if (dir->replacing_marked) sync_op(Request::fremovexattr(dir->target_fd, kReplacingXattr));
  if (!dir->is_root_parent && dir->target_fd >= 0 && !options_.dry_run) {
    if (options_.delete_extraneous && dir->target_preexisted && !dir->had_error && !stopping_)
      delete_extraneous(dir);
    const struct statx& st = dir->source_stat;
    const std::string display = dir->target_display;
    // Owner before mode (chown clears setuid/setgid), mode and times after
    // the contents (a read-only directory last).
    if (options_.preserve.ownership) {
      const int64_t rc = sync_op(Request::fchownat(dir->target_fd, "", st.stx_uid, st.stx_gid, AT_EMPTY_PATH));
      if (rc < 0 && !is_attribute_not_kept(int(-rc)))
        error("failed to preserve ownership for " + quote_name(display) + ": " + errno_text(int(-rc)));
    }
    if (options_.preserve.xattr) copy_directory_attributes(dir);
    if (dir->created || options_.preserve.mode) {
      const int64_t rc = sync_op(Request::fchmod(dir->target_fd, target_mode(st)));
      // EPERM is the filesystem's answer when the directory is ours or we
      // are root (CAP_FOWNER); otherwise it may be someone else's directory.
      if (rc < 0 && is_attribute_not_kept(int(-rc)) && (rc != -EPERM || dir->created || euid_ == 0))
        modes_not_kept(display, int(-rc));
      else if (rc < 0) error("failed to preserve permissions for " + quote_name(display) + ": " + errno_text(int(-rc)));
    }
    if (options_.preserve.timestamps) {
      const struct timespec times[2] = {{st.stx_atime.tv_sec, st.stx_atime.tv_nsec},
                                        {st.stx_mtime.tv_sec, st.stx_mtime.tv_nsec}};
      const int64_t rc = sync_op(Request::utimensat(dir->target_fd, nullptr, times, 0));
      if (rc < 0) error("failed to preserve times for " + quote_name(display) + ": " + errno_text(int(-rc)));
    }
    if (options_.fsync) sync_op(Request::fsync(dir->target_fd));
  }
  if (dir->source_stream != nullptr) {
    closedir(dir->source_stream);
  } else if (dir->source_fd >= 0) {
    sync_op(Request::close(dir->source_fd));
  }
  if (dir->is_root_parent && dir->target_fd >= 0 && options_.fsync && !options_.dry_run) {
    // The directory that received the top-level name: its entry is durable
    // only once it is synced too.
    sync_op(Request::fsync(dir->target_fd));
  }
  if (dir->is_root_parent) {
    // Hard-link groups name files from this root's anchor, which closes now.
    for (auto it = link_groups_.begin(); it != link_groups_.end();) {
      it = it->second.anchor_fd == dir->target_fd ? link_groups_.erase(it) : std::next(it);
    }
  }
  if (dir->target_fd >= 0) sync_op(Request::close(dir->target_fd));
  DirNode* parent = dir->parent;
  if (parent != nullptr && dir->had_error) parent->had_error = true;
  nodes_.erase(std::find_if(nodes_.begin(), nodes_.end(),
                            [dir](const std::unique_ptr<DirNode>& node) { return node.get() == dir; }));
  if (parent != nullptr) child_finished(parent);
}

// As for files: an attribute that cannot be read or set is reported, and
// the rest is copied.
void Engine::copy_directory_attributes(DirNode* dir) {
  dir_xattr_names_.resize(65536);
  dir_xattr_value_.resize(65536);
  const int64_t listed =
      sync_op(Request::flistxattr(dir->source_fd, dir_xattr_names_.data(), dir_xattr_names_.size()));
  if (listed < 0 && listed != -EOPNOTSUPP)
    error("cannot list extended attributes of " + quote_name(dir->source_display) + ": " + errno_text(int(-listed)));
  for (int64_t i = 0; i < listed; i += int64_t(std::strlen(dir_xattr_names_.data() + i)) + 1) {
    const char* key = dir_xattr_names_.data() + i;
    if (is_ringcp_attribute(key)) continue;
    const int64_t got =
        sync_op(Request::fgetxattr(dir->source_fd, key, dir_xattr_value_.data(), dir_xattr_value_.size()));
    if (got < 0) {
      if (got != -ENODATA)
        error("cannot read extended attribute " + quote_name(key) + " of " + quote_name(dir->source_display) + ": " +
              errno_text(int(-got)));
      continue;
    }
    const int64_t set = sync_op(Request::fsetxattr(dir->target_fd, key, dir_xattr_value_.data(), uint64_t(got)));
    if (set < 0)
      error("failed to preserve extended attribute " + quote_name(key) + " for " + quote_name(dir->target_display) +
            ": " + errno_text(int(-set)));
  }
}

// A killed run can leave named temporaries; ours carry the marker xattr.
// It can also be killed between renaming a marked file over its final name
// and removing the marker: the directory then carries kReplacingXattr, and
// every marker under a final name in it is removed too.
void Engine::remove_stale_temporaries(DirNode* dir) {
  const bool replacing = has_attribute(dir->target_fd, kReplacingXattr);
  DIR* stream = open_directory_stream(dir->target_fd, ".");
  if (stream == nullptr) {
    dir->had_error = true;
    error("cannot read directory " + quote_name(dir->target_display) + ": " + errno_text(errno));
    return;
  }
  std::vector<std::string> stale;
  while (dirent* entry = readdir(stream)) {
    const bool temporary = std::strncmp(entry->d_name, kTempPrefix, std::strlen(kTempPrefix)) == 0;
    if (!temporary && (!replacing || (entry->d_type != DT_REG && entry->d_type != DT_UNKNOWN))) continue;
    const int file = openat(dir->target_fd, entry->d_name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (file < 0) continue;
    const bool marked = fgetxattr(file, kTempMarkerXattr, nullptr, 0) >= 0;
    // Without xattrs on this filesystem the name's check is the marker.
    if (!marked && temporary && errno == EOPNOTSUPP && is_checked_temp_name(entry->d_name)) {
      stale.emplace_back(entry->d_name);
    } else if (marked) {
      if (temporary) {
        stale.emplace_back(entry->d_name);
      } else if (const int code = remove_marker(file, kTempMarkerXattr); code != 0) {
        error("cannot remove the temporary marker from " + quote_name(target_path(dir, entry->d_name)) + ": " +
              errno_text(code));
      } else {
        verbose("removed a stale temporary marker from " + quote_name(target_path(dir, entry->d_name)));
      }
    }
    close(file);
  }
  closedir(stream);
  if (replacing) fremovexattr(dir->target_fd, kReplacingXattr);
  for (const std::string& name : stale) {
    if (sync_op(Request::unlinkat(dir->target_fd, name.c_str(), 0)) == 0)
      verbose("removed stale temporary " + quote_name(target_path(dir, name)));
  }
}

// Before a marked file can reach a final name, its directory says so (see
// remove_stale_temporaries). Without user xattrs here nothing is marked.
void Engine::note_replacement(DirNode* dir) {
  if (dir->replacing_mark_tried) return;
  dir->replacing_mark_tried = true;
  dir->replacing_marked = set_marker(dir->target_fd, kReplacingXattr);
}

uint64_t Engine::remove_tree(int dirfd, const std::string& name, const std::string& display) {
  struct stat st {};
  if (fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return 0;
  uint64_t removed = 0;
  if (S_ISDIR(st.st_mode)) {
    const int fd = openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
      std::vector<std::string> children;
      if (DIR* stream = open_directory_stream(fd, ".")) {
        while (dirent* entry = readdir(stream)) {
          if (std::strcmp(entry->d_name, ".") != 0 && std::strcmp(entry->d_name, "..") != 0)
            children.emplace_back(entry->d_name);
        }
        closedir(stream);
      } else {
        // Its unlinkat below fails (not empty) and says so too.
        error("cannot read directory " + quote_name(display) + ": " + errno_text(errno));
      }
      for (const std::string& child : children) removed += remove_tree(fd, child, display + "/" + child);
      close(fd);
    }
  }
  const int64_t rc = sync_op(Request::unlinkat(dirfd, name.c_str(), S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0));
  if (rc < 0) {
    error("cannot remove " + quote_name(display) + ": " + errno_text(int(-rc)));
    return removed;
  }
  verbose("deleted " + quote_name(display));
  return removed + 1;
}

void Engine::delete_extraneous(DirNode* dir) {
  DIR* stream = open_directory_stream(dir->target_fd, ".");
  if (stream == nullptr) {
    error("cannot read directory " + quote_name(dir->target_display) + ": " + errno_text(errno));
    return;
  }
  std::vector<std::string> extra;
  while (dirent* entry = readdir(stream)) {
    const std::string name = entry->d_name;
    if (name == "." || name == ".." || dir->seen.count(name) != 0) continue;
    const std::string relative = dir->target_relative.empty() ? name : dir->target_relative + "/" + name;
    if (excluded(relative, entry->d_type == DT_DIR)) continue;  // excluded files are protected
    extra.push_back(name);
  }
  closedir(stream);
  for (const std::string& name : extra)
    report_.entries_deleted += remove_tree(dir->target_fd, name, target_path(dir, name));
}

// --------------------------------------------------------------- files --

void Engine::start_file(DirNode* dir, const std::string& name, const std::string& target_name) {
  assert(!free_tasks_.empty());
  const uint32_t slot = free_tasks_.back();
  free_tasks_.pop_back();
  ++active_tasks_;
  dir->pending += 1;
  FileTask& task = tasks_[slot];
  {
    // Reuse the slot's buffers: no allocation per file for them.
    std::vector<char> names = std::move(task.xattr_names);
    std::vector<char> value = std::move(task.xattr_value);
    std::vector<std::pair<uint64_t, uint64_t>> extents = std::move(task.extents);
    task = FileTask{};
    task.xattr_names = std::move(names);
    task.xattr_value = std::move(value);
    task.extents = std::move(extents);
    task.extents.clear();
  }
  task.active = true;
  task.dir = dir;
  task.name = name;
  task.target_name = target_name;
  task.step = Step::opening;

  // Open and stat the source, and create the unnamed target, all at once.
  const int follow = options_.symlinks == SymlinkMode::dereference ? 0 : O_NOFOLLOW;
  Request open_source = Request::openat(dir->source_fd, task.name.c_str(), O_RDONLY | O_CLOEXEC | follow);
  open_source.user_data = make_user_data(Tag::file, slot, kOpenSource);
  Request stat_source = Request::statx(dir->source_fd, task.name.c_str(),
                                       follow ? AT_SYMLINK_NOFOLLOW : 0,
                                       STATX_BASIC_STATS, &task.source_stat);
  stat_source.user_data = make_user_data(Tag::file, slot, kStatSource);
  task.ops_pending = 2;
  submit(open_source);
  submit(stat_source);
  if (options_.dry_run || dir->target_fd < 0) {
    if (dir->target_preexisted && dir->target_fd >= 0) {
      Request stat_target = Request::statx(dir->target_fd, task.target_name.c_str(), AT_SYMLINK_NOFOLLOW,
                                           STATX_BASIC_STATS, &task.target_stat);
      stat_target.user_data = make_user_data(Tag::file, slot, kStatTarget);
      ++task.ops_pending;
      submit(stat_target);
    }
    return;
  }
  Request open_target =
      tmpfile_unsupported_
          ? Request::openat(dir->target_fd, (task.temp_name = random_temp_name()).c_str(),
                            O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)
          : Request::openat(dir->target_fd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, kTempFileMode);
  task.named_temp = tmpfile_unsupported_;
  task.temp_linked = tmpfile_unsupported_;
  open_target.user_data = make_user_data(Tag::file, slot, kOpenTarget);
  ++task.ops_pending;
  submit(open_target);
  if (dir->target_preexisted) {
    Request stat_target = Request::statx(dir->target_fd, task.target_name.c_str(), AT_SYMLINK_NOFOLLOW,
                                         STATX_BASIC_STATS, &task.target_stat);
    stat_target.user_data = make_user_data(Tag::file, slot, kStatTarget);
    ++task.ops_pending;
    submit(stat_target);
  }
}

void Engine::fail(uint32_t slot, const std::string& what, const std::string& path, int code) {
  FileTask& task = tasks_[slot];
  if (task.error == 0) {
    task.error = code != 0 ? code : EIO;  // a failure without errno still fails
    task.error_message = what + " " + quote_name(path) + (code != 0 ? ": " + errno_text(code) : "");
  }
}

// The destination refused the hard link: this name gets the data itself,
// and the link that could not be kept is reported (exit 2).
void Engine::copy_instead_of_link(uint32_t slot, const std::string& target, int code) {
  FileTask& task = tasks_[slot];
  error("cannot create hard link " + quote_name(target) + " to " + quote_name(task.link_group->target_display) +
        ": " + errno_text(code) + " (copied as a separate file)");
  task.link_group = nullptr;
  plan_extents(task);
  choose_data_path(task);
  task.step = Step::reflink;
  if (!issue_step(slot)) advance(slot);
}

void Engine::modes_not_kept(const std::string& display, int code) {
  if (modes_not_kept_said_) return;  // once per run, not for every entry
  modes_not_kept_said_ = true;
  if (callbacks_.report_error)
    callbacks_.report_error("warning: permissions not preserved: the destination keeps none (" + quote_name(display) +
                            ": " + errno_text(code) + ")");
}

void Engine::on_file_completion(uint32_t slot, uint16_t what, int64_t result) {
  FileTask& task = tasks_[slot];
  assert(task.active);
  DirNode* dir = task.dir;
  switch (what) {
    case kOpenSource:
      if (result >= 0) task.source_fd = static_cast<int>(result);
      else fail(slot, "cannot open", source_path(dir, task.name), int(-result));
      break;
    case kStatSource:
      if (result < 0) fail(slot, "cannot stat", source_path(dir, task.name), int(-result));
      break;
    case kOpenTarget:
      if (result >= 0) {
        task.target_fd = static_cast<int>(result);
        // A named temporary is ours only when marked; one that cannot be
        // marked (no user xattrs here) is still removed on every failure
        // path, only a SIGKILL before its rename leaves it behind.
        if (task.named_temp) task.marked = set_marker(task.target_fd, kTempMarkerXattr);
      } else if (!task.named_temp && (result == -EOPNOTSUPP || result == -EISDIR || result == -EINVAL)) {
        // This filesystem has no O_TMPFILE: a marked temporary name instead.
        tmpfile_unsupported_ = true;
        task.named_temp = true;
        task.temp_linked = true;
        task.temp_name = random_temp_name();
        Request open_target = Request::openat(dir->target_fd, task.temp_name.c_str(),
                                              O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        open_target.user_data = make_user_data(Tag::file, slot, kOpenTarget);
        submit(open_target);
        return;  // still pending
      } else {
        task.temp_linked = false;
        fail(slot, "cannot create regular file", target_path(dir, task.target_name), int(-result));
      }
      break;
    case kStatTarget:
      task.target_exists = result == 0;
      break;
    case kStepOp:
      break;
    case kUnbufferedPiece:
      on_unbuffered_completion(slot, result);
      return;
    case kCloseSource:
    case kCloseTarget:
      break;
    default:
      break;
  }
  if (what == kStepOp && task.step != Step::closing) {
    task.ops_pending = 0;
    // Each step decides what its result means.
    const Step step = task.step;
    const std::string target = target_path(dir, task.target_name);
    switch (step) {
      case Step::reflink:
        if (result == 0) {
          ++report_.files_reflinked;
          task.extents.clear();  // the data is shared, nothing to move
          task.next_offset = task.source_stat.stx_size;
          report_.bytes_copied += task.source_stat.stx_size;
        } else if (options_.reflink == ReflinkMode::always) {
          fail(slot, "failed to clone", target, int(-result));
        } else if (is_clone_unsupported(int(-result))) {
          // Not tried again for files from this filesystem; another source
          // (several operands) may still share extents with the target.
          reflink_refused_devices_.insert(makedev(task.source_stat.stx_dev_major, task.source_stat.stx_dev_minor));
        }
        break;
      case Step::check_source:
        if (result == 0 && (task.source_stat.stx_size != task.target_stat.stx_size ||
                            task.source_stat.stx_mtime.tv_sec != task.target_stat.stx_mtime.tv_sec ||
                            task.source_stat.stx_mtime.tv_nsec != task.target_stat.stx_mtime.tv_nsec)) {
          fail(slot, "source file changed while it was copied:", source_path(dir, task.name), 0);
        }
        break;
      case Step::chown:
        if (result < 0 && !is_attribute_not_kept(int(-result)))
          fail(slot, "failed to preserve ownership for", target, int(-result));
        break;
      case Step::chmod:
        // The target is our new file: a refusal is the filesystem's.
        if (result < 0 && is_attribute_not_kept(int(-result))) modes_not_kept(target, int(-result));
        else if (result < 0) fail(slot, "failed to preserve permissions for", target, int(-result));
        break;
      case Step::list_xattrs:
        // EOPNOTSUPP: the source's filesystem has no attributes to copy.
        if (result < 0 && result != -EOPNOTSUPP)
          error("cannot list extended attributes of " + quote_name(source_path(dir, task.name)) + ": " +
                errno_text(int(-result)));
        task.xattr_names_length = result > 0 ? size_t(result) : 0;
        task.xattr_cursor = 0;
        break;
      case Step::times:
        if (result < 0) fail(slot, "failed to preserve times for", target, int(-result));
        break;
      case Step::truncate:
        if (result < 0) fail(slot, "error writing", target, int(-result));
        break;
      case Step::fsync:
        if (result < 0) fail(slot, "error syncing", target, int(-result));
        break;
      case Step::publish:
        if (result == -EEXIST) {
          task.step = Step::publish_temp_name;  // replace: temp name, then rename over
          if (!issue_step(slot)) advance(slot);
          return;
        }
        if (result < 0) fail(slot, "cannot create regular file", target, int(-result));
        else task.published = true;
        break;
      case Step::publish_temp_name:
        if (result < 0) fail(slot, "cannot create regular file", target, int(-result));
        else task.temp_linked = true;
        break;
      case Step::rename_into_place:
        if (result < 0) {
          fail(slot, result == -EISDIR ? "cannot overwrite directory" : "cannot create regular file",
               target, result == -EISDIR ? 0 : int(-result));
        } else {
          task.temp_linked = false;
          task.published = true;
          if (task.link_group != nullptr && !task.link_owner) ++report_.hard_links_made;
        }
        break;
      case Step::unmark:
        if (int code = result < 0 ? int(-result) : 0; code != 0 && code != ENODATA) {
          if (code == EACCES) code = remove_marker(task.target_fd, kTempMarkerXattr);
          if (code != 0) fail(slot, "cannot remove the temporary marker from", target, code);
        }
        task.marked = false;
        break;
      case Step::link_existing:
        if (result == -EEXIST) {
          task.step = Step::link_existing_temp;
          if (!issue_step(slot)) advance(slot);
          return;
        }
        if (result < 0 && is_link_refused(int(-result))) {
          copy_instead_of_link(slot, target, int(-result));
          return;
        }
        if (result < 0) fail(slot, "cannot create hard link", target, int(-result));
        else ++report_.hard_links_made;
        break;
      case Step::link_existing_temp:
        if (result < 0 && is_link_refused(int(-result))) {
          // Nothing was linked: the data goes to the named temporary, if
          // there is one, or to the unnamed file, as for any new file.
          task.temp_name = std::move(task.set_aside_temp_name);
          task.set_aside_temp_name.clear();
          copy_instead_of_link(slot, target, int(-result));
          return;
        }
        if (result < 0) fail(slot, "cannot create hard link", target, int(-result));
        else task.temp_linked = true;  // counted once renamed into place
        break;
      default:
        break;
    }
    advance(slot);
    return;
  }
  if (what == kGetXattr || what == kSetXattr) {
    task.ops_pending = 0;
    const char* key = task.xattr_names.data() + task.xattr_cursor;
    if (what == kGetXattr && result >= 0) {
      Request set = Request::fsetxattr(task.target_fd, key, task.xattr_value.data(), uint64_t(result));
      set.user_data = make_user_data(Tag::file, slot, kSetXattr);
      task.ops_pending = 1;
      submit(set);
      return;
    }
    // An attribute that cannot be read or set is reported (exit 2), and the
    // file is still published: its data and other metadata are right.
    // ENODATA: the attribute was removed since it was listed.
    if (what == kSetXattr && result < 0) {
      error("failed to preserve extended attribute " + quote_name(key) + " for " +
            quote_name(target_path(dir, task.target_name)) + ": " + errno_text(int(-result)));
    } else if (result < 0 && result != -ENODATA) {
      error("cannot read extended attribute " + quote_name(key) + " of " + quote_name(source_path(dir, task.name)) +
            ": " + errno_text(int(-result)));
    }
    task.xattr_cursor += std::strlen(key) + 1;
    advance(slot);
    return;
  }
  if (--task.ops_pending != 0) return;
  if (task.step == Step::opening) {
    after_opening(slot);
  } else if (task.step == Step::closing) {
    finish_task(slot);
  }
}

bool Engine::should_skip(const FileTask& task) const {
  if (!task.target_exists) return false;
  const struct statx& s = task.source_stat;
  const struct statx& t = task.target_stat;
  switch (options_.clobber) {
    case ClobberMode::overwrite:
      return false;
    case ClobberMode::no_clobber:
      return true;
    case ClobberMode::update_older:
      // cp -u: copy only when the source is newer than the destination.
      return s.stx_mtime.tv_sec < t.stx_mtime.tv_sec ||
             (s.stx_mtime.tv_sec == t.stx_mtime.tv_sec && s.stx_mtime.tv_nsec <= t.stx_mtime.tv_nsec);
    case ClobberMode::skip_unchanged:
      return S_ISREG(t.stx_mode) && s.stx_size == t.stx_size &&
             s.stx_mtime.tv_sec == t.stx_mtime.tv_sec && s.stx_mtime.tv_nsec == t.stx_mtime.tv_nsec;
  }
  return false;
}

void Engine::plan_extents(FileTask& task) {
  const uint64_t size = task.source_stat.stx_size;
  task.extents.clear();
  if (task.size_unknown) {
    task.extent_index = 0;
    task.next_offset = 0;
    return;
  }
  const bool maybe_sparse = uint64_t{task.source_stat.stx_blocks} * 512 < size;
  if (options_.sparse != SparseMode::never && maybe_sparse && size > 0) {
    // Holes found with SEEK_DATA/SEEK_HOLE are kept as holes.
    uint64_t offset = 0;
    while (offset < size) {
      const off_t data = lseek(task.source_fd, off_t(offset), SEEK_DATA);
      if (data < 0) break;  // ENXIO: no more data
      off_t hole = lseek(task.source_fd, data, SEEK_HOLE);
      if (hole < 0) hole = off_t(size);
      task.extents.emplace_back(uint64_t(data), std::min<uint64_t>(uint64_t(hole), size));
      offset = uint64_t(hole);
    }
    // The size is set only when the file ends in a hole: the data written
    // already makes it (and fusefat refuses any ftruncate that changes nothing).
    task.needs_truncate = task.extents.empty() || task.extents.back().second < size;
  } else if (size > 0) {
    task.extents.emplace_back(0, size);
  }
  task.extent_index = 0;
  task.next_offset = task.extents.empty() ? size : task.extents.front().first;
}

void Engine::after_opening(uint32_t slot) {
  FileTask& task = tasks_[slot];
  DirNode* dir = task.dir;
  if (task.error == 0 && !S_ISREG(task.source_stat.stx_mode)) {
    fail(slot, "source is no longer a regular file:", source_path(dir, task.name), 0);
  }
  if (task.error != 0) {
    begin_closing(slot);
    return;
  }
  if (task.target_exists && S_ISDIR(task.target_stat.stx_mode)) {
    fail(slot, "cannot overwrite directory", target_path(dir, task.target_name), 0);
    begin_closing(slot);
    return;
  }
  if (should_skip(task)) {
    ++report_.files_skipped;
    verbose("skipped " + quote_name(target_path(dir, task.target_name)));
    begin_closing(slot);
    return;
  }
  if (options_.dry_run) {
    verbose("would copy " + quote_name(source_path(dir, task.name)) + " -> " +
            quote_name(target_path(dir, task.target_name)));
    ++report_.files_copied;
    begin_closing(slot);
    return;
  }
  task.times[0] = {task.source_stat.stx_atime.tv_sec, task.source_stat.stx_atime.tv_nsec};
  task.times[1] = {task.source_stat.stx_mtime.tv_sec, task.source_stat.stx_mtime.tv_nsec};
  if (options_.preserve.links && task.source_stat.stx_nlink > 1) {
    const auto key = std::make_pair(uint64_t(makedev(task.source_stat.stx_dev_major, task.source_stat.stx_dev_minor)),
                                    uint64_t(task.source_stat.stx_ino));
    auto [it, inserted] = link_groups_.try_emplace(key);
    LinkGroup& group = it->second;
    if (inserted) {
      group.anchor_fd = dir->anchor_fd;
      group.target_relative = dir->target_relative.empty() ? task.target_name
                                                           : dir->target_relative + "/" + task.target_name;
      group.target_display = target_path(dir, task.target_name);
      task.link_group = &group;
      task.link_owner = true;
    } else if (!group.failed) {
      task.link_group = &group;
      if (!group.complete) {
        group.waiting.push_back(slot);  // linked when the first copy is in place
        return;
      }
      task.step = Step::link_existing;
      if (!issue_step(slot)) advance(slot);
      return;
    }
  }
  // A file that replaces another gets a temporary name before its rename:
  // marked now, while its mode still lets its owner change attributes.
  if (task.target_exists && !task.marked) task.marked = set_marker(task.target_fd, kTempMarkerXattr);
  // A size of 0, or a page without a block behind it, may be a file made
  // on read; reading an empty file to its end costs one read.
  const struct statx& st = task.source_stat;
  task.size_unknown = dir->source_sizes_unknown || st.stx_size == 0 ||
                      (st.stx_blocks == 0 && st.stx_size == kPageSizeBytes);
  plan_extents(task);
  choose_data_path(task);
  task.step = Step::reflink;
  if (!issue_step(slot)) advance(slot);
}

// True when at least half of the file's pages are in the page cache
// (cachestat(2), Linux 6.5; false where it is missing). Such a file is read
// from the cache: O_DIRECT would read it from the device again.
bool mostly_cached(int fd, uint64_t size) {
#ifndef __NR_cachestat
  constexpr long kCachestatSyscall = 451;  // the same number on every architecture
#else
  constexpr long kCachestatSyscall = __NR_cachestat;
#endif
  struct {
    uint64_t off, len;
  } range{0, size};
  struct {
    uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
  } stat{};
  if (syscall(kCachestatSyscall, fd, &range, &stat, 0) != 0) return false;
  const uint64_t page = uint64_t(sysconf(_SC_PAGESIZE));
  return stat.nr_cache * 2 >= (size + page - 1) / page;
}

// The file offset alignment O_DIRECT needs on fd, or 0 when O_DIRECT cannot
// be used there with page-aligned memory (STATX_DIOALIGN, Linux 6.1).
uint32_t direct_io_alignment(int fd) {
  struct statx align {};
  if (::statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &align) != 0 || !(align.stx_mask & STATX_DIOALIGN) ||
      align.stx_dio_mem_align == 0 || align.stx_dio_mem_align > kPageSizeBytes)
    return 0;
  return align.stx_dio_offset_align;
}

bool set_direct_io(int fd, bool on) {
  const int flags = fcntl(fd, F_GETFL);
  return flags >= 0 && fcntl(fd, F_SETFL, on ? flags | O_DIRECT : flags & ~O_DIRECT) == 0;
}

// A large file already in the page cache does not go through a buffer, where
// it would be copied twice. Best: the target is written with O_DIRECT straight
// from a mapping of the source's cached pages (no copy at all, and no page
// cache filled for the target); else the kernel copies cache to cache
// (copy_file_range, one copy). Measured on hot 2 GiB and 10 x 100 MiB files:
// docs/BENCHMARKS.md. Any other large file is read with O_DIRECT where allowed.
void Engine::choose_data_path(FileTask& task) {
  const uint64_t size = task.source_stat.stx_size;
  if (task.size_unknown || size < kLargeFileBytes || task.extents.size() != 1 || task.extents.front().first != 0) return;
  if (mostly_cached(task.source_fd, size)) {
    // copy_file_range shares extents where it can (btrfs, NFS, ...): not
    // with --reflink=never, which promises a copy of its own.
    if (!try_mapped_direct_write(task))
      task.in_kernel = options_.copy_in_kernel && options_.reflink != ReflinkMode::never;
    return;
  }
  try_direct_io(task);
}

bool Engine::try_mapped_direct_write(FileTask& task) {
  if (!options_.io.direct_io) return false;
  const uint32_t alignment = direct_io_alignment(task.target_fd);
  if (alignment == 0 || kUnbufferedPieceBytes % alignment != 0) return false;
  const uint64_t size = task.source_stat.stx_size;
  void* mapping = mmap(nullptr, size, PROT_READ, MAP_SHARED, task.source_fd, 0);
  if (mapping == MAP_FAILED) return false;
  if (!set_direct_io(task.target_fd, true)) {
    munmap(mapping, size);
    return false;
  }
  task.mapping = static_cast<const uint8_t*>(mapping);
  task.mapping_length = size;
  task.direct_write_end = size / alignment * alignment;
  return true;
}

// Back to buffered writes on the target: for the unaligned tail, or for good
// when the filesystem refused a write (the mapping stays for the tail).
void Engine::stop_mapped_direct_write(FileTask& task) {
  set_direct_io(task.target_fd, false);
  task.direct_write_end = 0;
}

// O_DIRECT reads: the device writes straight into the registered buffer (no
// copy to user space, no page cache filled with data read once), and the
// write from that buffer is buffered. Measured here: O_DIRECT writes too were
// slower than the kernel's writeback on this host-cached disk
// (docs/BENCHMARKS.md). Pool buffers are page-aligned and a power of two
// long, and chunks start at multiples of the buffer size, so only the
// filesystem's alignment is checked.
void Engine::try_direct_io(FileTask& task) {
  if (!options_.io.direct_io) return;
  const uint32_t alignment = direct_io_alignment(task.source_fd);
  if (alignment == 0 || pool_.buffer_size() % alignment != 0) return;
  task.direct = set_direct_io(task.source_fd, true);
}

void Engine::stop_direct_io(FileTask& task) {
  set_direct_io(task.source_fd, false);
  task.direct = false;
}

Step Engine::next_step(const FileTask& task) const {
  switch (task.step) {
    case Step::opening: return Step::reflink;
    case Step::reflink: return Step::data;
    case Step::data: return Step::check_source;
    case Step::check_source: return Step::truncate;
    case Step::truncate: return Step::chown;
    case Step::chown: return Step::chmod;
    case Step::chmod: return Step::list_xattrs;
    case Step::list_xattrs: return Step::copy_xattr;
    case Step::copy_xattr: return Step::times;
    case Step::times: return Step::verify;
    case Step::verify: return Step::fsync;
    case Step::fsync: return Step::publish;
    case Step::publish: return Step::unmark;
    case Step::publish_temp_name: return Step::rename_into_place;
    case Step::rename_into_place:
      return task.link_group != nullptr && !task.link_owner ? Step::closing : Step::unmark;
    case Step::unmark: return Step::closing;
    case Step::link_existing: return Step::closing;
    case Step::link_existing_temp: return Step::rename_into_place;
    case Step::closing: return Step::done;
    case Step::done: return Step::done;
  }
  return Step::done;
}

void Engine::begin_closing(uint32_t slot) {
  tasks_[slot].step = Step::closing;
  issue_step(slot);
}

// Moves the task to its next step that has work and issues it.
void Engine::advance(uint32_t slot) {
  FileTask& task = tasks_[slot];
  for (;;) {
    // Once published, the file is unmarked even when the copy is stopped:
    // no final name may keep the temporary marker.
    if ((task.error != 0 || task.cancelled) && task.step < Step::closing && !task.published) {
      if (task.chunks_in_flight != 0) return;  // wait for the data in flight
      task.step = Step::closing;
    } else if (task.step == Step::data) {
      schedule_chunks(slot);
      if (task.chunks_in_flight != 0 || task.parked) return;
      task.step = next_step(task);
    } else if (task.step == Step::copy_xattr) {
      while (task.xattr_cursor < task.xattr_names_length &&
             is_ringcp_attribute(task.xattr_names.data() + task.xattr_cursor))
        task.xattr_cursor += std::strlen(task.xattr_names.data() + task.xattr_cursor) + 1;
      if (task.xattr_cursor < task.xattr_names_length) {
        const char* key = task.xattr_names.data() + task.xattr_cursor;
        task.xattr_value.resize(65536);
        Request get = Request::fgetxattr(task.source_fd, key, task.xattr_value.data(), task.xattr_value.size());
        get.user_data = make_user_data(Tag::file, slot, kGetXattr);
        task.ops_pending = 1;
        submit(get);
        return;
      }
      task.step = next_step(task);
    } else if (task.step == Step::closing || task.step == Step::done) {
      return;
    } else {
      task.step = next_step(task);
    }
    if (issue_step(slot)) return;
    if (task.step == Step::done) return;
  }
}

// Issues the op of the task's current step; false when the step has
// nothing to do (the caller moves on).
bool Engine::issue_step(uint32_t slot) {
  FileTask& task = tasks_[slot];
  DirNode* dir = task.dir;
  const uint64_t size = task.source_stat.stx_size;
  switch (task.step) {
    case Step::reflink:
      if (options_.reflink == ReflinkMode::never || size == 0 || task.size_unknown ||
          reflink_refused_devices_.count(makedev(task.source_stat.stx_dev_major, task.source_stat.stx_dev_minor)))
        return false;
      step_op(slot, Request::ficlone(task.target_fd, task.source_fd));
      return true;
    case Step::data:
      schedule_chunks(slot);
      return task.chunks_in_flight != 0 || task.parked;
    case Step::check_source:
      // Files of more than one buffer are re-checked: a change while they
      // were copied is reported, never copied silently wrong. Smaller files
      // are checked by their single read (it asks for more than the size).
      // A file of unknown size is copied as read, to its end.
      if (task.size_unknown) return false;
      if (!task.unbuffered() && size < pool_.buffer_size() && task.extents.size() <= 1) return false;
      task.target_stat = task.source_stat;
      step_op(slot, Request::statx(task.source_fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &task.source_stat));
      return true;
    case Step::truncate:
      if (!task.needs_truncate) return false;
      step_op(slot, Request::ftruncate(task.target_fd, size));
      return true;
    case Step::verify:
      if (!options_.verify) return false;
      if (const int code = verify_file(task); code == EIO) {
        fail(slot, "verification failed: copy differs from", source_path(dir, task.name), 0);
      } else if (code != 0) {
        fail(slot, "cannot verify", target_path(dir, task.target_name), code);
      }
      return false;
    case Step::chown:
      if (!options_.preserve.ownership) return false;
      // A new file already belongs to us; skip the syscall when that is the
      // source's owner too. Only in directories we created (mode 0700 until
      // finalized, so no setgid bit hands the file another group).
      if (task.source_stat.stx_uid == euid_ && task.source_stat.stx_gid == egid_ &&
          task.dir->created)
        return false;
      step_op(slot, Request::fchownat(task.target_fd, "", task.source_stat.stx_uid, task.source_stat.stx_gid,
                                      AT_EMPTY_PATH));
      return true;
    case Step::chmod:
      // Before publish_temp_name: an unnamed file's mode is seen by no one yet.
      if (!task.named_temp && !dir->default_acl && target_mode(task.source_stat) == (kTempFileMode & ~umask_))
        return false;
      step_op(slot, Request::fchmod(task.target_fd, target_mode(task.source_stat)));
      return true;
    case Step::list_xattrs:
      if (!options_.preserve.xattr) return false;
      task.xattr_names.resize(65536);
      step_op(slot, Request::flistxattr(task.source_fd, task.xattr_names.data(), task.xattr_names.size()));
      return true;
    case Step::copy_xattr:
      return false;  // driven by advance()
    case Step::times:
      if (!options_.preserve.timestamps) return false;
      step_op(slot, Request::utimensat(task.target_fd, nullptr, task.times, 0));
      return true;
    case Step::fsync:
      if (!options_.fsync) return false;
      step_op(slot, Request::fsync(task.target_fd));
      return true;
    case Step::publish:
      if (task.named_temp) {
        task.step = Step::rename_into_place;
        return issue_step(slot);
      }
      if (task.marked) note_replacement(dir);
      if (use_empty_path_link_) {
        step_op(slot, Request::linkat(task.target_fd, "", dir->target_fd, task.target_name.c_str(), AT_EMPTY_PATH));
      } else {
        std::snprintf(task.proc_path, sizeof task.proc_path, "/proc/self/fd/%d", task.target_fd);
        step_op(slot, Request::linkat(AT_FDCWD, task.proc_path, dir->target_fd, task.target_name.c_str(),
                                      AT_SYMLINK_FOLLOW));
      }
      return true;
    case Step::publish_temp_name:
      if (options_.clobber == ClobberMode::no_clobber) {
        ++report_.files_skipped;
        task.step = Step::closing;
        return issue_step(slot);
      }
      task.temp_name = random_temp_name();
      // Marked before it gets a name, so a later run knows it is ours (the
      // target appeared after this file was opened, or marking failed).
      if (!task.marked) task.marked = set_marker(task.target_fd, kTempMarkerXattr);
      if (use_empty_path_link_) {
        step_op(slot, Request::linkat(task.target_fd, "", dir->target_fd, task.temp_name.c_str(), AT_EMPTY_PATH));
      } else {
        std::snprintf(task.proc_path, sizeof task.proc_path, "/proc/self/fd/%d", task.target_fd);
        step_op(slot, Request::linkat(AT_FDCWD, task.proc_path, dir->target_fd, task.temp_name.c_str(),
                                      AT_SYMLINK_FOLLOW));
      }
      return true;
    case Step::rename_into_place:
      if (task.named_temp && !task.temp_linked) return false;
      if (task.marked) note_replacement(dir);
      step_op(slot, Request::renameat(dir->target_fd, task.temp_name.c_str(), dir->target_fd,
                                      task.target_name.c_str()));
      return true;
    case Step::unmark:
      if (task.error != 0) return false;
      if (task.marked) step_op(slot, Request::fremovexattr(task.target_fd, kTempMarkerXattr));
      if (task.link_owner && task.link_group != nullptr) {
        task.link_group->complete = true;
        for (uint32_t waiter : task.link_group->waiting) {
          tasks_[waiter].step = Step::link_existing;
          if (!issue_step(waiter)) advance(waiter);
        }
        task.link_group->waiting.clear();
      }
      ++report_.files_copied;
      if (task.mapping != nullptr) ++report_.files_from_mapping;
      else if (task.in_kernel) ++report_.files_in_kernel;
      return task.marked;
    case Step::link_existing: {
      LinkGroup& group = *task.link_group;
      step_op(slot, Request::linkat(group.anchor_fd, group.target_relative.c_str(), dir->target_fd,
                                    task.target_name.c_str(), 0));
      return true;
    }
    case Step::link_existing_temp: {
      LinkGroup& group = *task.link_group;
      if (task.named_temp && task.temp_linked) task.set_aside_temp_name = task.temp_name;
      task.temp_name = random_temp_name();
      step_op(slot, Request::linkat(group.anchor_fd, group.target_relative.c_str(), dir->target_fd,
                                    task.temp_name.c_str(), 0));
      return true;
    }
    case Step::closing: {
      if (task.link_owner && task.link_group != nullptr && !task.link_group->complete) {
        // The first copy failed: the others copy their data themselves.
        task.link_group->failed = true;
        for (uint32_t waiter : task.link_group->waiting) {
          tasks_[waiter].link_group = nullptr;
          plan_extents(tasks_[waiter]);
          tasks_[waiter].step = Step::reflink;
          if (!issue_step(waiter)) advance(waiter);
        }
        task.link_group->waiting.clear();
      }
      if (task.temp_linked && !task.temp_name.empty() && dir->target_fd >= 0) {
        // Never leave a temporary behind: remove it before closing.
        unlinkat(dir->target_fd, task.temp_name.c_str(), 0);
        task.temp_linked = false;
      }
      if (!task.set_aside_temp_name.empty() && dir->target_fd >= 0) {
        unlinkat(dir->target_fd, task.set_aside_temp_name.c_str(), 0);
        task.set_aside_temp_name.clear();
      }
      task.ops_pending = 0;
      if (task.source_fd >= 0) {
        Request close_source = Request::close(task.source_fd);
        close_source.user_data = make_user_data(Tag::file, slot, kCloseSource);
        ++task.ops_pending;
        submit(close_source);
        task.source_fd = -1;
      }
      if (task.target_fd >= 0) {
        Request close_target = Request::close(task.target_fd);
        close_target.user_data = make_user_data(Tag::file, slot, kCloseTarget);
        ++task.ops_pending;
        submit(close_target);
        task.target_fd = -1;
      }
      if (task.ops_pending == 0) {
        finish_task(slot);
        task.step = Step::done;
        return false;
      }
      return true;
    }
    default:
      return false;
  }
}

void Engine::schedule_chunks(uint32_t slot) {
  FileTask& task = tasks_[slot];
  if (task.unbuffered()) {
    schedule_unbuffered(slot);
    return;
  }
  task.parked = false;
  if (task.size_unknown) {
    schedule_read_to_end(slot);
    return;
  }
  while (task.error == 0 && !task.cancelled && task.extent_index < task.extents.size()) {
    const auto [extent_start, extent_end] = task.extents[task.extent_index];
    if (task.next_offset < extent_start) task.next_offset = extent_start;
    if (task.next_offset >= extent_end) {
      ++task.extent_index;
      continue;
    }
    // The last read asks for a whole buffer: more bytes than expected means
    // the file grew while it was copied.
    const uint64_t length = std::min<uint64_t>(pool_.buffer_size(), extent_end - task.next_offset);
    const bool last = task.next_offset + length == task.source_stat.stx_size;
    const bool ask_more = last && task.extents.size() == 1;
    if (!start_chunk_read(slot, length, ask_more)) return;
    task.next_offset += length;
  }
}

// One checkout per piece of work that is ready: a miss (counted by the pool)
// parks the file until a completion gives a buffer back. Otherwise a chunk
// reads `length` bytes (0: unknown, as much as a buffer holds) at the
// task's next offset, asking for a whole buffer when `ask_more`.
bool Engine::start_chunk_read(uint32_t slot, uint64_t length, bool ask_more) {
  FileTask& task = tasks_[slot];
  BufferSlot buffer = pool_.checkout();
  if (!buffer) {
    task.parked = true;
    parked_.push_back(slot);
    return false;
  }
  assert(!free_chunks_.empty() && "one chunk per buffer the pool can hold");
  const uint32_t index = free_chunks_.back();
  free_chunks_.pop_back();
  Chunk& chunk = chunks_[index];
  chunk.active = true;
  chunk.task = slot;
  chunk.offset = task.next_offset;
  chunk.length = static_cast<uint32_t>(length);
  chunk.requested = ask_more || length == 0 ? buffer.size() : chunk.length;
  chunk.done = 0;
  chunk.writing = false;
  chunk.refusals = 0;
  chunk.slot = std::move(buffer);
  ++task.chunks_in_flight;
  Request read = Request::read(task.source_fd, chunk.slot.data(), chunk.requested, chunk.offset,
                               chunk.slot.fixed_index());
  read.user_data = make_user_data(Tag::chunk, index, kChunkRead);
  submit(read);
  return true;
}

void Engine::on_chunk_completion(uint32_t index, uint16_t what, int64_t result) {
  Chunk& chunk = chunks_[index];
  assert(chunk.active);
  const uint32_t slot = chunk.task;
  FileTask& task = tasks_[slot];
  DirNode* dir = task.dir;
  if (result == -EINTR) {
    // Interrupted before it moved anything: the same piece again at once.
  } else if (result == -EAGAIN) {
    ++chunk.refusals;  // the same piece again, after a pause
  } else if (result == -EINVAL && task.direct && what == kChunkRead) {
    // The filesystem refused this O_DIRECT read after all (e.g. a short read
    // left an unaligned remainder): go on buffered.
    stop_direct_io(task);
  } else if (result < 0) {
    if (what == kChunkRead) fail(slot, "error reading", source_path(dir, task.name), int(-result));
    else fail(slot, "error writing", target_path(dir, task.target_name), int(-result));
    release_chunk(index);
    advance(slot);
    return;
  } else if (what == kChunkRead && task.size_unknown) {
    if (result == 0) {
      task.end_of_file = true;
      release_chunk(index);
      advance(slot);
      return;
    }
    // Whatever one read gives is written; the next read starts after it.
    chunk.length = static_cast<uint32_t>(result);
    chunk.writing = true;
    chunk.done = 0;
    task.next_offset += uint64_t(result);
  } else if (what == kChunkRead) {
    if (result == 0 && chunk.done < chunk.length) {
      fail(slot, "source file shrank while it was copied:", source_path(dir, task.name), 0);
      release_chunk(index);
      advance(slot);
      return;
    }
    chunk.done += static_cast<uint32_t>(result);
    if (chunk.done > chunk.length) {
      fail(slot, "source file grew while it was copied:", source_path(dir, task.name), 0);
      release_chunk(index);
      advance(slot);
      return;
    }
    if (chunk.done == chunk.length) {
      chunk.writing = true;
      chunk.done = 0;
    }
  } else {
    if (result == 0) {
      fail(slot, "error writing", target_path(dir, task.target_name), EIO);
      release_chunk(index);
      advance(slot);
      return;
    }
    chunk.done += static_cast<uint32_t>(result);
    if (callbacks_.progress) callbacks_.progress->bytes_done.fetch_add(uint64_t(result), std::memory_order_relaxed);
    report_.bytes_copied += uint64_t(result);
    if (chunk.done == chunk.length) {
      release_chunk(index);
      advance(slot);
      return;
    }
  }
  // Issue (or resume after a short transfer) the read or the write.
  Request request =
      chunk.writing
          ? Request::write(task.target_fd, chunk.slot.data() + chunk.done, chunk.length - chunk.done,
                           chunk.offset + chunk.done, chunk.slot.fixed_index())
          : Request::read(task.source_fd, chunk.slot.data() + chunk.done,
                          std::max(chunk.requested, chunk.length) - chunk.done, chunk.offset + chunk.done,
                          chunk.slot.fixed_index());
  request.user_data = make_user_data(Tag::chunk, index, chunk.writing ? kChunkWrite : kChunkRead);
  if (result == -EAGAIN) {
    resubmit_later(request, chunk.refusals);
    return;
  }
  chunk.refusals = 0;
  submit(request);
}

// A file of unknown size: one buffer at a time, read at the next offset and
// written as far as the read went, until a read returns 0.
void Engine::schedule_read_to_end(uint32_t slot) {
  FileTask& task = tasks_[slot];
  if (task.chunks_in_flight != 0 || task.end_of_file || task.error != 0 || task.cancelled) return;
  start_chunk_read(slot, 0, true);
}

// Pieces that skip the buffer pool, one at a time per file: a write from the
// source's mapping (O_DIRECT up to direct_write_end), or copy_file_range,
// which the backend runs as a direct syscall.
void Engine::schedule_unbuffered(uint32_t slot) {
  FileTask& task = tasks_[slot];
  if (task.chunks_in_flight != 0 || task.error != 0 || task.cancelled) return;
  const uint64_t end = task.extents.empty() ? 0 : task.extents.front().second;
  if (task.next_offset >= end) return;
  ++task.chunks_in_flight;
  submit(unbuffered_piece(slot));
}

// The piece at the task's next offset.
Request Engine::unbuffered_piece(uint32_t slot) {
  FileTask& task = tasks_[slot];
  const uint64_t end = task.extents.front().second;
  uint64_t length = std::min(kUnbufferedPieceBytes, end - task.next_offset);
  Request piece;
  if (task.mapping != nullptr) {
    if (task.next_offset < task.direct_write_end) {
      length = std::min(length, task.direct_write_end - task.next_offset);
    } else if (task.direct_write_end != 0) {
      stop_mapped_direct_write(task);  // the unaligned tail
    }
    piece = Request::write(task.target_fd, task.mapping + task.next_offset, length, task.next_offset);
  } else {
    piece = Request::copy_file_range(task.source_fd, task.target_fd, task.next_offset, length);
  }
  piece.user_data = make_user_data(Tag::file, slot, kUnbufferedPiece);
  return piece;
}

void Engine::on_unbuffered_completion(uint32_t slot, int64_t result) {
  FileTask& task = tasks_[slot];
  DirNode* dir = task.dir;
  --task.chunks_in_flight;
  const bool mapped = task.mapping != nullptr;
  if (result == -EAGAIN && !task.cancelled && task.error == 0) {
    // The same piece again, after a pause.
    ++task.chunks_in_flight;
    resubmit_later(unbuffered_piece(slot), ++task.refusals);
    return;
  }
  if (result != -EAGAIN) task.refusals = 0;
  if (result == -EINTR || result == -EAGAIN) {
    // The same piece again (EAGAIN: once the copy is stopped, not at all).
  } else if (!mapped && (result == -EXDEV || result == -EINVAL || result == -EOPNOTSUPP || result == -ENOSYS)) {
    // This pair of files cannot be copied in the kernel (e.g. across
    // filesystems): the rest goes through the buffers.
    task.in_kernel = false;
  } else if (mapped && result == -EINVAL && task.direct_write_end != 0) {
    // The filesystem refused this O_DIRECT write after all: go on buffered
    // from the same mapping.
    stop_mapped_direct_write(task);
  } else if (mapped && result == -EFAULT) {
    // The mapping ends where the file now ends.
    fail(slot, "source file shrank while it was copied:", source_path(dir, task.name), 0);
  } else if (result < 0) {
    if (mapped) fail(slot, "error writing", target_path(dir, task.target_name), int(-result));
    else fail(slot, "error copying " + quote_name(source_path(dir, task.name)) + " to",
              target_path(dir, task.target_name), int(-result));
  } else if (result == 0) {
    // copy_file_range: end of the source; a write of nothing: the device's fault.
    if (mapped) fail(slot, "error writing", target_path(dir, task.target_name), EIO);
    else fail(slot, "source file shrank while it was copied:", source_path(dir, task.name), 0);
  } else {
    task.next_offset += uint64_t(result);
    if (callbacks_.progress) callbacks_.progress->bytes_done.fetch_add(uint64_t(result), std::memory_order_relaxed);
    report_.bytes_copied += uint64_t(result);
    if (mapped) {
      // Drop the page-table entries of what is written: the pages stay in
      // the page cache, and the process does not grow to the file's size.
      const uint64_t written = task.next_offset / kPageSizeBytes * kPageSizeBytes;
      if (written > task.mapping_released) {
        madvise(const_cast<uint8_t*>(task.mapping) + task.mapping_released, written - task.mapping_released,
                MADV_DONTNEED);
        task.mapping_released = written;
      }
    }
  }
  advance(slot);
}

void Engine::release_chunk(uint32_t index) {
  Chunk& chunk = chunks_[index];
  --tasks_[chunk.task].chunks_in_flight;
  chunk.slot.release();
  chunk.active = false;
  free_chunks_.push_back(index);
}

void Engine::retry_parked() {
  // A parked task is retried only when a buffer is free: checkout() is called
  // once per piece of work that can go, never in a spin.
  for (size_t n = parked_.size(); n > 0 && !parked_.empty(); --n) {
    if (free_chunks_.empty() || !pool_.can_checkout() || pool_.resize_pending()) break;
    const uint32_t slot = parked_.front();
    parked_.pop_front();
    FileTask& task = tasks_[slot];
    if (!task.active || !task.parked) continue;
    task.parked = false;
    advance(slot);
  }
}

// 0 when the copy matches, else an errno (EIO for a mismatch).
int Engine::verify_file(FileTask& task) {
  // Hash the source and the target re-read from the device: the target is
  // written back and its cached pages dropped first, so the bytes compared
  // are the ones on disk, not the buffer just written. Fresh descriptors
  // (through /proc) read buffered even when the copy used O_DIRECT.
  if (fdatasync(task.target_fd) != 0) return errno;
  posix_fadvise(task.target_fd, 0, 0, POSIX_FADV_DONTNEED);
  auto reopen = [](int fd) {
    char path[64];
    std::snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    return open(path, O_RDONLY | O_CLOEXEC);
  };
  std::vector<uint8_t> buffer(1 << 20);
  auto hash_fd = [&](int fd, uint64_t* hash) -> int {
    XXH3_state_t* state = XXH3_createState();
    XXH3_64bits_reset(state);
    uint64_t offset = 0;
    int code = 0;
    for (;;) {
      const ssize_t n = pread(fd, buffer.data(), buffer.size(), off_t(offset));
      if (n < 0) {
        code = errno;
        break;
      }
      if (n == 0) break;
      XXH3_64bits_update(state, buffer.data(), size_t(n));
      offset += uint64_t(n);
    }
    *hash = XXH3_64bits_digest(state);
    XXH3_freeState(state);
    return code;
  };
  const int source_read = reopen(task.source_fd);
  if (source_read < 0) return errno;
  const int target_read = reopen(task.target_fd);
  if (target_read < 0) {
    const int code = errno;
    close(source_read);
    return code;
  }
  posix_fadvise(target_read, 0, 0, POSIX_FADV_DONTNEED);
  uint64_t source_hash = 0, target_hash = 0;
  int code = hash_fd(source_read, &source_hash);
  if (code == 0) code = hash_fd(target_read, &target_hash);
  close(source_read);
  close(target_read);
  if (code != 0) return code;
  return source_hash == target_hash ? 0 : EIO;
}

void Engine::finish_task(uint32_t slot) {
  FileTask& task = tasks_[slot];
  if (!task.active) return;
  if (task.mapping != nullptr) {
    munmap(const_cast<uint8_t*>(task.mapping), task.mapping_length);
    task.mapping = nullptr;
  }
  if (task.error != 0) {
    task.dir->had_error = true;
    error(task.error_message);
  }
  if (callbacks_.progress) callbacks_.progress->files_done.fetch_add(1, std::memory_order_relaxed);
  DirNode* dir = task.dir;
  task.active = false;
  task.step = Step::done;
  free_tasks_.push_back(slot);
  --active_tasks_;
  child_finished(dir);
}

void Engine::stop_everything() {
  stopping_ = true;
  report_.interrupted = true;
  for (FileTask& task : tasks_) {
    if (task.active) task.cancelled = true;
  }
  // Parked tasks will not get buffers again: send them to cleanup.
  std::deque<uint32_t> parked;
  parked.swap(parked_);
  for (uint32_t slot : parked) {
    tasks_[slot].parked = false;
    advance(slot);
  }
  // Directories still being read are finished without their other entries.
  for (DirNode* dir : stack_) {
    dir->walk_done = true;
    dir->pending += 1;
    child_finished(dir);
  }
  stack_.clear();
}

void Engine::run(const std::vector<CopyRoot>& roots) {
  pending_roots_ = roots;
  for (;;) {
    if (!stopping_ && stop_requested()) stop_everything();
    finalize_directories();
    walk_some();
    finalize_directories();
    retry_parked();
    submit_due_requests();
    flush_overflow();
    pool_.apply_pending_resize();
    if (backend_.in_flight() != 0 || !overflow_.empty()) {
      reap_and_dispatch(1);
      continue;
    }
    if (!deferred_.empty()) {
      sleep_until_a_request_is_due();
      continue;
    }
    // Nothing in flight.
    if (!finalize_queue_.empty()) continue;
    const bool roots_left = !stopping_ && next_root_ < pending_roots_.size();
    const bool can_walk = !stopping_ && active_tasks_ < tasks_.size() && (!stack_.empty() || roots_left);
    if (can_walk) continue;
    if (!parked_.empty()) {
      // Every buffer is free when nothing is in flight: this retry succeeds.
      const size_t before = parked_.size();
      retry_parked();
      if (parked_.size() < before || backend_.in_flight() != 0) continue;
    }
    if (active_tasks_ != 0) {
      error("internal error: " + std::to_string(active_tasks_) + " files stalled with nothing in flight");
      break;
    }
    if (stack_.empty() && !roots_left) break;
  }
  finalize_directories();
}

}  // namespace

Result<CopyReport> run_copy(const std::vector<CopyRoot>& roots, const CopyOptions& options,
                            const CopyCallbacks& callbacks) {
  const auto started = Clock::now();
  auto selection = make_backend(options.engine, options.io);
  if (!selection) return selection.error();
  if (callbacks.decorate_backend)
    selection->backend = callbacks.decorate_backend(std::move(selection->backend));
  CopyReport report;
  report.backend = selection->kind;
  report.backend_reason = selection->reason;
  report.backend_description = selection->backend->describe();
  if (options.verbosity > 0 && callbacks.report_verbose)
    callbacks.report_verbose("backend: " + std::string(backend_name(selection->kind)) + " (" +
                             selection->reason + ")");

  // Deep trees keep a descriptor per level open.
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }
  {
    Engine engine(*selection->backend, options, callbacks, report);
    engine.run(roots);
  }
  report.pool = selection->backend->buffers().stats();
  report.ops = selection->backend->op_counts();
  report.seconds = std::chrono::duration<double>(Clock::now() - started).count();
  return report;
}

}  // namespace ringio
