// The pipelined tree copier: one thread, one backend. Its rooms:
//   io_queue      operation records (kind + owner) for everything submitted
//   walker        reads source directories, turns entries into work
//   directories   pending counts; metadata and --delete once the contents are done
//   file_task     the per-file state machine: one transition function
//   data_movers   chunks through the pool (plain or O_DIRECT reads), or
//                 unbuffered pieces (O_DIRECT writes from a mapping, copy_file_range)
//   verify        re-reads source and copy through the pool and compares
//   publisher     the on-disk safety protocol (temporaries, markers, links)
//   file_policy   pure decisions (skip, mode, data path)
//   link_groups, xattr_copier, exclude_matcher, directory_reader
// docs/design.md describes how they fit together.
#pragma once

#include <linux/stat.h>
#include <sys/types.h>
#include <xxhash.h>

#include <deque>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_set>
#include <vector>

#include "copy/directory_reader.hpp"
#include "copy/exclude_matcher.hpp"
#include "copy/file_policy.hpp"
#include "copy/io_queue.hpp"
#include "copy/link_groups.hpp"
#include "copy/publisher.hpp"
#include "copy/reporter.hpp"
#include "copy/xattr_copier.hpp"
#include "ringio/copy.hpp"

namespace ringio::copy {

// An entry the walker has yet to handle.
struct WalkEntry {
  std::string name;
  unsigned char type = 0;  // DT_*
};

struct DirNode {
  DirNode* parent = nullptr;
  // Read in full when the directory is entered, so that its descriptors
  // can be closed while the walk is deeper down (see ensure_open).
  std::vector<WalkEntry> entries;
  size_t next_entry = 0;
  int source_fd = -1;
  int target_fd = -1;
  // How to open it again from the parent, and what it must then be.
  std::string source_name, target_name;
  uint64_t target_device = 0, target_inode = 0;
  bool suspended = false;     // descriptors closed to stay within the budget
  bool lost = false;          // suspended, and could not be opened again (reported)
  uint32_t files_active = 0;  // file tasks of this directory in flight: it stays open
  std::string source_display;  // for messages
  std::string target_display;
  std::string target_relative;  // from the root's anchor: hard links, excludes
  int anchor_fd = -1;           // the root's destination parent
  struct statx source_stat {};
  bool is_root_parent = false;  // the pseudo node that holds a root entry
  bool target_preexisted = false;
  bool created = false;
  bool default_acl = true;  // new files may get other bits than mode & ~umask (until checked)
  bool walk_done = false;
  bool had_error = false;
  bool queued_for_finishing = false;
  bool replacing_marked = false;  // kReplacingXattr set by this run, removed when finished
  bool replacing_mark_tried = false;
  bool source_sizes_unknown = false;  // a pseudo filesystem: files are read to their end
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
  verify_sync,  // --verify: the copy written back first, so it is read from the device
  verify,
  fsync,
  publish,
  publish_temp_name,
  rename_into_place,
  unmark,
  link_existing,
  link_existing_temp,
  waiting_for_link,  // another name of the inode is being copied: linked to it when in place
  closing,
  done,
};

// A file task's own names for its operations (OpRecord::kind).
enum class FileOp : uint8_t {
  open_source,
  stat_source,
  open_target,
  stat_target,
  step,  // the operation of OpRecord::step
  close,
  get_xattr,
  set_xattr,
  unbuffered_piece,
  verify_read,
};
enum class ChunkOp : uint8_t { read, write };

// Verify: the source, then the copy, each read through a fresh descriptor
// into pool buffers and hashed.
struct VerifyState {
  int source_fd = -1;
  int target_fd = -1;
  bool reading_target = false;
  bool started = false;
  bool done = false;
  uint64_t offset = 0;
  uint64_t source_hash = 0;
  XXH3_state_t* hash = nullptr;
  BufferSlot buffer;
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
  bool named_temp = false;   // target_fd is a named temporary (no O_TMPFILE)
  bool temp_linked = false;  // temp_name exists in the target directory
  bool marked = false;       // the target carries kTempMarkerXattr
  bool published = false;    // the target is under its final name: only unmark is left
  std::string temp_name;
  // A named temporary set aside while temp_name names a hard link waiting
  // to be renamed over an existing file (link_existing_temp).
  std::string set_aside_temp_name;
  ProcPath proc_path;
  Step step = Step::opening;
  uint32_t ops_pending = 0;  // open/stat at the start, closes at the end
  bool in_ready_queue = false;
  int error = 0;
  std::string error_message;
  bool cancelled = false;
  // data
  DataPath data_path = DataPath::pooled;
  std::vector<std::pair<uint64_t, uint64_t>> extents;  // [offset, end) with data
  size_t extent_index = 0;
  uint64_t next_offset = 0;
  uint32_t chunks_in_flight = 0;
  bool needs_truncate = false;
  const uint8_t* mapping = nullptr;  // mapped_direct_write: the source's pages
  uint64_t mapping_length = 0;
  uint64_t mapping_released = 0;  // pages below this offset are unmapped again
  uint64_t direct_write_end = 0;  // end of the O_DIRECT part; the rest is written buffered
  uint32_t refusals = 0;          // EAGAIN completions of unbuffered pieces in a row
  bool parked = false;            // waiting for a buffer
  // The size is not known before reading: one buffer at a time is read and
  // written until a read returns 0.
  bool size_unknown = false;
  bool end_of_file = false;
  XattrCopier xattrs;
  VerifyState verify;
  // hard links
  LinkGroup* link_group = nullptr;
  bool link_owner = false;
  struct timespec times[2] = {};

