#include "integration/process.hpp"
#include "support/test_util.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>

namespace ringio::itest {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::stringstream stream(text);
  std::string line;
  while (std::getline(stream, line)) lines.push_back(line);
  return lines;
}

namespace {

int memory_file(const char* name) {
  const int fd = memfd_create(name, MFD_CLOEXEC);
  if (fd < 0) throw std::runtime_error(std::string("memfd_create: ") + std::strerror(errno));
  return fd;
}

std::string read_all(int fd) {
  std::string text;
  if (lseek(fd, 0, SEEK_SET) != 0) return text;
  char chunk[65536];
  ssize_t n;
  while ((n = read(fd, chunk, sizeof chunk)) > 0) text.append(chunk, static_cast<size_t>(n));
  return text;
}

// In the child, after fork: never returns.
[[noreturn]] void exec_child(const std::vector<std::string>& argv, const RunOptions& options, int out_fd,
                             int err_fd, bool traced) {
  const int null_fd = open("/dev/null", O_RDONLY);
  if (null_fd >= 0) dup2(null_fd, 0);
  dup2(out_fd, 1);
  dup2(err_fd, 2);
  if (!options.cwd.empty() && chdir(options.cwd.c_str()) != 0) {
    std::fprintf(stderr, "chdir %s: %s\n", options.cwd.c_str(), std::strerror(errno));
    _exit(127);
  }
  for (const std::string& assignment : options.env) {
    const auto equals = assignment.find('=');
    if (equals == std::string::npos) unsetenv(assignment.c_str());
    else setenv(assignment.substr(0, equals).c_str(), assignment.substr(equals + 1).c_str(), 1);
  }
  if (traced && ptrace(PTRACE_TRACEME, 0, nullptr, nullptr) != 0) {
    std::fprintf(stderr, "PTRACE_TRACEME: %s\n", std::strerror(errno));
    _exit(126);
  }
  test::exec_argv(argv);
}

RunResult finish(int status, int out_fd, int err_fd) {
  RunResult result;
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.signal = WTERMSIG(status);
  }
  result.out = read_all(out_fd);
  result.err = read_all(err_fd);
  return result;
}

}  // namespace

std::string RunResult::describe() const {
  std::string text = signal != 0 ? "killed by signal " + std::to_string(signal)
                                 : "exit status " + std::to_string(exit_code);
  text += "\n--- stdout ---\n" + (out.size() > 4000 ? out.substr(0, 4000) + "..." : out);
  text += "\n--- stderr ---\n" + (err.size() > 4000 ? err.substr(0, 4000) + "..." : err);
  return text;
}

RunResult run_process(const std::vector<std::string>& argv, const RunOptions& options) {
  BackgroundProcess child(argv, options);
  return child.wait();
}

BackgroundProcess::BackgroundProcess(const std::vector<std::string>& argv, const RunOptions& options) {
  out_fd_ = memory_file("stdout");
  err_fd_ = memory_file("stderr");
  std::fflush(nullptr);
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid_ == 0) exec_child(argv, options, out_fd_, err_fd_, false);
}

BackgroundProcess::~BackgroundProcess() {
  if (pid_ > 0 && !reaped_) {
    kill(pid_, SIGKILL);
    waitpid(pid_, &status_, 0);
  }
  if (out_fd_ >= 0) close(out_fd_);
  if (err_fd_ >= 0) close(err_fd_);
}

bool BackgroundProcess::exited() {
  if (reaped_) return true;
  const pid_t got = waitpid(pid_, &status_, WNOHANG);
  if (got == pid_) reaped_ = true;
  return reaped_;
}

void BackgroundProcess::send(int signal) const {
  if (!reaped_) kill(pid_, signal);
}

RunResult BackgroundProcess::wait() {
  while (!reaped_) {
    const pid_t got = waitpid(pid_, &status_, 0);
    if (got == pid_) reaped_ = true;
    else if (got < 0 && errno != EINTR) break;
  }
  return finish(status_, out_fd_, err_fd_);
}

RunResult run_traced(const std::vector<std::string>& argv, const RunOptions& options,
                     const std::function<void(const SyscallStop&)>& on_syscall, std::string* trace_error) {
  const int out_fd = memory_file("stdout");
  const int err_fd = memory_file("stderr");
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) exec_child(argv, options, out_fd, err_fd, true);

  int status = 0;
  RunResult result;
  auto give_up = [&](const std::string& why) {
    *trace_error = why;
    kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    result = finish(status, out_fd, err_fd);
    close(out_fd);
    close(err_fd);
    return result;
  };
  // The exec stops the child with SIGTRAP.
  if (waitpid(pid, &status, 0) != pid || !WIFSTOPPED(status)) {
    *trace_error = "the traced child did not stop at exec";
    result = finish(status, out_fd, err_fd);
    close(out_fd);
    close(err_fd);
    return result;
  }
  if (ptrace(PTRACE_SETOPTIONS, pid, nullptr, PTRACE_O_TRACESYSGOOD | PTRACE_O_EXITKILL) != 0)
    return give_up(std::string("PTRACE_SETOPTIONS: ") + std::strerror(errno));

  SyscallStop last_entry;
  int deliver = 0;
  for (;;) {
    if (ptrace(PTRACE_SYSCALL, pid, nullptr, reinterpret_cast<void*>(static_cast<intptr_t>(deliver))) != 0)
      return give_up(std::string("PTRACE_SYSCALL: ") + std::strerror(errno));
    deliver = 0;
    pid_t got;
    while ((got = waitpid(pid, &status, 0)) < 0 && errno == EINTR) {
    }
    if (got != pid) return give_up(std::string("waitpid: ") + std::strerror(errno));
    if (WIFEXITED(status) || WIFSIGNALED(status)) break;
    if (!WIFSTOPPED(status)) continue;
    const int stop_signal = WSTOPSIG(status);
    if (stop_signal == (SIGTRAP | 0x80)) {
      __ptrace_syscall_info info {};
      if (ptrace(PTRACE_GET_SYSCALL_INFO, pid, reinterpret_cast<void*>(sizeof info), &info) <= 0)
        return give_up(std::string("PTRACE_GET_SYSCALL_INFO: ") + std::strerror(errno));
      SyscallStop stop;
      stop.pid = pid;
      if (info.op == PTRACE_SYSCALL_INFO_ENTRY) {
        stop.entry = true;
        stop.nr = info.entry.nr;
        for (size_t i = 0; i < 6; ++i) stop.args[i] = info.entry.args[i];
        last_entry = stop;
        on_syscall(stop);
      } else if (info.op == PTRACE_SYSCALL_INFO_EXIT) {
        stop = last_entry;
        stop.entry = false;
        stop.rval = info.exit.rval;
        on_syscall(stop);
      }
    } else if (stop_signal != SIGTRAP) {
      deliver = stop_signal;  // a real signal: pass it on
    }
  }
  result = finish(status, out_fd, err_fd);
  close(out_fd);
  close(err_fd);
  return result;
}

}  // namespace ringio::itest
