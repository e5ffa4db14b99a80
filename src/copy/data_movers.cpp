// Moving a file's data, by the path file_policy chose:
//   pooled / direct_read: chunks through pool buffers, read (with O_DIRECT
//     for direct_read) into a registered buffer and written from it; many
//     chunks per file in flight, a miss parks the file until a buffer returns.
//   mapped_direct_write / in_kernel: unbuffered pieces, one at a time per
//     file: O_DIRECT writes straight from a mapping of the cached source, or
//     copy_file_range.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <algorithm>
#include <cassert>

#include "copy/engine.hpp"

namespace ringio::copy {

// 0, or the errno of a failed extent lookup (the file cannot be copied).
int Engine::plan_extents(FileTask& task) {
  const uint64_t size = task.source_stat.stx_size;
  task.extents.clear();
  task.extent_index = 0;
  if (task.size_unknown) {
    task.next_offset = 0;
    return 0;
  }
  const bool maybe_sparse = uint64_t{task.source_stat.stx_blocks} * 512 < size;
  if (options_.sparse != SparseMode::never && maybe_sparse && size > 0) {
    // Holes found with SEEK_DATA/SEEK_HOLE are kept as holes.
    uint64_t offset = 0;
    while (offset < size) {
      const int64_t data = queue_.execute_now(Request::seek_data(task.source_fd, offset));
      if (data == -ENXIO) break;  // no more data
      if (data < 0) return int(-data);
      int64_t hole = queue_.execute_now(Request::seek_hole(task.source_fd, uint64_t(data)));
      if (hole < 0) hole = int64_t(size);  // copied as data: never a hole too many
      task.extents.emplace_back(uint64_t(data), std::min<uint64_t>(uint64_t(hole), size));
      offset = uint64_t(hole);
    }
    // The size is set only when the file ends in a hole: the data written
    // already makes it (and fusefat refuses any ftruncate that changes nothing).
    task.needs_truncate = task.extents.empty() || task.extents.back().second < size;
  } else if (size > 0) {
    task.extents.emplace_back(0, size);
  }
  task.next_offset = task.extents.empty() ? size : task.extents.front().first;
  return 0;
}

// Measures what the choice depends on (only for large plain files), asks
// file_policy, and sets the path up, falling back where that fails.
void Engine::choose_data_path(FileTask& task) {
  DataPathFacts facts;
  facts.size_bytes = task.source_stat.stx_size;
  facts.size_unknown = task.size_unknown;
  facts.one_extent_from_start = task.extents.size() == 1 && task.extents.front().first == 0;
  facts.buffer_size_bytes = pool_.buffer_size();
  task.data_path = DataPath::pooled;
  if (!data_path_needs_facts(facts)) return;
  // At least half of the pages in the page cache (cachestat(2), Linux 6.5;
  // no where it is missing): read from the cache, not the device again.
  CacheStat cache{};
  if (queue_.execute_now(Request::cachestat(task.source_fd, 0, facts.size_bytes, &cache)) == 0)
    facts.mostly_cached = cache.nr_cache * 2 >= (facts.size_bytes + kPageSizeBytes - 1) / kPageSizeBytes;
  // The file offset alignment O_DIRECT needs, or 0 when it cannot be used
  // with page-aligned memory (STATX_DIOALIGN, Linux 6.1).
  auto alignment = [this](int fd) -> uint32_t {
    struct statx align {};
    if (queue_.execute_now(Request::statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &align)) != 0 ||
        !(align.stx_mask & STATX_DIOALIGN) || align.stx_dio_mem_align == 0 || align.stx_dio_mem_align > kPageSizeBytes)
      return 0;
    return align.stx_dio_offset_align;
  };
  if (facts.mostly_cached) facts.target_direct_alignment = alignment(task.target_fd);
  else facts.source_direct_alignment = alignment(task.source_fd);
  DataPath path = copy::choose_data_path(facts, data_rules_);
  if (!set_up_data_path(task, path, facts.target_direct_alignment)) path = fallback_data_path(path, data_rules_);
  task.data_path = path;
}

