#include "support/test_util.hpp"

#include <fcntl.h>
#include <linux/io_uring.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>

namespace ringio::test {

void remove_tree(const std::string& path) {
  std::error_code ignored;
  for (auto it = std::filesystem::recursive_directory_iterator(path, ignored);
       it != std::filesystem::recursive_directory_iterator(); it.increment(ignored)) {
    if (it->is_directory(ignored) && !it->is_symlink(ignored))
      std::filesystem::permissions(it->path(), std::filesystem::perms::owner_all,
                                   std::filesystem::perm_options::add, ignored);
  }
  std::filesystem::remove_all(path, ignored);
}

TempDir::TempDir() : TempDir([] {
  const char* base = std::getenv("RINGIO_TEST_DIR");
  return std::string(base != nullptr ? base : "/var/tmp");
}()) {}

TempDir::TempDir(const std::string& base) {
  std::string pattern = base + "/ringio-test-XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr)
    throw std::runtime_error("mkdtemp " + pattern + ": " + std::strerror(errno));
  path_ = pattern;
}

TempDir::~TempDir() { remove_tree(path_); }

std::vector<uint8_t> random_bytes(size_t size, uint64_t seed) {
  std::vector<uint8_t> bytes(size);
  std::mt19937_64 generator(seed);
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    const uint64_t word = generator();
    std::memcpy(bytes.data() + i, &word, 8);
  }
  for (; i < size; ++i) bytes[i] = static_cast<uint8_t>(generator());
  return bytes;
}

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void exec_argv(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  execvp(args[0], args.data());
  std::fprintf(stderr, "exec %s: %s\n", args[0], std::strerror(errno));
  _exit(127);
}

ChildResult run_command(const std::vector<std::string>& argv,
                        const std::vector<std::string>& extra_env) {
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(pipe_fds[1], 1);
    dup2(pipe_fds[1], 2);
    for (const std::string& assignment : extra_env) putenv(const_cast<char*>(assignment.c_str()));
    exec_argv(argv);
  }
  close(pipe_fds[1]);
  ChildResult result;
  char chunk[4096];
  ssize_t n;
  while ((n = read(pipe_fds[0], chunk, sizeof chunk)) > 0) result.output.append(chunk, size_t(n));
  close(pipe_fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

BackendSelection make_test_backend(EngineChoice choice, IoConfig config) {
  auto selection = make_backend(choice, config);
  if (!selection) throw std::runtime_error(selection.error().message());
  return std::move(selection.value());
}

bool uring_required() {
  const char* value = std::getenv("RINGIO_REQUIRE_URING");
  return value != nullptr && std::strcmp(value, "1") == 0;
}

bool raw_io_uring_setup_works(int* error_out) {
  io_uring_params params{};
  const long fd = syscall(SYS_io_uring_setup, 4, &params);
  if (fd < 0) {
    if (error_out != nullptr) *error_out = errno;
    return false;
  }
  close(static_cast<int>(fd));
  return true;
}

bool memlock_probe(const std::string& mode, uint64_t limit_bytes, int timeout_ms) {
  const std::string limit = std::to_string(limit_bytes);
  return run_command({"prlimit", "--memlock=" + limit + ":" + limit, "setpriv", "--inh-caps=-ipc_lock",
                      "--bounding-set=-ipc_lock", RINGIO_MEMLOCK_PROBE_PATH, mode,
                      std::to_string(timeout_ms)})
             .exit_code == 0;
}

bool wait_for_settled_pinned_memory() { return memlock_probe("settle", 65536, 10'000); }

}  // namespace ringio::test
