// The file task's transition function and its steps: what each step
// issues, and what each step's result means.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cassert>

#include "copy/engine.hpp"

namespace ringio::copy {

namespace {

// Steps that go on issuing work until they have none left.
bool repeats(Step step) { return step == Step::data || step == Step::copy_xattr || step == Step::verify; }

}  // namespace

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
    case Step::times: return Step::verify_sync;
    case Step::verify_sync: return Step::verify;
    case Step::verify: return Step::fsync;
    // A named temporary is renamed over the final name; an unnamed file is linked.
    case Step::fsync: return task.named_temp ? Step::rename_into_place : Step::publish;
    case Step::publish: return Step::unmark;
    case Step::publish_temp_name: return Step::rename_into_place;
    case Step::rename_into_place:
      return task.link_group != nullptr && !task.link_owner ? Step::closing : Step::unmark;
    case Step::unmark: return Step::closing;
    case Step::link_existing: return Step::closing;
    case Step::link_existing_temp: return Step::rename_into_place;
    case Step::waiting_for_link: return Step::closing;
    case Step::closing: return Step::done;
    case Step::done: return Step::done;
  }
  return Step::done;
}

// The transition function: moves the task to its next step that has work,
// and issues it. `branch`: the step a result chose instead of the next one.
void Engine::advance(uint32_t slot, std::optional<Step> branch) {
  FileTask& task = tasks_[slot];
  for (;;) {
    if ((task.error != 0 || task.cancelled) && task.step < Step::closing && !task.published) {
      // Once published, the file is unmarked even when the copy is stopped:
      // no final name may keep the temporary marker.
      if (task.chunks_in_flight != 0) return;  // wait for the data in flight
      task.step = Step::closing;
      branch.reset();
    } else if (branch) {
      task.step = *branch;
      branch.reset();
    } else if (task.step == Step::waiting_for_link) {
      branch = after_link_wait(slot);
      if (!branch) return;
      continue;
    } else if (repeats(task.step) && issue_step(slot)) {
      return;
    } else if (task.step == Step::closing || task.step == Step::done) {
      return;
    } else {
      task.step = next_step(task);
    }
    if (issue_step(slot)) return;
    if (task.step == Step::done) return;
  }
}

// Issues the work of the task's current step; false when the step has
// nothing to do (advance moves on).
bool Engine::issue_step(uint32_t slot) {
  FileTask& task = tasks_[slot];
  switch (task.step) {
    case Step::reflink: {
      const uint64_t device = makedev(task.source_stat.stx_dev_major, task.source_stat.stx_dev_minor);
      if (options_.reflink == ReflinkMode::never || task.source_stat.stx_size == 0 || task.size_unknown ||
          reflink_refused_devices_.count(device))
        return false;
      step_op(slot, Request::ficlone(task.target_fd, task.source_fd));
      return true;
    }
    case Step::data:
      return schedule_data(slot);
    case Step::check_source:
      // Files of more than one buffer are re-checked: a change while they
      // were copied is reported, never copied silently wrong. Smaller files
      // are checked by their single read (it asks for more than the size).
      // A file of unknown size is copied as read, to its end.
      if (task.size_unknown) return false;
      if (!task.unbuffered() && task.source_stat.stx_size < pool_.buffer_size() && task.extents.size() <= 1)
        return false;
      task.target_stat = task.source_stat;
      step_op(slot, Request::statx(task.source_fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &task.source_stat));
      return true;
    case Step::truncate:
      if (!task.needs_truncate) return false;
      step_op(slot, Request::ftruncate(task.target_fd, task.source_stat.stx_size));
      return true;
    case Step::copy_xattr:
      return issue_copy_xattr(slot);
    case Step::verify:
      return verify_step(slot);
    case Step::waiting_for_link:
      return true;  // woken by the group's first copy
    case Step::unmark:
      return issue_unmark(slot);
    case Step::closing:
      return issue_closing(slot);
    default:
      return issue_metadata_step(slot) || issue_publish_step(slot);
  }
}

// Owner, mode, xattr list, times, fsync: one request each, when needed.
bool Engine::issue_metadata_step(uint32_t slot) {
  FileTask& task = tasks_[slot];
  const struct statx& st = task.source_stat;
  const uint32_t mode = target_mode(st, options_.preserve.mode, options_.umask);
  switch (task.step) {
    case Step::chown:
      // A new file already belongs to us; skip the syscall when that is the
      // source's owner too. Only in directories we created (mode 0700 until
      // finished, so no setgid bit hands the file another group).
      if (!options_.preserve.ownership || (st.stx_uid == euid_ && st.stx_gid == egid_ && task.dir->created))
        return false;
      step_op(slot, Request::fchownat(task.target_fd, "", st.stx_uid, st.stx_gid, AT_EMPTY_PATH));
      return true;
    case Step::chmod:
      // An unnamed file's mode is seen by no one until it is linked.
      if (!task.named_temp && !task.dir->default_acl && mode == (kTempFileMode & ~options_.umask)) return false;
      step_op(slot, Request::fchmod(task.target_fd, mode));
      return true;
    case Step::list_xattrs:
      if (!options_.preserve.xattr) return false;
      step_op(slot, task.xattrs.list(task.source_fd));
      return true;
    case Step::times:
      if (!options_.preserve.timestamps) return false;
      step_op(slot, Request::utimensat(task.target_fd, nullptr, task.times, 0));
      return true;
    case Step::fsync:
      if (!options_.fsync) return false;
      step_op(slot, Request::fsync(task.target_fd));
      return true;
    case Step::verify_sync:
      if (!options_.verify) return false;
      step_op(slot, Request::fsync(task.target_fd, true));
      return true;
    default:
      return false;
  }
}

