// The walker's descriptor budget. A tree of any depth is copied within a
// fixed number of open directories: past the budget, the descriptors of
// directories the walk will come back to (their entries already read, no
// file of theirs in flight) are closed, and opened again by name from the
// nearest open ancestor when needed, checked to be the same directories.
// So a program using the library never meets EMFILE on a deep tree,
// whatever its RLIMIT_NOFILE.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>

#include "copy/engine.hpp"

namespace ringio::copy {

namespace {

bool same_inode(const struct statx& a, const struct statx& b) {
  return a.stx_ino == b.stx_ino && a.stx_dev_major == b.stx_dev_major && a.stx_dev_minor == b.stx_dev_minor;
}

}  // namespace

// Reads every entry of the directory just entered.
void Engine::list_entries(DirNode* dir) {
  DirectoryReader reader(queue_, dir->source_fd);
  DirectoryEntry entry;
  int rc;
  while ((rc = reader.next(&entry)) > 0) dir->entries.push_back(WalkEntry{std::string(entry.name), entry.type});
  if (rc < 0) {
    // What was read is copied; the directory is reported.
    dir->had_error = true;
    reporter_.error("cannot read directory " + quote_name(dir->source_display) + ": " + errno_text(-rc));
  }
}

void Engine::close_directory_descriptors(DirNode* dir) {
  if (dir->source_fd < 0 && dir->target_fd < 0) return;
  if (dir->source_fd >= 0) queue_.execute_now(Request::close(dir->source_fd));
  if (dir->target_fd >= 0) queue_.execute_now(Request::close(dir->target_fd));
  dir->source_fd = dir->target_fd = -1;
  if (!dir->is_root_parent) --open_directories_;
}

// Past the budget, closes the descriptors of the oldest open directories
// that nothing needs now: not `keep`, not the one being read, no file in
// flight. Their entries are in memory; ensure_open opens them again.
void Engine::keep_within_descriptor_budget(const DirNode* keep) {
  const DirNode* reading = stack_.empty() ? nullptr : stack_.back();
  for (const std::unique_ptr<DirNode>& node : nodes_) {
    if (open_directories_ <= std::max<uint32_t>(options_.directories_open_max, 1)) return;
    DirNode* dir = node.get();
    if (dir->is_root_parent || dir->suspended || dir == keep || dir == reading || dir->files_active != 0 ||
        dir->source_fd < 0)
      continue;
    if (!remember_target(dir)) continue;  // stays open: it could not be checked later
    close_directory_descriptors(dir);
    dir->suspended = true;
  }
}

// What reopen checks the target against: taken when the directory is
// first suspended (most never are, and pay nothing). False when it cannot be.
bool Engine::remember_target(DirNode* dir) {
  struct statx st {};
  if (dir->target_inode != 0 || dir->target_fd < 0) return true;
  if (queue_.execute_now(Request::statx(dir->target_fd, "", AT_EMPTY_PATH, STATX_INO, &st)) != 0) return false;
  dir->target_device = makedev(st.stx_dev_major, st.stx_dev_minor);
  dir->target_inode = st.stx_ino;
  return true;
}

// Opens a suspended directory again from its parent (open by then).
bool Engine::reopen(DirNode* dir) {
  const DirNode* parent = dir->parent;
  const int follow = options_.symlinks == SymlinkMode::dereference ? 0 : O_NOFOLLOW;
  const int64_t source_fd =
      call(Request::openat(parent->source_fd, dir->source_name.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | follow));
  struct statx st {};
  if (source_fd >= 0 && (queue_.execute_now(Request::statx(int(source_fd), "", AT_EMPTY_PATH, STATX_INO, &st)) != 0 ||
                         !same_inode(st, dir->source_stat))) {
    call(Request::close(int(source_fd)));
    reporter_.error("directory " + quote_name(dir->source_display) + " was replaced while it was copied");
    return false;
  }
  if (source_fd < 0) {
    reporter_.error("cannot open directory " + quote_name(dir->source_display) + ": " + errno_text(int(-source_fd)));
    return false;
  }
  dir->source_fd = int(source_fd);
  ++open_directories_;
  if (dir->target_inode == 0) return true;  // --dry-run: no target
  const int64_t target_fd = call(Request::openat(parent->target_fd, dir->target_name.c_str(),
                                                 O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
  if (target_fd >= 0 && queue_.execute_now(Request::statx(int(target_fd), "", AT_EMPTY_PATH, STATX_INO, &st)) == 0 &&
      st.stx_ino == dir->target_inode && makedev(st.stx_dev_major, st.stx_dev_minor) == dir->target_device) {
    dir->target_fd = int(target_fd);
    return true;
  }
  if (target_fd >= 0) call(Request::close(int(target_fd)));
  reporter_.error("directory " + quote_name(dir->target_display) + " was replaced while it was copied");
  close_directory_descriptors(dir);
  return false;
}

// Makes sure `dir` has its descriptors, opening its suspended ancestors
// first (iteratively: the depth is the tree's). False when one cannot be
// opened again (reported; the directory is then finished without them).
bool Engine::ensure_open(DirNode* dir) {
  if (!dir->suspended) return true;
  std::vector<DirNode*> chain;
  for (DirNode* d = dir; d != nullptr && d->suspended; d = d->parent) chain.push_back(d);
  for (const DirNode* d : chain)
    if (d->lost) return false;
  for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
    DirNode* d = *it;
    if (d->parent->source_fd < 0 || !reopen(d)) {
      d->had_error = true;
      d->lost = true;
      return false;
    }
    d->suspended = false;
    // Each step needs only the directory just opened: what is above it may
    // go again (the oldest first), so a long chain stays within the budget.
    keep_within_descriptor_budget(d);
  }
  return true;
}

}  // namespace ringio::copy