// False when the path cannot be set up for this file (the caller falls back).
bool Engine::set_up_data_path(FileTask& task, DataPath path, uint32_t target_alignment) {
  if (path == DataPath::direct_read)
    return queue_.execute_now(Request::set_direct_io(task.source_fd, DirectIo::on)) == 0;
  if (path != DataPath::mapped_direct_write) return true;
  const uint64_t size = task.source_stat.stx_size;
  const int64_t mapped = queue_.execute_now(Request::map_file(task.source_fd, size, 0, MADV_SEQUENTIAL));
  if (mapped <= 0) return false;
  if (queue_.execute_now(Request::set_direct_io(task.target_fd, DirectIo::on)) != 0) {
    queue_.execute_now(Request::unmap(mapped_address(mapped), size));
    return false;
  }
  task.mapping = reinterpret_cast<const uint8_t*>(mapped_address(mapped));
  task.mapping_length = size;
  task.direct_write_end = size / target_alignment * target_alignment;
  return true;
}

void Engine::release_mapping(FileTask& task) {
  if (task.mapping == nullptr) return;
  queue_.execute_now(Request::unmap(task.mapping, task.mapping_length));
  task.mapping = nullptr;
}

// Back to buffered reads: the filesystem refused an O_DIRECT read after all
// (e.g. a short read left an unaligned remainder).
void Engine::stop_direct_io(FileTask& task) {
  queue_.execute_now(Request::set_direct_io(task.source_fd, DirectIo::off));
  task.data_path = DataPath::pooled;
}

// Back to buffered writes on the target: for the unaligned tail, or for good
// when the filesystem refused a write (the mapping stays for the tail).
void Engine::stop_mapped_direct_write(FileTask& task) {
  queue_.execute_now(Request::set_direct_io(task.target_fd, DirectIo::off));
  task.direct_write_end = 0;
}

void Engine::count_bytes(uint64_t bytes) {
  if (callbacks_.progress) callbacks_.progress->bytes_done.fetch_add(bytes, std::memory_order_relaxed);
  report_.bytes_copied += bytes;
}

// True while the file's data is in flight (or parked for a buffer).
bool Engine::schedule_data(uint32_t slot) {
  FileTask& task = tasks_[slot];
  if (task.unbuffered()) schedule_unbuffered(slot);
  else schedule_chunks(slot);
  return task.chunks_in_flight != 0 || task.parked;
}

void Engine::schedule_chunks(uint32_t slot) {
  FileTask& task = tasks_[slot];
  task.parked = false;
  if (task.size_unknown) {
    // One buffer at a time, read at the next offset and written as far as
    // the read went, until a read returns 0.
    if (task.chunks_in_flight == 0 && !task.end_of_file && task.error == 0 && !task.cancelled)
      start_chunk_read(slot, 0, true);
    return;
  }
  while (task.error == 0 && !task.cancelled && task.extent_index < task.extents.size()) {
    const auto [extent_start, extent_end] = task.extents[task.extent_index];
    if (task.next_offset < extent_start) task.next_offset = extent_start;
    if (task.next_offset >= extent_end) {
      ++task.extent_index;
      continue;
    }
    // The last read asks for a whole buffer: more bytes than expected means
    // the file grew while it was copied.
    const uint64_t length = std::min<uint64_t>(pool_.buffer_size(), extent_end - task.next_offset);
    const bool last = task.next_offset + length == task.source_stat.stx_size;
    if (!start_chunk_read(slot, length, last && task.extents.size() == 1)) return;
    task.next_offset += length;
  }
}