  bool unbuffered() const {
    return data_path == DataPath::in_kernel || data_path == DataPath::mapped_direct_write;
  }
  bool direct() const { return data_path == DataPath::direct_read; }
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
  Engine(Backend& backend, const CopyOptions& options, const CopyCallbacks& callbacks, CopyReport& report);
  ~Engine();
  void run(const std::vector<CopyRoot>& roots);

 private:
  // ---- loop (engine.cpp) ----
  int64_t call(const Request& request);
  void reap(unsigned min_completions);
  void dispatch(const Arrival& arrival);
  void submit_file_op(uint32_t slot, const Request& request, FileOp kind);
  void step_op(uint32_t slot, const Request& request);
  void wake(uint32_t slot);
  void run_ready();
  void retry_parked();
  bool stop_requested() const;
  void stop_everything();
  bool finished_or_stalled();

  // ---- walker (walker.cpp) ----
  void start_root(const CopyRoot& root);
  DirNode* open_root_parent(const CopyRoot& root, const std::string& source_parent,
                            const std::string& target_parent);
  void walk_some();
  void handle_entry(DirNode* parent, const std::string& name, const std::string& target_name, unsigned char type,
                    bool is_root);
  bool is_cycle(DirNode* parent, const struct statx& st, const std::string& display);
  void enter_directory(DirNode* parent, const std::string& name, const std::string& target_name,
                       const struct statx& st);
  bool open_target_directory(DirNode* parent, DirNode* node, const std::string& target_name);
  void copy_symlink(DirNode* parent, const std::string& name, const std::string& target_name,
                    const struct statx& st);
  void copy_special(DirNode* parent, const std::string& name, const std::string& target_name,
                    const struct statx& st);
  int64_t replace_entry(DirNode* parent, const std::string& target_name, const std::string& temp_name,
                        const Request& make);
  void apply_path_metadata(DirNode* parent, const std::string& target_name, const struct statx& st,
                           const std::string& display);
  bool holds_files_of_unknown_size(int dirfd);
  void list_entries(DirNode* dir);
  bool ensure_open(DirNode* dir);
  bool reopen(DirNode* dir);
  void keep_within_descriptor_budget(const DirNode* keep);
  void close_directory_descriptors(DirNode* dir);
  bool remember_target(DirNode* dir);

  // ---- directories (directories.cpp) ----
  void child_finished(DirNode* dir);
  void finish_directories();
  void finish(DirNode* dir);
  void apply_directory_metadata(DirNode* dir);
  void close_directory(DirNode* dir);
  void note_replacement(DirNode* dir);
  void delete_extraneous(DirNode* dir);
  uint64_t remove_tree(int dirfd, const std::string& name, const std::string& display);
  int open_for_removal(int parent_fd, const std::string& name, const std::string& display,
                       std::vector<std::string>* children);
  void modes_not_kept(const std::string& display, int code);

