// The file task: one regular file from open to close. Its step moves only
// in advance(), the one transition function: a completion handler settles
// what its result means (fail the task, or name the step to branch to) and
// calls advance(); a task another task unblocks is woken through the ready
// queue, never advanced from inside the other's handler.
//
//   opening -> [waiting_for_link -> link_existing | reflink] -> reflink -> data
//   -> check_source -> truncate -> chown -> chmod -> list_xattrs -> copy_xattr
//   -> times -> verify_sync -> verify -> fsync -> publish | rename_into_place -> unmark -> closing -> done
//   publish (EEXIST) -> publish_temp_name -> rename_into_place
//   link_existing (EEXIST) -> link_existing_temp -> rename_into_place
//   any step, on an error or a stop before publishing -> closing
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cassert>

#include "copy/engine.hpp"

namespace ringio::copy {

std::string Engine::source_path(const FileTask& task) const { return join_path(task.dir->source_display, task.name); }
std::string Engine::target_path(const FileTask& task) const {
  return join_path(task.dir->target_display, task.target_name);
}

uint32_t Engine::take_task_slot() {
  assert(!free_tasks_.empty());
  const uint32_t slot = free_tasks_.back();
  free_tasks_.pop_back();
  ++active_tasks_;
  FileTask& task = tasks_[slot];
  // Reuse the slot's buffers: no allocation per file for them.
  XattrCopier xattrs = std::move(task.xattrs);
  std::vector<std::pair<uint64_t, uint64_t>> extents = std::move(task.extents);
  XXH3_state_t* hash = task.verify.hash;
  task = FileTask{};
  task.xattrs = std::move(xattrs);
  task.extents = std::move(extents);
  task.extents.clear();
  task.verify.hash = hash;
  return slot;
}

void Engine::start_file(DirNode* dir, const std::string& name, const std::string& target_name) {
  const uint32_t slot = take_task_slot();
  dir->pending += 1;
  dir->files_active += 1;
  FileTask& task = tasks_[slot];
  task.active = true;
  task.dir = dir;
  task.name = name;
  task.target_name = target_name;
  task.step = Step::opening;
  // Open and stat the source, and create the unnamed target, all at once.
  const int follow = options_.symlinks == SymlinkMode::dereference ? 0 : O_NOFOLLOW;
  task.ops_pending = 2;
  submit_file_op(slot, Request::openat(dir->source_fd, task.name.c_str(), O_RDONLY | O_CLOEXEC | follow),
                 FileOp::open_source);
  submit_file_op(slot, Request::statx(dir->source_fd, task.name.c_str(), follow ? AT_SYMLINK_NOFOLLOW : 0,
                                      STATX_BASIC_STATS, &task.source_stat),
                 FileOp::stat_source);
  const bool create = !options_.dry_run && dir->target_fd >= 0;
  if (create) {
    task.named_temp = tmpfile_unsupported_;
    task.temp_linked = tmpfile_unsupported_;
    ++task.ops_pending;
    submit_file_op(slot, publisher_.open_target(dir->target_fd, task.named_temp, &task.temp_name), FileOp::open_target);
  }
  if (dir->target_preexisted && dir->target_fd >= 0) {
    ++task.ops_pending;
    submit_file_op(slot, Request::statx(dir->target_fd, task.target_name.c_str(), AT_SYMLINK_NOFOLLOW,
                                        STATX_BASIC_STATS, &task.target_stat),
                   FileOp::stat_target);
  }
}

void Engine::fail(uint32_t slot, const std::string& what, const std::string& path, int code) {
  FileTask& task = tasks_[slot];
  if (task.error == 0) {
    task.error = code != 0 ? code : EIO;  // a failure without errno still fails
    task.error_message = what + " " + quote_name(path) + (code != 0 ? ": " + errno_text(code) : "");
  }
}

void Engine::on_file_completion(uint32_t slot, const OpRecord& op, int64_t result) {
  FileTask& task = tasks_[slot];
  assert(task.active);
  switch (FileOp(op.kind)) {
    case FileOp::open_source:
    case FileOp::stat_source:
    case FileOp::open_target:
    case FileOp::stat_target:
      on_opening_result(slot, FileOp(op.kind), result);
      return;
    case FileOp::step:
      advance(slot, on_step_result(slot, Step(op.step), result));
      return;
    case FileOp::get_xattr:
    case FileOp::set_xattr:
      on_xattr_result(slot, FileOp(op.kind), result);
      return;
    case FileOp::unbuffered_piece:
      on_unbuffered_completion(slot, result);
      return;
    case FileOp::verify_read:
      on_verify_read(slot, result);
      return;
    case FileOp::close:
      if (--task.ops_pending == 0) finish_task(slot);
      return;
  }
}

void Engine::on_opening_result(uint32_t slot, FileOp kind, int64_t result) {
  FileTask& task = tasks_[slot];
  if (kind == FileOp::open_source) {
    if (result >= 0) task.source_fd = int(result);
    else fail(slot, "cannot open", source_path(task), int(-result));
  } else if (kind == FileOp::stat_source) {
    if (result < 0) fail(slot, "cannot stat", source_path(task), int(-result));
  } else if (kind == FileOp::stat_target) {
    task.target_exists = result == 0;
  } else if (result >= 0) {
    task.target_fd = int(result);
    // A named temporary is ours only when marked; one that cannot be
    // marked (no user xattrs here) is still removed on every failure
    // path, only a SIGKILL before its rename leaves it behind.
    if (task.named_temp) task.marked = publisher_.set_marker(task.target_fd, kTempMarkerXattr);
  } else if (!task.named_temp && is_tmpfile_unsupported(int(-result))) {
    // This filesystem has no O_TMPFILE: a marked temporary name instead.
    tmpfile_unsupported_ = true;
    task.named_temp = true;
    task.temp_linked = true;
    submit_file_op(slot, publisher_.open_target(task.dir->target_fd, true, &task.temp_name), FileOp::open_target);
    return;  // still pending
  } else {
    task.temp_linked = false;
    fail(slot, "cannot create regular file", target_path(task), int(-result));
  }
  if (--task.ops_pending == 0) advance(slot, after_opening(slot));
}

Step Engine::after_opening(uint32_t slot) {
  FileTask& task = tasks_[slot];
  if (task.error == 0 && !S_ISREG(task.source_stat.stx_mode))
    fail(slot, "source is no longer a regular file:", source_path(task), 0);
  if (task.error != 0) return Step::closing;
  if (task.target_exists && S_ISDIR(task.target_stat.stx_mode)) {
    fail(slot, "cannot overwrite directory", target_path(task), 0);
    return Step::closing;
  }
  if (task.target_exists && should_skip(options_.clobber, task.source_stat, task.target_stat)) {
    ++report_.files_skipped;
    reporter_.verbose("skipped " + quote_name(target_path(task)));
    return Step::closing;
  }
  if (options_.dry_run) {
    reporter_.verbose("would copy " + quote_name(source_path(task)) + " -> " + quote_name(target_path(task)));
    ++report_.files_copied;
    return Step::closing;
  }
  task.times[0] = {task.source_stat.stx_atime.tv_sec, task.source_stat.stx_atime.tv_nsec};
  task.times[1] = {task.source_stat.stx_mtime.tv_sec, task.source_stat.stx_mtime.tv_nsec};
  if (options_.preserve.links && task.source_stat.stx_nlink > 1) {
    const Step step = join_link_group(slot);
    if (step != Step::reflink) return step;
  }
  // A file that replaces another gets a temporary name before its rename:
  // marked now, while its mode still lets its owner change attributes.
  if (task.target_exists && !task.marked) task.marked = publisher_.set_marker(task.target_fd, kTempMarkerXattr);
  return begin_data(slot);
}

Step Engine::join_link_group(uint32_t slot) {
  FileTask& task = tasks_[slot];
  const DirNode* dir = task.dir;
  const std::string relative = dir->target_relative.empty() ? task.target_name
                                                             : dir->target_relative + "/" + task.target_name;
  const LinkGroups::Joined joined =
      link_groups_.join(makedev(task.source_stat.stx_dev_major, task.source_stat.stx_dev_minor),
                        task.source_stat.stx_ino, slot, dir->anchor_fd, relative, target_path(task));
  task.link_group = joined.group;
  switch (joined.role) {
    case LinkGroups::Role::owner:
      task.link_owner = true;
      return Step::reflink;
    case LinkGroups::Role::wait:
      return Step::waiting_for_link;
    case LinkGroups::Role::link_now:
      return Step::link_existing;
    case LinkGroups::Role::copy_data:
      return Step::reflink;
  }
  return Step::reflink;
}

// Woken: the group's first copy is in place (link to it) or failed (copy
// the data here). nullopt: still waiting.
std::optional<Step> Engine::after_link_wait(uint32_t slot) {
  FileTask& task = tasks_[slot];
  if (task.link_group->complete) return Step::link_existing;
  if (!task.link_group->failed) return std::nullopt;
  task.link_group = nullptr;
  return begin_data(slot);
}

// Plans the data's extents and path; the data steps start at reflink.
Step Engine::begin_data(uint32_t slot) {
  FileTask& task = tasks_[slot];
  task.size_unknown = task.dir->source_sizes_unknown || size_may_be_unknown(task.source_stat);
  if (const int code = plan_extents(task); code != 0) {
    fail(slot, "error reading", source_path(task), code);
    return Step::closing;
  }
  choose_data_path(task);
  return Step::reflink;
}

// The destination refused the hard link: this name gets the data itself,
// and the link that could not be kept is reported (exit 2).
std::optional<Step> Engine::copy_instead_of_link(uint32_t slot, const std::string& target, int code) {
  FileTask& task = tasks_[slot];
  reporter_.error("cannot create hard link " + quote_name(target) + " to " +
                  quote_name(task.link_group->target_display) + ": " + errno_text(code) + " (copied as a separate file)");
  task.link_group = nullptr;
  return begin_data(slot);
}

void Engine::on_xattr_result(uint32_t slot, FileOp kind, int64_t result) {
  FileTask& task = tasks_[slot];
  if (kind == FileOp::get_xattr && task.xattrs.got(result, reporter_, source_path(task))) {
    submit_file_op(slot, task.xattrs.set(task.target_fd, uint64_t(result)), FileOp::set_xattr);
    return;
  }
  // An attribute that cannot be read or set is reported (exit 2), and the
  // file is still published: its data and other metadata are right.
  if (kind == FileOp::set_xattr) task.xattrs.was_set(result, reporter_, target_path(task));
  advance(slot);
}

bool Engine::issue_copy_xattr(uint32_t slot) {
  FileTask& task = tasks_[slot];
  if (task.xattrs.key() == nullptr) return false;
  submit_file_op(slot, task.xattrs.get(task.source_fd), FileOp::get_xattr);
  return true;
}

void Engine::finish_task(uint32_t slot) {
  FileTask& task = tasks_[slot];
  if (!task.active) return;
  release_mapping(task);
  end_verify(task);
  if (task.error != 0) {
    task.dir->had_error = true;
    reporter_.error(task.error_message);
  }
  if (callbacks_.progress) callbacks_.progress->files_done.fetch_add(1, std::memory_order_relaxed);
  DirNode* dir = task.dir;
  dir->files_active -= 1;
  task.active = false;
  task.step = Step::done;
  free_tasks_.push_back(slot);
  --active_tasks_;
  child_finished(dir);
}

}  // namespace ringio::copy
