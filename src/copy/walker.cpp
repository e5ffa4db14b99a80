// The tree walker: reads source directories (with descriptors, so depth is
// not limited by PATH_MAX) and turns each entry into work: a directory to
// enter, a file task, or a symlink or special file made at once.
#include <dirent.h>  // DT_* entry types
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>

#include <cassert>

#include "copy/engine.hpp"

namespace ringio::copy {

namespace {

// "a/b/" -> parent "a", leaf "b"; "/" -> "/", "."; "x" -> ".", "x".
void split_path(const std::string& path, std::string* parent, std::string* leaf) {
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
}

unsigned char type_of(const struct statx& st) {
  if (S_ISDIR(st.stx_mode)) return DT_DIR;
  if (S_ISREG(st.stx_mode)) return DT_REG;
  if (S_ISLNK(st.stx_mode)) return DT_LNK;
  return DT_FIFO;
}

}  // namespace

// Pseudo filesystems make a file's content when it is read: the size they
// report (0, or a page) says nothing about it. Their files are read until
// end of file, as cp reads every file.
bool Engine::holds_files_of_unknown_size(int dirfd) {
  struct statfs fs {};
  if (queue_.execute_now(Request::fstatfs(dirfd, &fs)) != 0) return false;
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

// The pseudo directory node that holds a root entry: the source's and the
// destination's parent directories. nullptr when either cannot be opened.
DirNode* Engine::open_root_parent(const CopyRoot& root, const std::string& source_parent,
                                  const std::string& target_parent) {
  auto node = std::make_unique<DirNode>();
  node->is_root_parent = true;
  node->walk_done = true;
  const int64_t source_fd = call(Request::openat(AT_FDCWD, source_parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (source_fd < 0) {
    reporter_.error("cannot stat " + quote_name(root.source) + ": " + errno_text(int(-source_fd)));
    return nullptr;
  }
  node->source_fd = int(source_fd);
  node->source_sizes_unknown = holds_files_of_unknown_size(node->source_fd);
  int64_t target_fd = -1;
  struct statx exists {};
  if (!options_.dry_run ||
      queue_.execute_now(Request::statx(AT_FDCWD, target_parent.c_str(), 0, STATX_TYPE, &exists)) == 0) {
    target_fd = call(Request::openat(AT_FDCWD, target_parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (target_fd < 0) {
      reporter_.error("cannot create " + quote_name(root.destination) + ": " + errno_text(int(-target_fd)));
      call(Request::close(node->source_fd));
      return nullptr;
    }
  }
  node->target_fd = int(target_fd);
  node->default_acl = publisher_.has_default_acl(node->target_fd);
  node->anchor_fd = node->target_fd;
  // Messages name entries as the user did: "src/a/b".
  node->source_display = root.source.find('/') == std::string::npos ? "" : source_parent;
  node->target_display = root.destination.find('/') == std::string::npos ? "" : target_parent;
  // Only after a killed replacement: this directory is not ours to scan.
  if (!options_.dry_run && node->target_fd >= 0 && publisher_.has_attribute(node->target_fd, kReplacingXattr) &&
      !publisher_.remove_stale_temporaries(node->target_fd, node->target_display))
    node->had_error = true;
  nodes_.push_back(std::move(node));
  return nodes_.back().get();
}

void Engine::start_root(const CopyRoot& root) {
  std::string source_parent, source_leaf, target_parent, target_leaf;
  split_path(root.source, &source_parent, &source_leaf);
  split_path(root.destination, &target_parent, &target_leaf);
  DirNode* node = open_root_parent(root, source_parent, target_parent);
  if (node == nullptr) return;
  struct statx st {};
  const int follow = options_.symlinks == SymlinkMode::no_dereference ? AT_SYMLINK_NOFOLLOW : 0;
  const int64_t rc = call(Request::statx(node->source_fd, source_leaf.c_str(), follow, STATX_BASIC_STATS, &st));
  if (rc < 0) {
    reporter_.error("cannot stat " + quote_name(root.source) + ": " + errno_text(int(-rc)));
    finish(node);
    return;
  }
  node->root_device = makedev(st.stx_dev_major, st.stx_dev_minor);
  node->pending = 1;  // the root entry
  handle_entry(node, source_leaf, target_leaf, type_of(st), true);
  child_finished(node);  // handle_entry took its own count
}

void Engine::walk_some() {
  while (!stopping_ && active_tasks_ < tasks_.size()) {
    if (stack_.empty()) {
      if (next_root_ >= roots_.size()) return;
      start_root(roots_[next_root_++]);
      continue;
    }
    DirNode* dir = stack_.back();
    if (dir->next_entry >= dir->entries.size() || !ensure_open(dir)) {
      stack_.pop_back();
      std::vector<WalkEntry>().swap(dir->entries);
      dir->walk_done = true;
      dir->pending += 1;  // balanced by child_finished below
      child_finished(dir);
      continue;
    }
    const WalkEntry entry = std::move(dir->entries[dir->next_entry++]);
    handle_entry(dir, entry.name, entry.name, entry.type, false);
  }
}

void Engine::handle_entry(DirNode* parent, const std::string& name, const std::string& target_name,
                          unsigned char type, bool is_root) {
  const std::string display = join_path(parent->source_display, name);
  if (!is_root && !excludes_.empty()) {
    const std::string relative = parent->target_relative.empty() ? name : parent->target_relative + "/" + name;
    if (excludes_.excluded(relative, type == DT_DIR)) return;
  }
  if (options_.delete_extraneous && !is_root) parent->seen.insert(name);

  struct statx st {};
  const bool follow = options_.symlinks == SymlinkMode::dereference ||
                      (is_root && options_.symlinks == SymlinkMode::command_line);
  // The walker needs full metadata for everything but regular files, whose
  // statx runs in parallel with their open.
  if (type != DT_REG || follow) {
    const int64_t rc = call(Request::statx(parent->source_fd, name.c_str(), follow ? 0 : AT_SYMLINK_NOFOLLOW,
                                           STATX_BASIC_STATS, &st));
    if (rc < 0) {
      parent->had_error = true;
      reporter_.error("cannot stat " + quote_name(display) + ": " + errno_text(int(-rc)));
      return;
    }
    type = type_of(st);
  }
  switch (type) {
    case DT_DIR:
      if (!options_.recursive) {
        reporter_.error("-r not specified; omitting directory " + quote_name(display));
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

// Following symlinks can lead back to a directory being copied: refuse a
// directory that is its own ancestor (as cp does).
bool Engine::is_cycle(DirNode* parent, const struct statx& st, const std::string& display) {
  for (const DirNode* ancestor = parent; ancestor != nullptr && !ancestor->is_root_parent;
       ancestor = ancestor->parent) {
    if (ancestor->source_stat.stx_ino == st.stx_ino && ancestor->source_stat.stx_dev_major == st.stx_dev_major &&
        ancestor->source_stat.stx_dev_minor == st.stx_dev_minor) {
      parent->had_error = true;
      reporter_.error("cannot copy cyclic symbolic link " + quote_name(display));
      return true;
    }
  }
  return false;
}

// Makes (or, for --dry-run, looks for) the target directory of `node`. False
// when it failed (reported).
bool Engine::open_target_directory(DirNode* parent, DirNode* node, const std::string& target_name) {
  const int open_flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW;
  if (options_.dry_run) {
    reporter_.verbose("would create directory " + quote_name(node->target_display));
    if (parent->target_fd < 0) return true;
    const int64_t existing = call(Request::openat(parent->target_fd, target_name.c_str(), open_flags));
    node->target_fd = existing >= 0 ? int(existing) : -1;
    node->target_preexisted = existing >= 0;
    return true;
  }
  const int64_t made = call(Request::mkdirat(parent->target_fd, target_name.c_str(), S_IRWXU));
  if (made < 0 && made != -EEXIST) {
    reporter_.error("cannot create directory " + quote_name(node->target_display) + ": " + errno_text(int(-made)));
    return false;
  }
  node->created = made == 0;
  node->target_preexisted = made == -EEXIST;
  if (node->created) ++report_.directories_created;
  const int64_t target_fd = call(Request::openat(parent->target_fd, target_name.c_str(), open_flags));
  if (target_fd < 0) {
    const int code = int(-target_fd);
    reporter_.error(code == ENOTDIR || code == ELOOP
                        ? "cannot overwrite non-directory " + quote_name(node->target_display) + " with directory " +
                              quote_name(node->source_display)
                        : "cannot open directory " + quote_name(node->target_display) + ": " + errno_text(code));
    return false;
  }
  node->target_fd = int(target_fd);
  node->default_acl = publisher_.has_default_acl(node->target_fd);
  if (node->target_preexisted && !publisher_.remove_stale_temporaries(node->target_fd, node->target_display))
    node->had_error = true;
  return true;
}


void Engine::enter_directory(DirNode* parent, const std::string& name, const std::string& target_name,
                             const struct statx& st) {
  const std::string display = join_path(parent->source_display, name);
  if (is_cycle(parent, st, display)) return;
  const int follow = options_.symlinks == SymlinkMode::dereference ? 0 : O_NOFOLLOW;
  const int64_t source_fd =
      call(Request::openat(parent->source_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | follow));
  if (source_fd < 0) {
    parent->had_error = true;
    reporter_.error("cannot open directory " + quote_name(display) + ": " + errno_text(int(-source_fd)));
    return;
  }
  auto node = std::make_unique<DirNode>();
  node->parent = parent;
  node->source_fd = int(source_fd);
  node->source_sizes_unknown = holds_files_of_unknown_size(node->source_fd);
  node->source_display = display;
  node->target_display = join_path(parent->target_display, target_name);
  node->target_relative = parent->is_root_parent ? target_name : parent->target_relative + "/" + target_name;
  if (parent->is_root_parent && target_name == ".") node->target_relative = "";
  node->anchor_fd = parent->anchor_fd;
  node->source_stat = st;
  node->root_device = parent->root_device;
  if (!open_target_directory(parent, node.get(), target_name)) {
    parent->had_error = true;
    call(Request::close(node->source_fd));
    return;
  }
  reporter_.verbose(quote_name(display) + " -> " + quote_name(node->target_display));
  node->source_name = name;
  node->target_name = target_name;
  ++open_directories_;
  parent->pending += 1;
  DirNode* raw = node.get();
  nodes_.push_back(std::move(node));
  if (options_.one_file_system && makedev(st.stx_dev_major, st.stx_dev_minor) != parent->root_device) {
    raw->walk_done = true;
    raw->pending = 1;
    child_finished(raw);
    return;
  }
  list_entries(raw);
  stack_.push_back(raw);
  keep_within_descriptor_budget(raw);
}

void Engine::copy_symlink(DirNode* parent, const std::string& name, const std::string& target_name,
                          const struct statx& st) {
  const std::string display = join_path(parent->source_display, name);
  const std::string target_display = join_path(parent->target_display, target_name);
  std::vector<char> link(st.stx_size + 2);
  const int64_t length = call(Request::readlinkat(parent->source_fd, name.c_str(), link.data(), link.size()));
  if (length < 0) {
    parent->had_error = true;
    reporter_.error("cannot read symbolic link " + quote_name(display) + ": " + errno_text(int(-length)));
    return;
  }
  link[size_t(length)] = '\0';
  if (options_.dry_run) {
    reporter_.verbose("would create symbolic link " + quote_name(target_display));
    return;
  }
  int64_t rc = call(Request::symlinkat(link.data(), parent->target_fd, target_name.c_str()));
  if (rc == -EEXIST) {
    struct statx existing {};
    if (call(Request::statx(parent->target_fd, target_name.c_str(), AT_SYMLINK_NOFOLLOW, STATX_TYPE, &existing)) == 0) {
      if (S_ISDIR(existing.stx_mode)) {
        reporter_.error("cannot overwrite directory " + quote_name(target_display) + " with non-directory");
        return;
      }
      if (options_.clobber == ClobberMode::no_clobber) {
        ++report_.files_skipped;
        return;
      }
    }
    const std::string temp = publisher_.temp_name();
    rc = replace_entry(parent, target_name, temp, Request::symlinkat(link.data(), parent->target_fd, temp.c_str()));
  }
  if (rc < 0) {
    parent->had_error = true;
    reporter_.error("cannot create symbolic link " + quote_name(target_display) + ": " + errno_text(int(-rc)));
    return;
  }
  ++report_.symlinks_copied;
  apply_path_metadata(parent, target_name, st, target_display);
}

void Engine::copy_special(DirNode* parent, const std::string& name, const std::string& target_name,
                          const struct statx& st) {
  const std::string target_display = join_path(parent->target_display, target_name);
  if (options_.dry_run) {
    reporter_.verbose("would create special file " + quote_name(target_display) + " from " +
                      quote_name(join_path(parent->source_display, name)));
    return;
  }
  const uint64_t device = makedev(st.stx_rdev_major, st.stx_rdev_minor);
  const uint32_t mode = (st.stx_mode & S_IFMT) | 0600;
  int64_t rc = call(Request::mknodat(parent->target_fd, target_name.c_str(), mode, device));
  if (rc == -EEXIST && options_.clobber == ClobberMode::no_clobber) {
    ++report_.files_skipped;
    return;
  }
  if (rc == -EEXIST) {
    const std::string temp = publisher_.temp_name();
    rc = replace_entry(parent, target_name, temp, Request::mknodat(parent->target_fd, temp.c_str(), mode, device));
  }
  if (rc < 0) {
    parent->had_error = true;
    reporter_.error("cannot create special file " + quote_name(target_display) + ": " + errno_text(int(-rc)));
    return;
  }
  ++report_.specials_copied;
  apply_path_metadata(parent, target_name, st, target_display);
}

// Replaces an existing `target_name` with a new entry that `make` creates
// under `temp_name`: renamed over the old one, removed if the rename fails.
// Returns 0 or -errno.
int64_t Engine::replace_entry(DirNode* parent, const std::string& target_name, const std::string& temp_name,
                              const Request& make) {
  int64_t rc = call(make);
  if (rc == 0) rc = call(Request::renameat(parent->target_fd, temp_name.c_str(), parent->target_fd, target_name.c_str()));
  // Also after a failed create: some filesystems leave the entry behind
  // (FUSE drivers' mknod makes a regular file, then fails with EIO). Not
  // after EEXIST: that name is someone else's.
  if (rc < 0 && rc != -EEXIST) remove_temporary(parent, temp_name);
  return rc;
}

// Owner, mode and times of an entry that cannot be opened (symlink, FIFO,
// device): by name, without following.
void Engine::apply_path_metadata(DirNode* parent, const std::string& target_name, const struct statx& st,
                                 const std::string& display) {
  if (options_.preserve.ownership) {
    const int64_t rc = call(
        Request::fchownat(parent->target_fd, target_name.c_str(), st.stx_uid, st.stx_gid, AT_SYMLINK_NOFOLLOW));
    if (rc < 0 && !is_attribute_not_kept(int(-rc)))
      reporter_.error("failed to preserve ownership for " + quote_name(display) + ": " + errno_text(int(-rc)));
  }
  if (!S_ISLNK(st.stx_mode)) {
    // No AT_SYMLINK_NOFOLLOW is needed: this is not a symlink.
    const int64_t rc = queue_.execute_now(
        Request::fchmodat(parent->target_fd, target_name.c_str(), target_mode(st, options_.preserve.mode, options_.umask), 0));
    if (rc < 0 && is_attribute_not_kept(int(-rc))) modes_not_kept(display, int(-rc));  // we just made it
    else if (rc < 0)
      reporter_.error("failed to preserve permissions for " + quote_name(display) + ": " + errno_text(int(-rc)));
  }
  if (options_.preserve.timestamps) {
    const struct timespec times[2] = {{st.stx_atime.tv_sec, st.stx_atime.tv_nsec},
                                      {st.stx_mtime.tv_sec, st.stx_mtime.tv_nsec}};
    const int64_t rc = call(Request::utimensat(parent->target_fd, target_name.c_str(), times, AT_SYMLINK_NOFOLLOW));
    if (rc < 0) reporter_.error("failed to preserve times for " + quote_name(display) + ": " + errno_text(int(-rc)));
  }
}

}  // namespace ringio::copy