  // ---- file tasks (file_task.cpp) ----
  void start_file(DirNode* dir, const std::string& name, const std::string& target_name);
  uint32_t take_task_slot();
  void on_file_completion(uint32_t slot, const OpRecord& op, int64_t result);
  void on_opening_result(uint32_t slot, FileOp kind, int64_t result);
  void on_xattr_result(uint32_t slot, FileOp kind, int64_t result);
  std::optional<Step> on_step_result(uint32_t slot, Step step, int64_t result);
  std::optional<Step> on_publish_result(uint32_t slot, Step step, int code, const std::string& target);
  std::optional<Step> on_link_result(uint32_t slot, Step step, int code, const std::string& target);
  Step after_opening(uint32_t slot);
  Step join_link_group(uint32_t slot);
  std::optional<Step> after_link_wait(uint32_t slot);
  Step begin_data(uint32_t slot);
  void advance(uint32_t slot, std::optional<Step> branch = std::nullopt);
  Step next_step(const FileTask& task) const;
  bool issue_step(uint32_t slot);
  bool issue_metadata_step(uint32_t slot);
  bool issue_publish_step(uint32_t slot);
  bool issue_unmark(uint32_t slot);
  bool issue_closing(uint32_t slot);
  void remove_temporary(DirNode* dir, const std::string& name);
  bool issue_copy_xattr(uint32_t slot);
  void settle_link_group(FileTask& task, bool complete);
  void fail(uint32_t slot, const std::string& what, const std::string& path, int code);
  std::optional<Step> copy_instead_of_link(uint32_t slot, const std::string& target, int code);
  void finish_task(uint32_t slot);
  std::string source_path(const FileTask& task) const;
  std::string target_path(const FileTask& task) const;

  // ---- data (data_movers.cpp) ----
  int plan_extents(FileTask& task);
  void choose_data_path(FileTask& task);
  bool set_up_data_path(FileTask& task, DataPath path, uint32_t target_alignment);
  void stop_direct_io(FileTask& task);
  void stop_mapped_direct_write(FileTask& task);
  bool schedule_data(uint32_t slot);
  void schedule_chunks(uint32_t slot);
  bool start_chunk_read(uint32_t slot, uint64_t length, bool ask_more);
  void on_chunk_completion(uint32_t index, ChunkOp op, int64_t result);
  bool settle_chunk_read(uint32_t index, int64_t result);
  bool settle_chunk_write(uint32_t index, int64_t result);
  void continue_chunk(uint32_t index, int64_t result);
  void release_chunk(uint32_t index);
  void schedule_unbuffered(uint32_t slot);
  Request unbuffered_piece(uint32_t slot);
  void on_unbuffered_completion(uint32_t slot, int64_t result);
  void unbuffered_progress(FileTask& task, int64_t bytes);
  void release_mapping(FileTask& task);
  void count_bytes(uint64_t bytes);

  // ---- verify (verify.cpp) ----
  bool verify_step(uint32_t slot);
  int open_for_verify(FileTask& task);
  bool issue_verify_read(uint32_t slot);
  void on_verify_read(uint32_t slot, int64_t result);
  void end_verify(FileTask& task);

  const CopyOptions& options_;
  const CopyCallbacks& callbacks_;
  CopyReport& report_;
  Reporter reporter_;
  IoQueue queue_;
  RegisteredBufferGroup& pool_;
  Publisher publisher_;
  ExcludeMatcher excludes_;
  LinkGroups link_groups_;
  XattrCopier directory_xattrs_;
  DataPathRules data_rules_;

  std::vector<FileTask> tasks_;
  std::vector<uint32_t> free_tasks_;
  uint32_t active_tasks_ = 0;
  std::vector<Chunk> chunks_;
  std::vector<uint32_t> free_chunks_;
  std::deque<uint32_t> parked_;  // tasks waiting for a buffer
  std::deque<uint32_t> ready_;   // tasks woken by another task: advanced from the loop
  std::vector<Arrival> arrivals_;

  std::vector<std::unique_ptr<DirNode>> nodes_;  // every live directory node
  std::vector<DirNode*> stack_;                  // directories being read, innermost last
  std::deque<DirNode*> finish_queue_;
  uint32_t open_directories_ = 0;  // nodes below the roots with their descriptors open
  std::vector<CopyRoot> roots_;
  size_t next_root_ = 0;

  uid_t euid_ = 0;
  gid_t egid_ = 0;
  bool tmpfile_unsupported_ = false;
  std::set<uint64_t> reflink_refused_devices_;  // sources whose files cannot be cloned to the target
  bool modes_not_kept_said_ = false;
  bool stopping_ = false;
  uint32_t call_sequence_ = 0;
  uint32_t call_waiting_ = 0;
  int64_t call_result_ = 0;
  bool call_done_ = false;
};

}  // namespace ringio::copy