// Giving the file its final name (see Publisher).
bool Engine::issue_publish_step(uint32_t slot) {
  FileTask& task = tasks_[slot];
  DirNode* dir = task.dir;
  switch (task.step) {
    case Step::publish:
      if (task.marked) note_replacement(dir);
      step_op(slot, publisher_.link_into(task.target_fd, dir->target_fd, task.target_name.c_str(), task.proc_path));
      return true;
    case Step::publish_temp_name:
      task.temp_name = publisher_.temp_name();
      // Marked before it gets a name, so a later run knows it is ours (the
      // target appeared after this file was opened, or marking failed).
      if (!task.marked) task.marked = publisher_.set_marker(task.target_fd, kTempMarkerXattr);
      step_op(slot, publisher_.link_into(task.target_fd, dir->target_fd, task.temp_name.c_str(), task.proc_path));
      return true;
    case Step::rename_into_place:
      if (task.named_temp && !task.temp_linked) return false;
      if (task.marked) note_replacement(dir);
      step_op(slot, Request::renameat(dir->target_fd, task.temp_name.c_str(), dir->target_fd, task.target_name.c_str()));
      return true;
    case Step::link_existing:
      step_op(slot, Request::linkat(task.link_group->anchor_fd, task.link_group->target_relative.c_str(),
                                    dir->target_fd, task.target_name.c_str(), 0));
      return true;
    case Step::link_existing_temp:
      if (task.named_temp && task.temp_linked) task.set_aside_temp_name = task.temp_name;
      task.temp_name = publisher_.temp_name();
      step_op(slot, Request::linkat(task.link_group->anchor_fd, task.link_group->target_relative.c_str(),
                                    dir->target_fd, task.temp_name.c_str(), 0));
      return true;
    default:
      return false;
  }
}

// The owner of a hard-link group settles it: the waiters are woken to link
// (complete) or to copy the data themselves (failed).
void Engine::settle_link_group(FileTask& task, bool complete) {
  if (!task.link_owner || task.link_group == nullptr || task.link_group->complete || task.link_group->failed) return;
  for (uint32_t waiter : link_groups_.settle(*task.link_group, complete)) wake(waiter);
}

bool Engine::issue_unmark(uint32_t slot) {
  FileTask& task = tasks_[slot];
  if (task.error != 0) return false;
  if (task.marked) step_op(slot, Request::fremovexattr(task.target_fd, kTempMarkerXattr));
  settle_link_group(task, true);
  ++report_.files_copied;
  if (task.data_path == DataPath::mapped_direct_write) ++report_.files_from_mapping;
  else if (task.data_path == DataPath::in_kernel) ++report_.files_in_kernel;
  return task.marked;
}

// A temporary this run made and no longer needs. One that cannot be removed
// is said: it carries the marker (or its name's check), so the next run
// removes it.
void Engine::remove_temporary(DirNode* dir, const std::string& name) {
  const int64_t rc = queue_.execute_now(Request::unlinkat(dir->target_fd, name.c_str(), 0));
  if (rc < 0 && rc != -ENOENT)
    reporter_.error("cannot remove temporary " + quote_name(join_path(dir->target_display, name)) + ": " +
                    errno_text(int(-rc)));
}

bool Engine::issue_closing(uint32_t slot) {
  FileTask& task = tasks_[slot];
  DirNode* dir = task.dir;
  settle_link_group(task, false);  // the first copy failed: the others copy their data
  end_verify(task);
  // Never leave a temporary behind: remove it before closing.
  if (task.temp_linked && !task.temp_name.empty() && dir->target_fd >= 0) remove_temporary(dir, task.temp_name);
  task.temp_linked = false;
  if (!task.set_aside_temp_name.empty() && dir->target_fd >= 0) remove_temporary(dir, task.set_aside_temp_name);
  task.set_aside_temp_name.clear();
  task.ops_pending = 0;
  for (int* fd : {&task.source_fd, &task.target_fd}) {
    if (*fd < 0) continue;
    ++task.ops_pending;
    submit_file_op(slot, Request::close(*fd), FileOp::close);
    *fd = -1;
  }
  if (task.ops_pending != 0) return true;
  finish_task(slot);
  return false;
}

