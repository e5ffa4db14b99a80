#include "support/fault_injection.hpp"

#include "copy/publisher.hpp"  // kTempPrefix

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace ringio::test {

namespace {

constexpr std::array<const char*, kFaultKindCount> kKindNames = {
    "enospc", "eio", "eintr", "eagain", "short_read", "short_write", "registration", "enomem", "einval"};

uint64_t mix64(uint64_t x) {
  // splitmix64's finalizer: every input bit affects every output bit.
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t fnv1a(const std::string& text) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 0x100000001b3ull;
  }
  return hash;
}

// ".ringcp-k3j2...tmp" -> ".ringcp-*": the engine draws temporary names at
// random, and a fault decision must not depend on them.
std::string fold_temporaries(std::string name) {
  static const std::string kPrefix = copy::kTempPrefix;
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('/', start);
    if (end == std::string::npos) end = name.size();
    if (name.compare(start, kPrefix.size(), kPrefix) == 0 && end - start > kPrefix.size()) {
      name.replace(start, end - start, kPrefix + "*");
      end = start + kPrefix.size() + 1;
    }
    start = end + 1;
  }
  return name;
}

bool creates_something(const Request& request) {
  return (request.flags & (O_CREAT | O_WRONLY | O_RDWR)) != 0 ||
         (request.flags & O_TMPFILE) == O_TMPFILE;
}

}  // namespace

int errno_of(FaultKind kind) {
  switch (kind) {
    case FaultKind::enospc: return ENOSPC;
    case FaultKind::eio: return EIO;
    case FaultKind::eintr: return EINTR;
    case FaultKind::eagain: return EAGAIN;
    case FaultKind::enomem:
    case FaultKind::registration: return ENOMEM;
    case FaultKind::einval: return EINVAL;
    default: return 0;  // short transfers complete with a count
  }
}

const char* fault_kind_name(FaultKind kind) {
  const auto index = static_cast<size_t>(kind);
  return index < kFaultKindCount ? kKindNames[index] : "invalid";
}

OpMask default_enospc_ops() {
  return op_bit(Op::write) | op_bit(Op::openat) | op_bit(Op::mkdirat) | op_bit(Op::mknodat) |
         op_bit(Op::linkat) | op_bit(Op::renameat) | op_bit(Op::symlinkat) | op_bit(Op::fsync) |
         op_bit(Op::ftruncate) | op_bit(Op::fallocate) | op_bit(Op::copy_file_range);
}

OpMask default_eio_ops() {
  return op_bit(Op::read) | op_bit(Op::write) | op_bit(Op::openat) | op_bit(Op::statx) |
         op_bit(Op::fsync) | op_bit(Op::mkdirat) | op_bit(Op::mknodat) | op_bit(Op::linkat) |
         op_bit(Op::renameat) | op_bit(Op::symlinkat) | op_bit(Op::readlinkat) |
         op_bit(Op::fchmod) | op_bit(Op::fchownat) | op_bit(Op::utimensat) | op_bit(Op::ftruncate) |
         op_bit(Op::copy_file_range) | op_bit(Op::getdents) | op_bit(Op::fchmodat) |
         op_bit(Op::cachestat) | op_bit(Op::fstatfs) | op_bit(Op::map_file) | op_bit(Op::unlinkat) |
         op_bit(Op::fgetxattr) | op_bit(Op::fsetxattr) | op_bit(Op::flistxattr) | op_bit(Op::fremovexattr) |
         op_bit(Op::seek_data) | op_bit(Op::seek_hole);
}

// cachestat, fstatfs and map_file only inform a choice (read from the
// cache, read a pseudo filesystem to its end, write from a mapping), and
// seek_hole where the next hole is (the rest is copied as data): when they
// fail the engine takes the plain path instead. An attribute check or a
// marker that cannot be set or removed has a fallback too (the name's check;
// the next run looks again).
OpMask must_report_ops() {
  return default_eio_ops() & ~(op_bit(Op::statx) | op_bit(Op::cachestat) | op_bit(Op::fstatfs) |
                               op_bit(Op::map_file) | op_bit(Op::seek_hole) | op_bit(Op::fgetxattr) |
                               op_bit(Op::fsetxattr) | op_bit(Op::fremovexattr));
}

