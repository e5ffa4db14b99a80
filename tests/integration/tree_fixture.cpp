#include "integration/tree_fixture.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "integration/tree_compare.hpp"

namespace ringio::itest {

namespace {

[[noreturn]] void fail(const std::string& what, const std::string& path) {
  throw std::runtime_error("fixture: " + what + " " + printable(path) + ": " + std::strerror(errno));
}

void check(int rc, const std::string& what, const std::string& path) {
  if (rc != 0) fail(what, path);
}

void write_at(int dirfd, const std::string& name, const std::vector<uint8_t>& bytes, mode_t mode = 0644) {
  const int fd = openat(dirfd, name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) fail("openat", name);
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = write(fd, bytes.data() + done, bytes.size() - done);
    if (n <= 0) {
      close(fd);
      fail("write", name);
    }
    done += static_cast<size_t>(n);
  }
  close(fd);
}

std::vector<uint8_t> bytes_of(const std::string& text) { return std::vector<uint8_t>(text.begin(), text.end()); }

}  // namespace

Scratch::~Scratch() { clear_directory(dir_.path()); }

void make_dir(const std::string& path, unsigned mode) {
  check(mkdir(path.c_str(), static_cast<mode_t>(mode)), "mkdir", path);
  check(chmod(path.c_str(), static_cast<mode_t>(mode)), "chmod", path);  // no umask
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  write_at(AT_FDCWD, path, bytes);
}

void write_text(const std::string& path, const std::string& text) { write_bytes(path, bytes_of(text)); }

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + printable(path));
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void set_mtime(const std::string& path, int64_t seconds, long nanoseconds, bool no_follow) {
  const struct timespec times[2] = {{0, UTIME_OMIT}, {static_cast<time_t>(seconds), nanoseconds}};
  check(utimensat(AT_FDCWD, path.c_str(), times, no_follow ? AT_SYMLINK_NOFOLLOW : 0), "utimensat", path);
}

void set_xattr(const std::string& path, const std::string& key, const std::string& value) {
  check(lsetxattr(path.c_str(), key.c_str(), value.data(), value.size(), 0), "lsetxattr " + key, path);
}

bool exists(const std::string& path) {
  struct stat st {};
  return lstat(path.c_str(), &st) == 0;
}

std::vector<SizedFile> boundary_sizes() {
  std::vector<SizedFile> sizes = {{"empty", 0}, {"s1", 1}, {"s4095", 4095}, {"s4096", 4096}, {"s4097", 4097}};
  for (uint64_t kib : {16, 64, 256}) {
    const uint64_t buffer = kib * 1024;
    const std::string base = "b" + std::to_string(kib) + "k";
    sizes.push_back({base + "-1", buffer - 1});
    sizes.push_back({base, buffer});
    sizes.push_back({base + "+1", buffer + 1});
  }
  sizes.push_back({"multi-3MiB+7", (uint64_t{3} << 20) + 7});
  // Large enough for the O_DIRECT path (4 MiB and up), with a tail that is
  // not a multiple of the block size.
  sizes.push_back({"large-5MiB+7", (uint64_t{5} << 20) + 7});
  return sizes;
}

void build_sized_files(const std::string& directory, uint64_t seed) {
  make_dir(directory);
  for (const SizedFile& file : boundary_sizes()) {
    const std::string path = directory + "/" + file.name;
    write_bytes(path, test::random_bytes(file.size, seed++));
    // ringcp reads a file that is mostly in the page cache through the cache:
    // written back and dropped, the large file takes the O_DIRECT path.
    if (file.size >= (uint64_t{4} << 20)) {
      const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0 || fdatasync(fd) != 0 || posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0)
        throw std::runtime_error("cannot drop the cached pages of " + path);
      close(fd);
    }
  }
}