// One checkout per piece of work that is ready: a miss (counted by the pool)
// parks the file until a completion gives a buffer back. Otherwise a chunk
// reads `length` bytes (0: unknown, as much as a buffer holds) at the
// task's next offset, asking for a whole buffer when `ask_more`.
bool Engine::start_chunk_read(uint32_t slot, uint64_t length, bool ask_more) {
  FileTask& task = tasks_[slot];
  BufferSlot buffer = pool_.checkout();
  if (!buffer) {
    task.parked = true;
    parked_.push_back(slot);
    return false;
  }
  assert(!free_chunks_.empty() && "one chunk per buffer the pool can hold");
  const uint32_t index = free_chunks_.back();
  free_chunks_.pop_back();
  Chunk& chunk = chunks_[index];
  chunk = Chunk{};
  chunk.active = true;
  chunk.task = slot;
  chunk.offset = task.next_offset;
  chunk.length = uint32_t(length);
  chunk.requested = ask_more || length == 0 ? buffer.size() : chunk.length;
  chunk.slot = std::move(buffer);
  ++task.chunks_in_flight;
  queue_.submit(Request::read(task.source_fd, chunk.slot.data(), chunk.requested, chunk.offset, chunk.slot.fixed_index()),
                OpRecord{OwnerKind::chunk, uint8_t(ChunkOp::read), 0, index});
  return true;
}

void Engine::release_chunk(uint32_t index) {
  Chunk& chunk = chunks_[index];
  --tasks_[chunk.task].chunks_in_flight;
  chunk.slot.release();
  chunk.active = false;
  free_chunks_.push_back(index);
}


void Engine::on_chunk_completion(uint32_t index, ChunkOp op, int64_t result) {
  Chunk& chunk = chunks_[index];
  assert(chunk.active);
  const uint32_t slot = chunk.task;
  FileTask& task = tasks_[slot];
  if (result == -EINTR) {
    // Interrupted before it moved anything: the same piece again at once.
  } else if (result == -EAGAIN) {
    ++chunk.refusals;  // the same piece again, after a pause
  } else if (result == -EINVAL && task.direct() && op == ChunkOp::read) {
    stop_direct_io(task);
  } else if (result < 0) {
    if (op == ChunkOp::read) fail(slot, "error reading", source_path(task), int(-result));
    else fail(slot, "error writing", target_path(task), int(-result));
    release_chunk(index);
    advance(slot);
    return;
  } else if (op == ChunkOp::read ? !settle_chunk_read(index, result) : !settle_chunk_write(index, result)) {
    release_chunk(index);
    advance(slot);
    return;
  }
  continue_chunk(index, result);
}

// A read moved `result` bytes. False when the chunk is over (released by
// the caller): end of a file of unknown size, or the source changed size.
bool Engine::settle_chunk_read(uint32_t index, int64_t result) {
  Chunk& chunk = chunks_[index];
  FileTask& task = tasks_[chunk.task];
  if (task.size_unknown) {
    if (result == 0) {
      task.end_of_file = true;
      return false;
    }
    // Whatever one read gives is written; the next read starts after it.
    chunk.length = uint32_t(result);
    chunk.writing = true;
    chunk.done = 0;
    task.next_offset += uint64_t(result);
    return true;
  }
  if (result == 0 && chunk.done < chunk.length) {
    fail(chunk.task, "source file shrank while it was copied:", source_path(task), 0);
    return false;
  }
  chunk.done += uint32_t(result);
  if (chunk.done > chunk.length) {
    fail(chunk.task, "source file grew while it was copied:", source_path(task), 0);
    return false;
  }
  if (chunk.done == chunk.length) {
    chunk.writing = true;
    chunk.done = 0;
  }
  return true;
}

// A write moved `result` bytes. False when the chunk is over: all written,
// or a write of nothing (the device's fault).
bool Engine::settle_chunk_write(uint32_t index, int64_t result) {
  Chunk& chunk = chunks_[index];
  if (result == 0) {
    fail(chunk.task, "error writing", target_path(tasks_[chunk.task]), EIO);
    return false;
  }
  chunk.done += uint32_t(result);
  count_bytes(uint64_t(result));
  return chunk.done < chunk.length;
}

// Issues (or resumes after a short transfer) the chunk's read or write.
void Engine::continue_chunk(uint32_t index, int64_t result) {
  Chunk& chunk = chunks_[index];
  FileTask& task = tasks_[chunk.task];
  const Request request =
      chunk.writing ? Request::write(task.target_fd, chunk.slot.data() + chunk.done, chunk.length - chunk.done,
                                     chunk.offset + chunk.done, chunk.slot.fixed_index())
                    : Request::read(task.source_fd, chunk.slot.data() + chunk.done,
                                    std::max(chunk.requested, chunk.length) - chunk.done, chunk.offset + chunk.done,
                                    chunk.slot.fixed_index());
  const OpRecord op{OwnerKind::chunk, uint8_t(chunk.writing ? ChunkOp::write : ChunkOp::read), 0, index};
  if (result == -EAGAIN) {
    queue_.submit_later(request, op, chunk.refusals);
    return;
  }
  chunk.refusals = 0;
  queue_.submit(request, op);
}