// What a step's result means: fails the task, or names the step to go to
// instead of the next one.
std::optional<Step> Engine::on_step_result(uint32_t slot, Step step, int64_t result) {
  FileTask& task = tasks_[slot];
  int code = result < 0 ? int(-result) : 0;
  const std::string target = target_path(task);
  switch (step) {
    case Step::reflink:
      if (result == 0) {
        ++report_.files_reflinked;
        task.extents.clear();  // the data is shared, nothing to move
        task.next_offset = task.source_stat.stx_size;
        report_.bytes_copied += task.source_stat.stx_size;
      } else if (options_.reflink == ReflinkMode::always) {
        fail(slot, "failed to clone", target, code);
      } else if (is_clone_unsupported(code)) {
        // Not tried again for files from this filesystem; another source
        // (several operands) may still share extents with the target.
        reflink_refused_devices_.insert(makedev(task.source_stat.stx_dev_major, task.source_stat.stx_dev_minor));
      }
      return std::nullopt;
    case Step::check_source:
      if (result == 0 && (task.source_stat.stx_size != task.target_stat.stx_size ||
                          task.source_stat.stx_mtime.tv_sec != task.target_stat.stx_mtime.tv_sec ||
                          task.source_stat.stx_mtime.tv_nsec != task.target_stat.stx_mtime.tv_nsec))
        fail(slot, "source file changed while it was copied:", source_path(task), 0);
      return std::nullopt;
    case Step::chown:
      if (code != 0 && !is_attribute_not_kept(code)) fail(slot, "failed to preserve ownership for", target, code);
      return std::nullopt;
    case Step::chmod:
      // The target is our new file: a refusal is the filesystem's.
      if (code != 0 && is_attribute_not_kept(code)) modes_not_kept(target, code);
      else if (code != 0) fail(slot, "failed to preserve permissions for", target, code);
      return std::nullopt;
    case Step::list_xattrs:
      task.xattrs.listed(result, reporter_, source_path(task));
      return std::nullopt;
    case Step::times:
      if (code != 0) fail(slot, "failed to preserve times for", target, code);
      return std::nullopt;
    case Step::truncate:
      if (code != 0) fail(slot, "error writing", target, code);
      return std::nullopt;
    case Step::fsync:
      if (code != 0) fail(slot, "error syncing", target, code);
      return std::nullopt;
    case Step::verify_sync:
      if (code != 0) fail(slot, "cannot verify", target, code);
      return std::nullopt;
    case Step::unmark:
      // A read-only copy: its owner's write bit is lent for the removal.
      if (code == EACCES) code = publisher_.remove_marker(task.target_fd, kTempMarkerXattr);
      if (code != 0 && code != ENODATA) fail(slot, "cannot remove the temporary marker from", target, code);
      task.marked = false;
      return std::nullopt;
    default:
      return on_publish_result(slot, step, code, target);
  }
}

std::optional<Step> Engine::on_publish_result(uint32_t slot, Step step, int code, const std::string& target) {
  FileTask& task = tasks_[slot];
  switch (step) {
    case Step::publish:
      if (code == EEXIST && options_.clobber == ClobberMode::no_clobber) {
        ++report_.files_skipped;  // the target appeared while this file was copied
        return Step::closing;
      }
      if (code == EEXIST) return Step::publish_temp_name;  // replace: temp name, then rename over
      if (code != 0) fail(slot, "cannot create regular file", target, code);
      else task.published = true;
      return std::nullopt;
    case Step::publish_temp_name:
      if (code != 0) fail(slot, "cannot create regular file", target, code);
      else task.temp_linked = true;
      return std::nullopt;
    case Step::rename_into_place:
      if (code == EISDIR) fail(slot, "cannot overwrite directory", target, 0);
      else if (code != 0) fail(slot, "cannot create regular file", target, code);
      if (code != 0) return std::nullopt;
      task.temp_linked = false;
      task.published = true;
      if (task.link_group != nullptr && !task.link_owner) ++report_.hard_links_made;
      return std::nullopt;
    default:
      return on_link_result(slot, step, code, target);
  }
}

std::optional<Step> Engine::on_link_result(uint32_t slot, Step step, int code, const std::string& target) {
  FileTask& task = tasks_[slot];
  if (step == Step::link_existing) {
    if (code == EEXIST) return Step::link_existing_temp;
    if (code != 0 && is_link_refused(code)) return copy_instead_of_link(slot, target, code);
    if (code != 0) fail(slot, "cannot create hard link", target, code);
    else ++report_.hard_links_made;
  } else if (step == Step::link_existing_temp) {
    if (code != 0 && is_link_refused(code)) {
      // Nothing was linked: the data goes to the named temporary, if there
      // is one, or to the unnamed file, as for any new file.
      task.temp_name = std::move(task.set_aside_temp_name);
      task.set_aside_temp_name.clear();
      return copy_instead_of_link(slot, target, code);
    }
    if (code != 0) fail(slot, "cannot create hard link", target, code);
    else task.temp_linked = true;  // counted once renamed into place
  }
  return std::nullopt;
}

}  // namespace ringio::copy