OpMask default_transient_ops() {
  return op_bit(Op::read) | op_bit(Op::write) | op_bit(Op::copy_file_range);
}

OpMask default_enomem_ops() { return op_bit(Op::map_file) | op_bit(Op::madvise); }

OpMask default_refusal_ops() { return op_bit(Op::set_direct_io); }

OpMask never_failed_ops() { return op_bit(Op::close) | op_bit(Op::unmap); }

bool FaultSchedule::draws(FaultKind kind) const {
  switch (kind) {
    case FaultKind::enospc: return enospc > 0 && enospc_ops != 0;
    case FaultKind::eio: return eio > 0 && eio_ops != 0;
    case FaultKind::eintr: return eintr > 0 && transient_ops != 0;
    case FaultKind::eagain: return eagain > 0 && transient_ops != 0;
    case FaultKind::short_read: return short_read > 0 && transient_ops != 0;
    case FaultKind::short_write: return short_write > 0 && transient_ops != 0;
    case FaultKind::registration: return registration != RegistrationFault::none;
    case FaultKind::enomem: return enomem > 0 && enomem_ops != 0;
    case FaultKind::einval: return einval > 0 && einval_ops != 0;
    case FaultKind::count_: break;
  }
  return false;
}

std::string FaultSchedule::describe() const {
  char text[320];
  std::snprintf(text, sizeof text,
                "enospc=%g eio=%g eintr=%g eagain=%g short_read=%g short_write=%g enomem=%g einval=%g "
                "registration=%s",
                enospc, eio, eintr, eagain, short_read, short_write, enomem, einval,
                registration == RegistrationFault::none         ? "ok"
                : registration == RegistrationFault::refuse_all ? "refuse_all"
                                                                : ("cap" + std::to_string(registered_buffers_max)).c_str());
  return text;
}

FaultCounts& FaultCounts::operator+=(const FaultCounts& other) {
  for (size_t i = 0; i < kFaultKindCount; ++i) {
    injected[i] += other.injected[i];
    hit[i] += other.hit[i];
  }
  for (size_t i = 0; i < kOpCount; ++i) injected_by_op[i] += other.injected_by_op[i];
  hard_hits += other.hard_hits;
  must_report_hits += other.must_report_hits;
  return *this;
}

std::string FaultCounts::describe() const {
  std::string text;
  for (size_t i = 0; i < kFaultKindCount; ++i) {
    if (!text.empty()) text += ' ';
    text += std::string(kKindNames[i]) + "=" + std::to_string(injected[i]) + "/" + std::to_string(hit[i]);
  }
  return text + " (injected/hit)";
}

std::string FaultCounts::describe_by_op() const {
  std::string text;
  for (size_t i = 0; i < kOpCount; ++i) {
    if (injected_by_op[i] == 0) continue;
    if (!text.empty()) text += ' ';
    text += std::string(op_name(Op(i))) + "=" + std::to_string(injected_by_op[i]);
  }
  return text.empty() ? "none" : text;
}

std::string FaultRecord::describe() const {
  std::string text = std::string(fault_kind_name(kind)) + " " + op_name(op) + " '" + key_name +
                     "' offset=" + std::to_string(offset) + " #" + std::to_string(occurrence);
  if (kind == FaultKind::short_read || kind == FaultKind::short_write)
    text += " length " + std::to_string(length_before) + "->" + std::to_string(length_after);
  return text;
}

int CappedRegistrar::update_slots(uint32_t, const iovec* iovecs, uint32_t count) {
  uint32_t taken = 0;
  for (; taken < count; ++taken) {
    if (iovecs[taken].iov_base == nullptr) {
      if (registered_ > 0) --registered_;
    } else if (registered_ < cap_) {
      ++registered_;
    } else {
      break;
    }
  }
  if (taken == 0) return refused();
  return static_cast<int>(taken);
}

int CappedRegistrar::register_table(const iovec*, uint32_t count) {
  if (count > cap_) return refused();
  registered_ = count;
  return 0;
}

