// Child processes for the ringcp integration tests: stdout and stderr kept
// apart (--stats=json is parsed from stdout alone), a working directory,
// extra environment, a child that runs in the background (to be signalled),
// and a child run under ptrace whose system calls a callback can observe.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace ringio::itest {

struct RunOptions {
  std::vector<std::string> env;  // "NAME=value", added to (or replacing in) ours
  std::string cwd;               // empty: ours
};

struct RunResult {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;      // the signal that killed it, if any
  std::string out;     // stdout
  std::string err;     // stderr
  std::string all() const { return out + err; }
  // For assertion messages.
  std::string describe() const;
};

// The lines of a child's output, without their newlines.
std::vector<std::string> lines_of(const std::string& text);

// Runs argv (argv[0] looked up in PATH) to completion.
RunResult run_process(const std::vector<std::string>& argv, const RunOptions& options = {});

// A child running in the background; its output goes to memory files that
// are read when it is waited for.
class BackgroundProcess {
 public:
  BackgroundProcess(const std::vector<std::string>& argv, const RunOptions& options = {});
  ~BackgroundProcess();  // kills (SIGKILL) and reaps a child still running
  BackgroundProcess(const BackgroundProcess&) = delete;
  BackgroundProcess& operator=(const BackgroundProcess&) = delete;

  pid_t pid() const { return pid_; }
  // True once the child has exited (reaps it; wait() then returns at once).
  bool exited();
  void send(int signal) const;
  RunResult wait();

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  bool reaped_ = false;
  int status_ = 0;
};

// A system-call stop of a traced child: at entry (`entry` true: nr and args
// set) or at exit (nr of the call that returns, its args and rval).
struct SyscallStop {
  pid_t pid = 0;
  bool entry = true;
  uint64_t nr = 0;
  std::array<uint64_t, 6> args{};
  int64_t rval = 0;
};

// Runs argv under ptrace, calling on_syscall at every system-call stop of
// the (single-threaded) child while it is stopped. The child's threads are
// not followed. Returns the result; `trace_error` says why tracing could not
// be set up (then the result is meaningless).
RunResult run_traced(const std::vector<std::string>& argv, const RunOptions& options,
                     const std::function<void(const SyscallStop&)>& on_syscall, std::string* trace_error);

}  // namespace ringio::itest