void Engine::schedule_unbuffered(uint32_t slot) {
  FileTask& task = tasks_[slot];
  if (task.chunks_in_flight != 0 || task.error != 0 || task.cancelled) return;
  const uint64_t end = task.extents.empty() ? 0 : task.extents.front().second;
  if (task.next_offset >= end) return;
  ++task.chunks_in_flight;
  submit_file_op(slot, unbuffered_piece(slot), FileOp::unbuffered_piece);
}

// The piece at the task's next offset.
Request Engine::unbuffered_piece(uint32_t slot) {
  FileTask& task = tasks_[slot];
  const uint64_t end = task.extents.front().second;
  uint64_t length = std::min(kUnbufferedPieceBytes, end - task.next_offset);
  if (task.mapping == nullptr) return Request::copy_file_range(task.source_fd, task.target_fd, task.next_offset, length);
  if (task.next_offset < task.direct_write_end) length = std::min(length, task.direct_write_end - task.next_offset);
  else if (task.direct_write_end != 0) stop_mapped_direct_write(task);  // the unaligned tail
  return Request::write(task.target_fd, task.mapping + task.next_offset, length, task.next_offset);
}

void Engine::on_unbuffered_completion(uint32_t slot, int64_t result) {
  FileTask& task = tasks_[slot];
  --task.chunks_in_flight;
  const bool mapped = task.mapping != nullptr;
  if (result == -EAGAIN && !task.cancelled && task.error == 0) {
    ++task.chunks_in_flight;  // the same piece again, after a pause
    queue_.submit_later(unbuffered_piece(slot), OpRecord{OwnerKind::file, uint8_t(FileOp::unbuffered_piece),
                                                         uint8_t(task.step), slot},
                        ++task.refusals);
    return;
  }
  if (result != -EAGAIN) task.refusals = 0;
  if (result == -EINTR || result == -EAGAIN) {
    // The same piece again (EAGAIN: once the copy is stopped, not at all).
  } else if (!mapped && result < 0 && is_copy_range_unsupported(int(-result))) {
    // This pair of files cannot be copied in the kernel (e.g. across
    // filesystems): the rest goes through the buffers.
    task.data_path = DataPath::pooled;
  } else if (mapped && result == -EINVAL && task.direct_write_end != 0) {
    stop_mapped_direct_write(task);  // refused after all: buffered, from the same mapping
  } else if (mapped && result == -EFAULT) {
    fail(slot, "source file shrank while it was copied:", source_path(task), 0);  // the mapping ends there
  } else if (result < 0) {
    if (mapped) fail(slot, "error writing", target_path(task), int(-result));
    else fail(slot, "error copying " + quote_name(source_path(task)) + " to", target_path(task), int(-result));
  } else if (result == 0) {
    // copy_file_range: end of the source; a write of nothing: the device's fault.
    if (mapped) fail(slot, "error writing", target_path(task), EIO);
    else fail(slot, "source file shrank while it was copied:", source_path(task), 0);
  } else {
    unbuffered_progress(task, result);
  }
  advance(slot);
}

void Engine::unbuffered_progress(FileTask& task, int64_t bytes) {
  task.next_offset += uint64_t(bytes);
  count_bytes(uint64_t(bytes));
  if (task.mapping == nullptr) return;
  // Drop the page-table entries of what is written: the pages stay in the
  // page cache, and the process does not grow to the file's size.
  const uint64_t written = task.next_offset / kPageSizeBytes * kPageSizeBytes;
  if (written <= task.mapping_released) return;
  queue_.execute_now(Request::madvise(task.mapping + task.mapping_released, written - task.mapping_released,
                                      MADV_DONTNEED));
  task.mapping_released = written;
}

}  // namespace ringio::copy