FullTree build_full_tree(const std::string& root) {
  FullTree tree;
  const bool root_user = geteuid() == 0;
  make_dir(root);
  auto at = [&](const std::string& relative) { return root + "/" + relative; };

  // Sizes at page and buffer boundaries.
  build_sized_files(at("sizes"), 100);

  // A sparse file larger than 4 GiB, and one that is all hole.
  make_dir(at("sparse"));
  {
    const std::string path = at(tree.sparse_file);
    const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) fail("open", path);
    if (ftruncate(fd, static_cast<off_t>(tree.sparse_size)) != 0) fail("ftruncate", path);
    const std::vector<std::pair<uint64_t, size_t>> pieces = {
        {0, 4096},
        {(uint64_t{1} << 30) + 12345, 3000},
        {(uint64_t{4} << 30) + 8192, 4096},  // past 4 GiB
        {tree.sparse_size - 1000, 1000},     // up to the very end
    };
    uint64_t seed = 7000;
    for (const auto& [offset, length] : pieces) {
      const auto data = test::random_bytes(length, seed++);
      if (pwrite(fd, data.data(), data.size(), static_cast<off_t>(offset)) != static_cast<ssize_t>(length))
        fail("pwrite", path);
    }
    close(fd);
    const int hole = open(at("sparse/all-hole").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (hole < 0 || ftruncate(hole, 1 << 20) != 0) fail("create", at("sparse/all-hole"));
    close(hole);
  }

  // Awkward names.
  make_dir(at("names"));
  const std::string long_name = "long-" + std::string(250, 'n');  // 255 bytes
  for (const std::string& name : {std::string("with space"), std::string("new\nline"), std::string("-rf"),
                                  std::string("\xff\xfe"), std::string("tab\there"), std::string("quote'name"),
                                  long_name}) {
    write_text(at("names/" + name), "name: " + name + "\n");
  }
  make_dir(at("names/dir with\nnewline"));
  write_text(at("names/dir with\nnewline/-inner"), "inner\n");

  // A path deeper than PATH_MAX: 30 directories of 200-byte names, made with
  // mkdirat/openat (no path of this length is ever passed to the kernel).
  make_dir(at("deep"));
  {
    int fd = open(at("deep").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) fail("open", at("deep"));
    std::string relative = "deep";
    for (int level = 0; level < 30; ++level) {
      std::string name = (level < 10 ? "0" : "") + std::to_string(level);
      name += std::string(200 - name.size(), 'd');
      if (mkdirat(fd, name.c_str(), 0755) != 0) fail("mkdirat", relative + "/" + name);
      const int next = openat(fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (next < 0) fail("openat", relative + "/" + name);
      close(fd);
      fd = next;
      relative += "/" + name;
    }
    write_at(fd, "bottom.txt", test::random_bytes(70000, 31));
    if (symlinkat("bottom.txt", fd, "bottom-link") != 0) fail("symlinkat", relative + "/bottom-link");
    const std::string proc = "/proc/self/fd/" + std::to_string(fd) + "/bottom.txt";
    set_xattr(proc, "user.deep", "at the bottom");
    close(fd);
    tree.deep_file = relative + "/bottom.txt";
    tree.deep_path_length = root.size() + 1 + tree.deep_file.size();
  }

  // Symlinks, and their own nanosecond mtime.
  make_dir(at("links"));
  check(symlink("../sizes/s1", at("links/relative").c_str()), "symlink", at("links/relative"));
  check(symlink("/etc/hostname", at("links/absolute").c_str()), "symlink", at("links/absolute"));
  check(symlink("no/such/target", at("links/dangling").c_str()), "symlink", at("links/dangling"));
  check(symlink("../names", at("links/to-directory").c_str()), "symlink", at("links/to-directory"));
  set_mtime(at("links/relative"), 1500000000, 987654321, /*no_follow=*/true);

  // A FIFO, a socket, and (when permitted) a character device.
  make_dir(at("special"));
  check(mkfifo(at("special/fifo").c_str(), 0640), "mkfifo", at("special/fifo"));
  {
    const std::string path = at("special/socket");
    const int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    if (sock < 0 || path.size() >= sizeof address.sun_path) fail("socket", path);
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    if (bind(sock, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) fail("bind", path);
    close(sock);
  }
  if (root_user && mknod(at("special/null-device").c_str(), S_IFCHR | 0644, makedev(1, 3)) == 0)
    tree.has_device = true;

  // A hard-link group of three across two directories.
  make_dir(at("hard"));
  make_dir(at("hard/a"));
  make_dir(at("hard/b"));
  write_bytes(at("hard/a/h1"), test::random_bytes(10000, 41));
  check(link(at("hard/a/h1").c_str(), at("hard/a/h2").c_str()), "link", at("hard/a/h2"));
  check(link(at("hard/a/h1").c_str(), at("hard/b/h3").c_str()), "link", at("hard/b/h3"));

  // Special mode bits (as root, foreign owners too: chown before chmod,
  // since chown clears setuid/setgid).
  make_dir(at("modes"));
  write_text(at("modes/setuid"), "#!/bin/sh\n");
  write_text(at("modes/setgid"), "#!/bin/sh\n");
  write_text(at("modes/setuid-setgid"), "#!/bin/sh\n");
  write_text(at("modes/private"), "secret-ish\n");
  if (root_user) {
    check(chown(at("modes/setuid").c_str(), 1234, 5678), "chown", at("modes/setuid"));
    check(chown(at("modes/private").c_str(), 4321, 8765), "chown", at("modes/private"));
  }
  check(chmod(at("modes/setuid").c_str(), 04755), "chmod", at("modes/setuid"));
  check(chmod(at("modes/setgid").c_str(), 02755), "chmod", at("modes/setgid"));
  check(chmod(at("modes/setuid-setgid").c_str(), 06750), "chmod", at("modes/setuid-setgid"));
  check(chmod(at("modes/private").c_str(), 0600), "chmod", at("modes/private"));
  make_dir(at("modes/sticky-dir"), 01777);
  write_text(at("modes/sticky-dir/inside"), "sticky\n");
  make_dir(at("modes/setgid-dir"));
  if (root_user) check(chown(at("modes/setgid-dir").c_str(), 0, 5678), "chown", at("modes/setgid-dir"));
  check(chmod(at("modes/setgid-dir").c_str(), 02775), "chmod", at("modes/setgid-dir"));
  write_text(at("modes/setgid-dir/inside"), "setgid dir\n");

  // Extended attributes on a file and a directory.
  make_dir(at("xattr"));
  write_text(at("xattr/file"), "has attributes\n");
  set_xattr(at("xattr/file"), "user.comment", "hello");
  set_xattr(at("xattr/file"), "user.binary", std::string("\0\x01\xff", 3));
  make_dir(at("xattr/dir"));
  set_xattr(at("xattr/dir"), "user.dirattr", "directory value");

  // Specific nanosecond mtimes (file and directory).
  make_dir(at("times"));
  write_text(at("times/nano"), "nanoseconds\n");
  set_mtime(at("times/nano"), 1234567890, 123456789);
  set_mtime(at("times"), 1111111111, 999999999);

  // A read-only directory with files in it: made last, its mode set last.
  make_dir(at("readonly"));
  write_text(at("readonly/one"), "one\n");
  write_bytes(at("readonly/two"), test::random_bytes(70000, 51));
  make_dir(at("readonly/sub"));
  write_text(at("readonly/sub/three"), "three\n");
  check(chmod(at("readonly/sub").c_str(), 0555), "chmod", at("readonly/sub"));
  check(chmod(at("readonly").c_str(), 0555), "chmod", at("readonly"));
  return tree;
}

void build_small_tree(const std::string& root, uint64_t seed) {
  make_dir(root);
  write_bytes(root + "/a", test::random_bytes(1000, seed));
  write_bytes(root + "/b", test::random_bytes(100000, seed + 1));
  make_dir(root + "/sub");
  write_bytes(root + "/sub/c", test::random_bytes(5000, seed + 2));
  make_dir(root + "/sub/inner");
  write_text(root + "/sub/inner/d", "d\n");
  check(symlink("../a", (root + "/sub/link").c_str()), "symlink", root + "/sub/link");
  check(link((root + "/a").c_str(), (root + "/sub/a-hardlink").c_str()), "link", root + "/sub/a-hardlink");
}

}  // namespace ringio::itest
