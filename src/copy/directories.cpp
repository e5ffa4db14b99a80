// Directory finishing: a directory is finished once the walker has read it
// and every child (file task, subdirectory) is done. Then --delete removes
// what the source does not have, and the directory gets its owner, xattrs,
// mode and times (after its contents: a read-only directory last).
#include <dirent.h>  // DT_* entry types
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cassert>

#include "copy/engine.hpp"

namespace ringio::copy {

void Engine::child_finished(DirNode* dir) {
  assert(dir->pending > 0);
  if (--dir->pending == 0 && dir->walk_done && !dir->queued_for_finishing) {
    dir->queued_for_finishing = true;
    finish_queue_.push_back(dir);
  }
}

void Engine::finish_directories() {
  while (!finish_queue_.empty()) {
    DirNode* dir = finish_queue_.front();
    finish_queue_.pop_front();
    finish(dir);
  }
}

void Engine::modes_not_kept(const std::string& display, int code) {
  if (modes_not_kept_said_) return;  // once per run, not for every entry
  modes_not_kept_said_ = true;
  reporter_.warning("permissions not preserved: the destination keeps none (" + quote_name(display) + ": " +
                    errno_text(code) + ")");
}

// Owner before mode (chown clears setuid/setgid), mode and times after the
// contents.
void Engine::apply_directory_metadata(DirNode* dir) {
  const struct statx& st = dir->source_stat;
  const std::string& display = dir->target_display;
  if (options_.preserve.ownership) {
    const int64_t rc = call(Request::fchownat(dir->target_fd, "", st.stx_uid, st.stx_gid, AT_EMPTY_PATH));
    if (rc < 0 && !is_attribute_not_kept(int(-rc)))
      reporter_.error("failed to preserve ownership for " + quote_name(display) + ": " + errno_text(int(-rc)));
  }
  if (options_.preserve.xattr)
    directory_xattrs_.copy_now(queue_, dir->source_fd, dir->target_fd, reporter_, dir->source_display, display);
  if (dir->created || options_.preserve.mode) {
    const int64_t rc = call(Request::fchmod(dir->target_fd, target_mode(st, options_.preserve.mode, options_.umask)));
    // EPERM is the filesystem's answer when the directory is ours or we
    // are root (CAP_FOWNER); otherwise it may be someone else's directory.
    if (rc < 0 && is_attribute_not_kept(int(-rc)) && (rc != -EPERM || dir->created || euid_ == 0))
      modes_not_kept(display, int(-rc));
    else if (rc < 0)
      reporter_.error("failed to preserve permissions for " + quote_name(display) + ": " + errno_text(int(-rc)));
  }
  if (options_.preserve.timestamps) {
    const struct timespec times[2] = {{st.stx_atime.tv_sec, st.stx_atime.tv_nsec},
                                      {st.stx_mtime.tv_sec, st.stx_mtime.tv_nsec}};
    const int64_t rc = call(Request::utimensat(dir->target_fd, nullptr, times, 0));
    if (rc < 0) reporter_.error("failed to preserve times for " + quote_name(display) + ": " + errno_text(int(-rc)));
  }
  if (options_.fsync) call(Request::fsync(dir->target_fd));
}

void Engine::close_directory(DirNode* dir) {
  // The directory that received the top-level name: its entry is durable
  // only once it is synced too.
  if (dir->is_root_parent && dir->target_fd >= 0 && options_.fsync && !options_.dry_run)
    call(Request::fsync(dir->target_fd));
  // Hard-link groups name files from this root's anchor, which closes now.
  if (dir->is_root_parent) link_groups_.forget_anchor(dir->target_fd);
  close_directory_descriptors(dir);
}

void Engine::finish(DirNode* dir) {
  // A directory whose descriptors went for the budget gets them back; one
  // that cannot (reported) is closed without its metadata.
  const bool open = ensure_open(dir);
  // Every file of this directory is unmarked by now.
  if (dir->replacing_marked && open) call(Request::fremovexattr(dir->target_fd, kReplacingXattr));
  if (open && !dir->is_root_parent && dir->target_fd >= 0 && !options_.dry_run) {
    if (options_.delete_extraneous && dir->target_preexisted && !dir->had_error && !stopping_)
      delete_extraneous(dir);
    apply_directory_metadata(dir);
  }
  close_directory(dir);
  DirNode* parent = dir->parent;
  if (parent != nullptr && dir->had_error) parent->had_error = true;
  nodes_.erase(std::find_if(nodes_.begin(), nodes_.end(),
                            [dir](const std::unique_ptr<DirNode>& node) { return node.get() == dir; }));
  if (parent != nullptr) child_finished(parent);
}

// Before a marked file can reach a final name, its directory says so (see
// Publisher::remove_stale_temporaries). Without user xattrs nothing is marked.
void Engine::note_replacement(DirNode* dir) {
  if (dir->replacing_mark_tried) return;
  dir->replacing_mark_tried = true;
  dir->replacing_marked = publisher_.set_marker(dir->target_fd, kReplacingXattr);
}

void Engine::delete_extraneous(DirNode* dir) {
  const int64_t fd = call(Request::openat(dir->target_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd < 0) {
    reporter_.error("cannot read directory " + quote_name(dir->target_display) + ": " + errno_text(int(-fd)));
    return;
  }
  std::vector<std::string> extra;
  DirectoryReader reader(queue_, int(fd));
  DirectoryEntry entry;
  int rc;
  while ((rc = reader.next(&entry)) > 0) {
    const std::string name(entry.name);
    if (dir->seen.count(name) != 0) continue;
    const std::string relative = dir->target_relative.empty() ? name : dir->target_relative + "/" + name;
    if (excludes_.excluded(relative, entry.type == DT_DIR)) continue;  // excluded files are protected
    extra.push_back(name);
  }
  call(Request::close(int(fd)));
  if (rc < 0) {
    // Nothing is deleted from a directory not read to its end.
    reporter_.error("cannot read directory " + quote_name(dir->target_display) + ": " + errno_text(-rc));
    return;
  }
  for (const std::string& name : extra)
    report_.entries_deleted += remove_tree(dir->target_fd, name, join_path(dir->target_display, name));
}

// Opens directory `name` and lists its entries; the descriptor, or -1 when
// it cannot be opened (its unlinkat then fails, not empty, and says so).
int Engine::open_for_removal(int parent_fd, const std::string& name, const std::string& display,
                             std::vector<std::string>* children) {
  const int64_t fd = call(Request::openat(parent_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (fd < 0) return -1;
  DirectoryReader reader(queue_, int(fd));
  DirectoryEntry entry;
  int rc;
  while ((rc = reader.next(&entry)) > 0) children->emplace_back(entry.name);
  if (rc < 0) reporter_.error("cannot read directory " + quote_name(display) + ": " + errno_text(-rc));
  return int(fd);
}

// Removes `name` and, for a directory, everything below it, depth first
// with an explicit stack (the depth is the destination's, not ours to
// bound). Returns how many entries were removed; failures are reported.
uint64_t Engine::remove_tree(int dirfd, const std::string& name, const std::string& display) {
  struct Frame {
    Frame(int parent, std::string entry, std::string shown)
        : parent_fd(parent), name(std::move(entry)), display(std::move(shown)) {}
    int parent_fd;
    std::string name, display;
    int fd = -1;
    bool is_dir = false;
    bool listed = false;
    std::vector<std::string> children;
    size_t next_child = 0;
  };
  std::vector<Frame> stack;
  stack.emplace_back(dirfd, name, display);
  uint64_t removed = 0;
  while (!stack.empty()) {
    const size_t top = stack.size() - 1;
    if (!stack[top].listed) {
      Frame& frame = stack[top];
      frame.listed = true;
      struct statx st {};
      const int64_t rc = call(Request::statx(frame.parent_fd, frame.name.c_str(), AT_SYMLINK_NOFOLLOW, STATX_TYPE, &st));
      if (rc < 0) {
        if (rc != -ENOENT) reporter_.error("cannot remove " + quote_name(frame.display) + ": " + errno_text(int(-rc)));
        stack.pop_back();
        continue;
      }
      frame.is_dir = S_ISDIR(st.stx_mode);
      if (frame.is_dir) frame.fd = open_for_removal(frame.parent_fd, frame.name, frame.display, &frame.children);
    }
    Frame& frame = stack[top];
    if (frame.next_child < frame.children.size()) {
      const std::string& child = frame.children[frame.next_child++];
      const int parent_fd = frame.fd;
      std::string shown = frame.display + "/" + child;
      stack.emplace_back(parent_fd, child, std::move(shown));
      continue;
    }
    if (frame.fd >= 0) call(Request::close(frame.fd));
    const int64_t rc = call(Request::unlinkat(frame.parent_fd, frame.name.c_str(), frame.is_dir ? AT_REMOVEDIR : 0));
    if (rc < 0) {
      reporter_.error("cannot remove " + quote_name(frame.display) + ": " + errno_text(int(-rc)));
    } else {
      reporter_.verbose("deleted " + quote_name(frame.display));
      ++removed;
    }
    stack.pop_back();
  }
  return removed;
}

}  // namespace ringio::copy
