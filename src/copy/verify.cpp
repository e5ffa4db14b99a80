// --verify: the source and the copy are read again, through fresh
// descriptors and pool buffers, one read at a time per file, and their
// hashes compared. The copy was written back (verify_sync) and its cached
// pages are dropped first, so the bytes compared are the ones on disk, not
// the buffer just written. Reads are ordinary queued requests: the loop
// goes on with other files meanwhile, and a fault schedule reaches them.
#include <fcntl.h>


#include "copy/engine.hpp"

namespace ringio::copy {

namespace {

// A fresh descriptor (through /proc) reads buffered even when the copy
// used O_DIRECT, and from position 0 of its own.
Request reopen_by_descriptor(int fd, ProcPath& path) {
  return Request::openat(AT_FDCWD, proc_fd_path(fd, path), O_RDONLY | O_CLOEXEC);
}

}  // namespace

// 0, or the errno that stops the verification.
int Engine::open_for_verify(FileTask& task) {
  VerifyState& verify = task.verify;
  queue_.execute_now(Request::fadvise(task.target_fd, 0, 0, POSIX_FADV_DONTNEED));
  ProcPath path;
  const int64_t source = queue_.execute_now(reopen_by_descriptor(task.source_fd, path));
  if (source < 0) return int(-source);
  verify.source_fd = int(source);
  const int64_t target = queue_.execute_now(reopen_by_descriptor(task.target_fd, path));
  if (target < 0) return int(-target);
  verify.target_fd = int(target);
  queue_.execute_now(Request::fadvise(verify.target_fd, 0, 0, POSIX_FADV_DONTNEED));
  if (verify.hash == nullptr) verify.hash = XXH3_createState();
  XXH3_64bits_reset(verify.hash);
  return 0;
}

// The verify step: true while reads are in flight (or parked for a buffer).
bool Engine::verify_step(uint32_t slot) {
  FileTask& task = tasks_[slot];
  VerifyState& verify = task.verify;
  if (!options_.verify || verify.done) return false;
  if (!verify.started) {
    verify.started = true;
    if (const int code = open_for_verify(task); code != 0) {
      fail(slot, "cannot verify", target_path(task), code);
      end_verify(task);
      return false;
    }
  }
  if (task.chunks_in_flight != 0) return true;
  return issue_verify_read(slot);
}

bool Engine::issue_verify_read(uint32_t slot) {
  FileTask& task = tasks_[slot];
  VerifyState& verify = task.verify;
  verify.buffer = pool_.checkout();
  if (!verify.buffer) {
    task.parked = true;
    parked_.push_back(slot);
    return true;
  }
  ++task.chunks_in_flight;
  const int fd = verify.reading_target ? verify.target_fd : verify.source_fd;
  submit_file_op(slot,
                 Request::read(fd, verify.buffer.data(), verify.buffer.size(), verify.offset, verify.buffer.fixed_index()),
                 FileOp::verify_read);
  return true;
}

void Engine::on_verify_read(uint32_t slot, int64_t result) {
  FileTask& task = tasks_[slot];
  VerifyState& verify = task.verify;
  --task.chunks_in_flight;
  if (result == -EINTR || result == -EAGAIN) {
    // The same read again.
  } else if (result < 0) {
    fail(slot, "cannot verify", target_path(task), int(-result));
    end_verify(task);
  } else if (result > 0) {
    XXH3_64bits_update(verify.hash, verify.buffer.data(), size_t(result));
    verify.offset += uint64_t(result);
  } else if (!verify.reading_target) {
    verify.source_hash = XXH3_64bits_digest(verify.hash);
    XXH3_64bits_reset(verify.hash);
    verify.reading_target = true;
    verify.offset = 0;
  } else {
    if (XXH3_64bits_digest(verify.hash) != verify.source_hash)
      fail(slot, "verification failed: copy differs from", source_path(task), 0);
    end_verify(task);
  }
  verify.buffer.release();
  advance(slot);
}

// Closes what verify opened; the task's verify is over.
void Engine::end_verify(FileTask& task) {
  VerifyState& verify = task.verify;
  verify.buffer.release();
  for (int* fd : {&verify.source_fd, &verify.target_fd}) {
    if (*fd >= 0) queue_.execute_now(Request::close(*fd));
    *fd = -1;
  }
  if (verify.started) verify.done = true;
}

}  // namespace ringio::copy