int CappedRegistrar::unregister_table() {
  registered_ = 0;
  return 0;
}

int CappedRegistrar::refused() { return -ENOMEM; }

// A registrar for the decorator's own pool that refuses (ENOMEM) as the
// schedule says, and logs each refusal. The inner ring never sees these
// buffers: reads and writes from them are forwarded as plain transfers.
class FaultInjectingBackend::RefusingRegistrar final : public CappedRegistrar {
 public:
  RefusingRegistrar(RegistrationFault mode, uint32_t cap, FaultLog& log)
      : CappedRegistrar(mode == RegistrationFault::refuse_all ? 0 : cap), mode_(mode), log_(log) {}
  int register_sparse(uint32_t count) override {
    if (mode_ == RegistrationFault::refuse_all) return refused();
    return CappedRegistrar::register_sparse(count);
  }

 private:
  int refused() override {
    const auto kind = static_cast<size_t>(FaultKind::registration);
    ++log_.counts.injected[kind];
    ++log_.counts.hit[kind];  // the group sees the refusal at once
    return -ENOMEM;
  }
  RegistrationFault mode_;
  FaultLog& log_;
};

FaultInjectingBackend::FaultInjectingBackend(std::unique_ptr<Backend> inner, uint64_t seed,
                                             FaultSchedule schedule, std::shared_ptr<FaultLog> log,
                                             std::vector<std::string> roots, const IoConfig& io)
    : inner_(std::move(inner)),
      seed_(seed),
      schedule_(schedule),
      log_(log ? std::move(log) : std::make_shared<FaultLog>()),
      roots_(std::move(roots)) {
  for (std::string& root : roots_) {
    while (root.size() > 1 && root.back() == '/') root.pop_back();
  }
  // Longest prefix first, so that nested roots map to the innermost.
  std::stable_sort(roots_.begin(), roots_.end(),
                   [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  if (schedule_.registration != RegistrationFault::none) {
    registrar_ = std::make_unique<RefusingRegistrar>(schedule_.registration, schedule_.registered_buffers_max, *log_);
    own_group_ = std::make_unique<RegisteredBufferGroup>(BufferGroupOptions::from(io), registrar_.get());
  }
}

FaultInjectingBackend::~FaultInjectingBackend() {
  // Let the inner backend finish what it has in flight while the pool it may
  // read into still exists (inner_ is destroyed before own_group_ anyway).
  inner_.reset();
}

std::string FaultInjectingBackend::strip_roots(const std::string& path) const {
  for (size_t i = 0; i < roots_.size(); ++i) {
    const std::string& root = roots_[i];
    if (path.compare(0, root.size(), root) == 0 && (path.size() == root.size() || path[root.size()] == '/'))
      return "<" + std::to_string(i) + ">" + path.substr(root.size());
  }
  return path;
}

std::string FaultInjectingBackend::fd_name(int fd) const {
  if (fd == AT_FDCWD) return ".";
  const auto it = fd_names_.find(fd);
  return it != fd_names_.end() ? it->second : "fd?";
}

// "<file> mapping +N": the file a map_file request mapped and where in the
// mapping `address` lies, whatever address the kernel chose.
std::string FaultInjectingBackend::mapping_name(const void* address, uint64_t length) const {
  const auto at = reinterpret_cast<uintptr_t>(address);
  auto it = mappings_.upper_bound(at);
  if (it == mappings_.begin()) return "mapping?";
  --it;
  if (at + length > it->first + it->second.length) return "mapping?";
  return it->second.name + " mapping +" + std::to_string(at - it->first);
}

std::string FaultInjectingBackend::resolve(int dirfd, const char* path) const {
  if (path == nullptr || path[0] == '\0') return fd_name(dirfd);
  // The engine links unnamed files through /proc/self/fd/N when it cannot
  // use AT_EMPTY_PATH: that names the descriptor.
  int proc_fd = -1;
  if (std::sscanf(path, "/proc/self/fd/%d", &proc_fd) == 1) return fd_name(proc_fd);
  if (path[0] == '/') return strip_roots(path);
  if (dirfd == AT_FDCWD) return strip_roots(path);
  return fd_name(dirfd) + "/" + path;
}

std::string FaultInjectingBackend::tmpfile_directory(const Request& r) const {
  std::string dir = resolve(r.fd, r.path);
  if (dir.size() > 2 && dir.compare(dir.size() - 2, 2, "/.") == 0) dir.resize(dir.size() - 2);
  return dir;
}

// The name a request is about (see the header): deterministic for a given
// tree, whatever the completion order.
std::string FaultInjectingBackend::key_name(const Request& r) {
  switch (r.op) {
    case Op::openat:
      if ((r.flags & O_TMPFILE) == O_TMPFILE) {
        // Unnamed inodes are created in walk order: number them per directory.
        const std::string dir = tmpfile_directory(r);
        return dir + "/<tmpfile " + std::to_string(tmpfile_sequence_[dir]) + ">";
      }
      return fold_temporaries(resolve(r.fd, r.path));
    case Op::statx:
    case Op::mkdirat:
    case Op::mknodat:
    case Op::unlinkat:
    case Op::readlinkat:
    case Op::fchmodat:
    case Op::fchownat:
    case Op::utimensat:
      return fold_temporaries(resolve(r.fd, r.path));
    case Op::linkat: {
      const std::string to = fold_temporaries(resolve(r.fd2, r.path2));
      if (to.find(std::string(copy::kTempPrefix) + "*") == std::string::npos) return to;
      // A temporary name: what is linked says which file this is.
      return fold_temporaries(resolve(r.fd, r.path)) + " -> " + to;
    }
    case Op::renameat:
      return fold_temporaries(resolve(r.fd2, r.path2));
    case Op::symlinkat:
      return fold_temporaries(resolve(r.fd2, r.path)) + " => " + (r.path2 ? r.path2 : "");
    case Op::lsetxattr:
    case Op::lgetxattr:
    case Op::llistxattr:
    case Op::lremovexattr:
      return fold_temporaries(resolve(AT_FDCWD, r.path2)) + " xattr " + (r.path ? r.path : "");
    case Op::fsetxattr:
    case Op::fgetxattr:
    case Op::fremovexattr:
      return fd_name(r.fd) + " xattr " + (r.path ? r.path : "");
    case Op::ficlone:
      return fd_name(r.fd) + " <- " + fd_name(r.fd2);
    case Op::copy_file_range:
      return fd_name(r.fd2) + " <- " + fd_name(r.fd);
    case Op::madvise:
    case Op::unmap:
      return mapping_name(r.buffer, r.length);
    default:  // getdents, set_direct_io, cachestat, fstatfs, map_file, ...
      return fd_name(r.fd);
  }
}

double FaultInjectingBackend::draw(FaultKind kind, const std::string& key, uint32_t occurrence,
                                   uint64_t salt) const {
  uint64_t h = mix64(seed_ ^ mix64(uint64_t(kind) + 1 + (salt << 8)));
  h = mix64(h ^ fnv1a(key));
  h = mix64(h ^ occurrence);
  return double(h >> 11) * 0x1.0p-53;  // [0, 1)
}

void FaultInjectingBackend::record(FaultKind kind, const Request& request, const std::string& name,
                                   uint32_t occurrence, uint64_t before, uint64_t after) {
  ++log_->counts.injected[size_t(kind)];
  ++log_->counts.injected_by_op[size_t(request.op)];
  if (log_->keep_records)
    log_->records.push_back(FaultRecord{kind, request.op, name, request.offset, occurrence, before, after});
}

// The failure drawn for this request, if any: it completes with the errno
// and is not forwarded.
std::optional<FaultKind> FaultInjectingBackend::draw_failure(const Request& request, const std::string& key,
                                                             uint32_t occurrence) const {
  if ((never_failed_ops() & op_bit(request.op)) != 0) return std::nullopt;
  // Turning O_DIRECT off again is never refused (F_SETFL without it).
  if (request.op == Op::set_direct_io && (request.flags & O_DIRECT) == 0) return std::nullopt;
  struct Candidate {
    FaultKind kind;
    double probability;
    OpMask ops;
  };
  const bool creates = request.op != Op::openat || creates_something(request);
  const Candidate candidates[] = {
      {FaultKind::enospc, creates ? schedule_.enospc : 0.0, schedule_.enospc_ops},
      {FaultKind::eio, schedule_.eio, schedule_.eio_ops},
      {FaultKind::eintr, schedule_.eintr, schedule_.transient_ops},
      {FaultKind::eagain, schedule_.eagain, schedule_.transient_ops},
      {FaultKind::enomem, schedule_.enomem, schedule_.enomem_ops},
      {FaultKind::einval, schedule_.einval, schedule_.einval_ops},
  };
  for (const Candidate& c : candidates) {
    if (c.probability <= 0 || (c.ops & op_bit(request.op)) == 0) continue;
    if (draw(c.kind, key, occurrence) < c.probability) return c.kind;
  }
  return std::nullopt;
}

// A short transfer drawn for this request: its length is cut, and the
// fault kind returned (-1: none).
int FaultInjectingBackend::draw_short(Request& request, const std::string& key, uint32_t occurrence) const {
  const bool data_op = request.op == Op::read || request.op == Op::write || request.op == Op::copy_file_range;
  if (!data_op || (schedule_.transient_ops & op_bit(request.op)) == 0 || request.length < 2) return -1;
  // A short copy_file_range is a short write: the target got fewer bytes.
  const FaultKind kind = request.op == Op::read ? FaultKind::short_read : FaultKind::short_write;
  const double probability = request.op == Op::read ? schedule_.short_read : schedule_.short_write;
  if (probability <= 0 || draw(kind, key, occurrence) >= probability) return -1;
  uint64_t length = 1 + uint64_t(draw(kind, key, occurrence, 1) * double(request.length - 1));
  const int fl = fcntl(request.fd, F_GETFL);
  if (fl >= 0 && (fl & O_DIRECT) != 0) length = length / 4096 * 4096;  // stay aligned
  if (length == 0 || length >= request.length) return -1;
  request.length = length;
  return int(kind);
}

void FaultInjectingBackend::count_injected(FaultKind kind, Op op) {
  ++log_->counts.hit[size_t(kind)];
  if (kind == FaultKind::enospc || kind == FaultKind::eio) {
    ++log_->counts.hard_hits;
    if ((must_report_ops() & op_bit(op)) != 0) ++log_->counts.must_report_hits;
  }
}

// What a decision is keyed by: the operation, the name it is about, the offset.
std::string FaultInjectingBackend::fault_key(const Request& request, const std::string& name) {
  return std::string(op_name(request.op)) + '\0' + name + '\0' + std::to_string(request.offset);
}

// As prepare, without the queue: a failure is returned at once; what is
// forwarded runs now in the inner backend (no short transfers here: the
// engine runs no data transfer this way).
int64_t FaultInjectingBackend::execute_now(const Request& request) {
  const std::string name = key_name(request);
  const std::string key = fault_key(request, name);
  uint32_t& occurrence = occurrences_[key];
  const bool tmpfile = request.op == Op::openat && (request.flags & O_TMPFILE) == O_TMPFILE;
  const std::optional<FaultKind> failure = draw_failure(request, key, occurrence);
  if (failure) record(*failure, request, name, occurrence);
  ++occurrence;
  if (tmpfile) ++tmpfile_sequence_[tmpfile_directory(request)];
  if (failure) {
    count_injected(*failure, request.op);
    return -int64_t(errno_of(*failure));
  }
  const int64_t result = inner_->execute_now(request);
  if (request.op == Op::openat && result >= 0) fd_names_[int(result)] = name;
  if (request.op == Op::close) fd_names_.erase(request.fd);
  return result;
}

bool FaultInjectingBackend::prepare(const Request& original) {
  Request request = original;
  const bool fixed = request.buffer_index >= 0 && own_group_ != nullptr;
  if (own_group_ != nullptr) request.buffer_index = -1;  // our pool is not the ring's

  const std::string name = key_name(request);
  const std::string key = fault_key(request, name);
  uint32_t& occurrence = occurrences_[key];
  auto decided = [&](const char* outcome) {
    if (log_->keep_decisions)
      log_->decisions[std::string(op_name(request.op)) + " '" + name + "' offset=" +
                      std::to_string(request.offset) + " #" + std::to_string(occurrence)] = outcome;
  };
  const bool tmpfile = request.op == Op::openat && (request.flags & O_TMPFILE) == O_TMPFILE;

  if (const std::optional<FaultKind> failure = draw_failure(request, key, occurrence)) {
    record(*failure, request, name, occurrence);
    decided(fault_kind_name(*failure));
    ++occurrence;
    if (tmpfile) ++tmpfile_sequence_[tmpfile_directory(request)];
    injected_.push_back(Injected{Completion{request.user_data, -int64_t(errno_of(*failure))}, *failure, request.op});
    return true;
  }

  const uint64_t requested = request.length;
  const int short_kind = draw_short(request, key, occurrence);
  if (!inner_->prepare(request)) return false;  // no room: the same decision next time
  if (short_kind >= 0) record(FaultKind(short_kind), request, name, occurrence, requested, request.length);
  decided(short_kind >= 0 ? fault_kind_name(FaultKind(short_kind)) : "-");
  ++occurrence;
  if (tmpfile) ++tmpfile_sequence_[tmpfile_directory(request)];
  remember(request, name, short_kind, fixed);
  return true;
}

// What the completion of a forwarded request must update: the names of
// descriptors and mappings, short-transfer hits, fixed buffers in use.
void FaultInjectingBackend::remember(const Request& request, const std::string& name, int short_kind, bool fixed) {
  Pending pending;
  pending.op = request.op;
  pending.fault = short_kind;
  pending.fixed = fixed;
  bool keep = short_kind >= 0 || fixed;
  if (request.op == Op::openat || request.op == Op::map_file) {
    pending.name = name;
    pending.length = request.length;
    keep = true;
  } else if (request.op == Op::close) {
    pending.fd = request.fd;
    keep = true;
  } else if (request.op == Op::unmap) {
    pending.address = reinterpret_cast<uintptr_t>(request.buffer);
    keep = true;
  }
  if (fixed) ++registrar_->fixed_in_flight;
  if (keep) pending_[request.user_data] = std::move(pending);
}

int FaultInjectingBackend::submit_and_reap(std::span<Completion> out, unsigned min_completions) {
  size_t produced = 0;
  while (produced < out.size() && !injected_.empty()) {
    const Injected injected = injected_.front();
    injected_.pop_front();
    count_injected(injected.kind, injected.op);
    out[produced++] = injected.completion;
  }
  // Never wait for more than the inner backend can produce.
  const unsigned wanted = min_completions > produced ? unsigned(min_completions - produced) : 0;
  const unsigned wait_for = std::min<unsigned>(wanted, inner_->in_flight());
  const int n = inner_->submit_and_reap(out.subspan(produced), wait_for);
  if (n < 0) return produced > 0 ? int(produced) : n;
  for (size_t i = produced; i < produced + size_t(n); ++i) {
    const Completion& completion = out[i];
    auto it = pending_.find(completion.user_data);
    if (it == pending_.end()) continue;
    Pending& pending = it->second;
    if (pending.op == Op::openat && completion.result >= 0) {
      fd_names_[int(completion.result)] = pending.name;
    } else if (pending.op == Op::close) {
      fd_names_.erase(pending.fd);
    } else if (pending.op == Op::map_file && completion.result >= 0) {
      mappings_[uintptr_t(completion.result)] = Mapping{pending.length, pending.name};
    } else if (pending.op == Op::unmap) {
      mappings_.erase(pending.address);
    }
    if (pending.fault >= 0) ++log_->counts.hit[size_t(pending.fault)];
    if (pending.fixed) --registrar_->fixed_in_flight;
    pending_.erase(it);
  }
  return int(produced) + n;
}

std::optional<uint64_t> replay_seed_from_env() {
  const char* text = std::getenv("RINGIO_FAULT_SEED");
  if (text == nullptr || *text == '\0') return std::nullopt;
  char* end = nullptr;
  const uint64_t seed = std::strtoull(text, &end, 0);
  if (end == text || *end != '\0') return std::nullopt;
  return seed;
}

}  // namespace ringio::test
