// Property tests: the real copy engine (run_copy, in process) on generated
// trees of 500+ entries, with a FaultInjectingBackend wrapped around the
// selected backend. Many seeds, each a schedule of faults; after every run:
//
//   - every regular file under a final name in the destination is
//     byte-identical to its source (or, when the destination held an older
//     version and the copy of that file failed, still the older version:
//     never a mix), with the source's mode and mtime;
//   - no temporary (".ringcp-*") remains anywhere;
//   - the source is untouched (content, mode, mtime, ctime);
//   - errors are reported iff something could not be copied: a reported
//     error needs an injected ENOSPC/EIO that the engine received, an
//     injected ENOSPC/EIO on an operation whose failure loses an entry must
//     be reported, and no error means every entry arrived;
//   - the report counts what is in the destination: files_copied +
//     hard_links_made = regular files written by this run, symlinks and
//     directories likewise.
//
// A failure prints its seed; RINGIO_FAULT_SEED=<seed> replays exactly that
// run (same tree, same schedule, same options) and prints every injected
// fault. RINGIO_FAULT_SCHEDULES sets how many seeds run (default 200).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <iterator>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <set>

#include <sys/xattr.h>

#include "copy/publisher.hpp"
#include "faults/fault_tree.hpp"
#include "ringio/copy.hpp"
#include "support/fault_injection.hpp"
#include "support/test_util.hpp"

namespace ringio::test {
namespace {

constexpr uint64_t kTreeCount = 3;  // distinct source trees, chosen by seed

uint64_t schedule_count() {
  const char* text = std::getenv("RINGIO_FAULT_SCHEDULES");
  if (text == nullptr || *text == '\0') return 200;
  return std::strtoull(text, nullptr, 10);
}

// Everything one seed decides.
struct Scenario {
  uint64_t seed = 0;
  uint64_t tree = 0;
  FaultSchedule schedule;
  EngineChoice engine = EngineChoice::automatic;
  uint32_t buffer_size = 64 * 1024;
  uint32_t max_buffers = 64;
  uint32_t files_in_flight = 64;
  uint32_t initial_buffers = 8;
  ResizeMode resize_mode = ResizeMode::sparse;
  bool prepopulate = false;  // the destination already holds older versions
  bool on_disk = false;      // ext4 (/var/tmp) rather than tmpfs
  bool direct_io = false;    // O_DIRECT allowed (on ext4: cached large files written from a mapping)
  bool verify = false;       // --verify: every file read again through the pool
  bool delete_extraneous = false;  // --delete: the destination also holds entries the source lacks
  uint32_t directories_open_max = 64;  // 2: the walk closes and reopens directories all the time
  std::string profile;

  std::string describe() const {
    char text[512];
    std::snprintf(text, sizeof text,
                  "seed=%" PRIu64 " tree=%" PRIu64 " profile=%s engine=%s buffer=%uK buffers=%u..%u "
                  "resize=%s files_in_flight=%u prepopulated=%s fs=%s direct=%s verify=%s delete=%s open_dirs=%u faults: %s",
                  seed, tree, profile.c_str(), engine == EngineChoice::posix ? "posix" : "auto",
                  buffer_size / 1024, initial_buffers, max_buffers,
                  resize_mode == ResizeMode::sparse ? "sparse" : "reregister", files_in_flight,
                  prepopulate ? "yes" : "no",
                  on_disk ? "disk" : "tmpfs", direct_io ? "yes" : "no", verify ? "yes" : "no",
                  delete_extraneous ? "yes" : "no", directories_open_max, schedule.describe().c_str());
    return text;
  }
};

Scenario scenario_for(uint64_t seed) {
  std::mt19937_64 random(seed * 0x9e3779b97f4a7c15ull + 7);
  auto pick = [&](double low, double high) { return std::uniform_real_distribution<double>(low, high)(random); };
  Scenario s;
  s.seed = seed;
  s.tree = random() % kTreeCount;
  FaultSchedule& f = s.schedule;
  auto transients = [&](double scale) {
    f.eintr = pick(0.0, 0.03) * scale;
    f.eagain = pick(0.0, 0.03) * scale;
    f.short_read = pick(0.0, 0.3) * scale;
    f.short_write = pick(0.0, 0.3) * scale;
  };
  bool targeted = false;
  switch (seed % 10) {
    case 0:
      s.profile = "transient";
      transients(1.0);
      break;
    case 1:
      s.profile = "rare-enospc";
      transients(0.5);
      f.enospc = pick(1e-4, 2e-3);
      break;
    case 2:
      s.profile = "rare-eio";
      transients(0.5);
      f.eio = pick(1e-4, 2e-3);
      break;
    case 3:
      s.profile = "mixed";
      transients(1.0);
      f.enospc = pick(0, 3e-3);
      f.eio = pick(0, 3e-3);
      break;
    case 4:
      s.profile = "refused-registration";
      transients(0.5);
      f.registration = RegistrationFault::refuse_all;
      break;
    case 5:
      s.profile = "capped-registration";
      transients(1.0);
      f.registration = RegistrationFault::cap;
      f.registered_buffers_max = uint32_t(random() % 6);  // 0..5: below MIN too
      break;
    case 6:
      s.profile = "heavy";
      transients(1.5);
      f.enospc = pick(0.005, 0.02);
      f.eio = pick(0.005, 0.02);
      break;
    case 7:
      s.profile = "short-only";
      f.short_read = pick(0.3, 0.9);
      f.short_write = pick(0.3, 0.9);
      break;
    default: {
      // One operation fails often: every step of the engine meets its
      // failure (replacement renames, hard links, directory metadata, ...).
      targeted = true;
      const bool enospc = seed % 10 == 9;
      const OpMask mask = enospc ? default_enospc_ops() : default_eio_ops();
      std::vector<Op> ops;
      for (size_t i = 0; i < kOpCount; ++i)
        if ((mask & op_bit(Op(i))) != 0) ops.push_back(Op(i));
      const Op op = ops[(seed / 10) % ops.size()];
      s.profile = std::string(enospc ? "enospc-on-" : "eio-on-") + op_name(op);
      (enospc ? f.enospc_ops : f.eio_ops) = op_bit(op);
      (enospc ? f.enospc : f.eio) = pick(0.05, 0.5);
      transients(0.3);
      break;
    }
  }
  s.engine = random() % 3 == 0 ? EngineChoice::posix : EngineChoice::automatic;
  s.buffer_size = random() % 2 == 0 ? 16 * 1024 : 64 * 1024;
  s.max_buffers = random() % 3 == 0 ? 4 : 64;
  s.files_in_flight = random() % 3 == 0 ? 4 : 64;
  s.initial_buffers = std::min<uint32_t>(random() % 2 == 0 ? 2 : 8, s.max_buffers);
  s.resize_mode = random() % 2 == 0 ? ResizeMode::sparse : ResizeMode::reregister;
  s.prepopulate = random() % (targeted ? 2 : 4) == 0;
  s.on_disk = random() % 5 == 0;
  s.direct_io = random() % 2 == 0;  // drawn late: earlier seeds keep their other choices
  s.verify = random() % 3 == 0;
  s.delete_extraneous = random() % 3 == 0;
  s.prepopulate = s.prepopulate || s.delete_extraneous;
  s.directories_open_max = random() % 2 == 0 ? 2 : 64;
  return s;
}

// What a run planted in the destination beforehand (relative paths).
struct Planted {
  std::vector<std::string> stale_temporaries;
  std::vector<std::string> extra_entries;
};

struct RunResult {
  CopyReport report;
  FaultCounts counts;
  std::vector<std::string> messages;
  std::vector<std::string> fault_log;
  std::map<std::string, std::string> decisions;
  std::vector<std::string> violations;
};

class FaultProperty : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    disk_ = std::make_unique<TempDir>();
    // Most schedules run on tmpfs, five times faster here than the ext4 disk
    // (mounted with `discard`: deleting a tree blocks).
    const std::string memory = memory_scratch_base();
    memory_ = std::make_unique<TempDir>(memory.empty() ? disk_->path() : memory);
  }
  static void TearDownTestSuite() {
    memory_.reset();
    disk_.reset();
  }

  static TempDir& scratch(const Scenario& s) { return s.on_disk ? *disk_ : *memory_; }
  static std::string tree_root(const Scenario& s) { return scratch(s) / ("src" + std::to_string(s.tree)); }
  // Trees are made on first use (a test that needs none makes none).
  static const TreeSnapshot& source_snapshot(const Scenario& s) {
    auto it = snapshots_.find({s.on_disk, s.tree});
    if (it != snapshots_.end()) return it->second;
    const std::string root = tree_root(s);
    mkdir(root.c_str(), 0755);
    const TreeStats stats = make_tree(root, 1000 + s.tree);
    EXPECT_GE(stats.entries, 500u);
    return snapshots_[{s.on_disk, s.tree}] = snapshot_tree(root);
  }

  // What a killed run leaves: marked temporaries (in the root and in one
  // directory), which the copy must remove. Their names, relative.
  static std::vector<std::string> plant_stale_temporaries(const Scenario& s, const std::string& dst) {
    std::vector<std::string> planted;
    for (const auto& [path, entry] : source_snapshot(s)) {
      if (!S_ISDIR(entry.mode) || planted.size() >= 2) continue;
      const std::string name = (path.empty() ? "" : path + "/") + ".ringcp-stale" + std::to_string(planted.size()) + ".tmp";
      write_file(dst + "/" + name, random_bytes(100, s.seed));
      if (setxattr((dst + "/" + name).c_str(), copy::kTempMarkerXattr, "1", 1, 0) == 0) planted.push_back(name);
      else unlink((dst + "/" + name).c_str());  // no user xattrs here: not ours to remove
    }
    return planted;
  }

  // For --delete: a file and a small tree the source does not have.
  static std::vector<std::string> plant_extra_entries(const Scenario& s, const std::string& dst) {
    std::vector<std::string> planted = {"extra-file", "extra-dir", "extra-dir/sub", "extra-dir/sub/f"};
    mkdir((dst + "/extra-dir").c_str(), 0755);
    mkdir((dst + "/extra-dir/sub").c_str(), 0755);
    write_file(dst + "/extra-file", random_bytes(10, s.seed));
    write_file(dst + "/extra-dir/sub/f", random_bytes(10, s.seed + 1));
    return planted;
  }

  // Old versions of about a fifth of the files: different bytes and size.
  static std::map<std::string, uint64_t> prepopulate(const Scenario& s, const std::string& dst) {
    std::map<std::string, uint64_t> old;
    const TreeSnapshot& source = source_snapshot(s);
    std::mt19937_64 random(s.seed);
    for (const auto& [path, entry] : source) {
      if (path.empty()) continue;
      if (S_ISDIR(entry.mode)) {
        mkdir((dst + "/" + path).c_str(), 0755);
        continue;
      }
      if (!S_ISREG(entry.mode) || random() % 5 != 0) continue;
      const auto bytes = random_bytes(size_t(entry.size / 2 + 17), random());
      write_file(dst + "/" + path, bytes);
      old[path] = hash_bytes(std::string(bytes.begin(), bytes.end()));
    }
    return old;
  }

  static RunResult run(const Scenario& s, bool keep_log, bool keep_decisions = false) {
    RunResult result;
    source_snapshot(s);  // makes the tree if this is its first use
    const std::string src = tree_root(s);
    const std::string dst = scratch(s) / ("dst-" + std::to_string(s.seed));
    remove_tree(dst);
    mkdir(dst.c_str(), 0755);
    std::map<std::string, uint64_t> old;
    std::set<std::string> old_dirs;
    Planted planted;
    if (s.prepopulate) {
      old = prepopulate(s, dst);
      for (const auto& [path, entry] : source_snapshot(s))
        if (S_ISDIR(entry.mode)) old_dirs.insert(path);
      planted.stale_temporaries = plant_stale_temporaries(s, dst);
      if (s.delete_extraneous) planted.extra_entries = plant_extra_entries(s, dst);
    }

    CopyOptions options;
    options.recursive = true;
    options.symlinks = SymlinkMode::no_dereference;
    options.preserve = PreserveSet::all();
    options.engine = s.engine;
    options.files_in_flight_max = s.files_in_flight;
    options.io.buffer_size_bytes = s.buffer_size;
    options.io.max_buffers = s.max_buffers;
    options.io.initial_buffers = s.initial_buffers;
    options.io.resize_mode = s.resize_mode;
    options.io.direct_io = s.direct_io;
    options.verify = s.verify;
    options.delete_extraneous = s.delete_extraneous;
    options.directories_open_max = s.directories_open_max;

    auto log = std::make_shared<FaultLog>();
    log->keep_records = keep_log;
    log->keep_decisions = keep_decisions;
    CopyCallbacks callbacks;
    callbacks.report_error = [&](const std::string& message) { result.messages.push_back(message); };
    const IoConfig io = options.io;
    callbacks.decorate_backend = [&, log, io](std::unique_ptr<Backend> inner) -> std::unique_ptr<Backend> {
      return std::make_unique<FaultInjectingBackend>(std::move(inner), s.seed, s.schedule, log,
                                                     std::vector<std::string>{src, dst, scratch(s).path()}, io);
    };
    auto roots = plan_copy({src + "/."}, dst, options);
    if (!roots) {
      result.violations.push_back("plan_copy: " + roots.error().message());
      return result;
    }
    auto report = run_copy(*roots, options, callbacks);
    if (!report) {
      result.violations.push_back("run_copy failed: " + report.error().message());
      return result;
    }
    result.report = *report;
    result.counts = log->counts;
    for (const FaultRecord& record : log->records) result.fault_log.push_back(record.describe());
    result.decisions = std::move(log->decisions);
    check(s, src, dst, old, old_dirs, planted, result);
    if (result.violations.empty()) remove_tree(dst);
    return result;
  }

  // A message that names `path` (the last part is enough: messages quote
  // the path as the user gave it).
  static bool said(const RunResult& result, const std::string& path) {
    const std::string leaf = path.substr(path.rfind('/') == std::string::npos ? 0 : path.rfind('/') + 1);
    for (const std::string& message : result.messages)
      if (message.find(leaf) != std::string::npos) return true;
    return false;
  }

  static void check(const Scenario& s, const std::string& src, const std::string& dst,
                    const std::map<std::string, uint64_t>& old, const std::set<std::string>& old_dirs,
                    const Planted& planted, RunResult& result) {
    auto& v = result.violations;
    const CopyReport& report = result.report;
    const TreeSnapshot& source = source_snapshot(s);

    for (const std::string& diff : snapshot_differences(source, snapshot_tree(src))) v.push_back("source touched: " + diff);
    // A temporary of this run may stay only where removing it failed, and
    // said so (it is marked: the next run removes it); one a killed run
    // left, only when an error may have kept the run from its directory.
    for (const std::string& temp : find_temporaries(dst)) {
      const bool stale = std::find(planted.stale_temporaries.begin(), planted.stale_temporaries.end(), temp) !=
                         planted.stale_temporaries.end();
      if (stale ? report.errors == 0 : !said(result, temp)) v.push_back("temporary left behind: '" + temp + "'");
    }
    // --delete: an entry the source lacks stays only when an error was reported.
    uint64_t extras_left = 0;
    for (const std::string& extra : planted.extra_entries) {
      struct stat st {};
      if (lstat((dst + "/" + extra).c_str(), &st) == 0) ++extras_left;
    }
    if (extras_left > 0 && report.errors == 0)
      v.push_back(std::to_string(extras_left) + " entries the source lacks were not deleted, and no error was reported");
    if (report.entries_deleted + extras_left != planted.extra_entries.size() && report.errors == 0)
      v.push_back("entries_deleted=" + std::to_string(report.entries_deleted) + " but " +
                  std::to_string(planted.extra_entries.size() - extras_left) + " entries were deleted");

    const TreeSnapshot copy = snapshot_tree(dst);
    uint64_t written = 0, kept_old = 0, symlinks = 0, new_dirs = 0, missing = 0;
    for (const auto& [path, entry] : copy) {
      if (path.empty()) continue;
      auto it = source.find(path);
      if (it == source.end()) {
        const bool planted_here = std::find(planted.extra_entries.begin(), planted.extra_entries.end(), path) !=
                                  planted.extra_entries.end();
        if (!planted_here && path.find(".ringcp-") == std::string::npos)
          v.push_back("'" + path + "' in the copy has no source");
        continue;
      }
      const EntrySnapshot& original = it->second;
      if ((entry.mode & S_IFMT) != (original.mode & S_IFMT)) {
        v.push_back("'" + path + "' has another type than its source");
        continue;
      }
      if (S_ISREG(entry.mode)) {
        if (entry.content_hash == original.content_hash && entry.size == original.size) {
          ++written;
          if (entry.mode != original.mode) v.push_back("'" + path + "' published with the wrong mode");
          if (entry.mtime_ns != original.mtime_ns) v.push_back("'" + path + "' published with the wrong mtime");
        } else if (old.count(path) != 0 && old.at(path) == entry.content_hash) {
          ++kept_old;
        } else {
          v.push_back("'" + path + "' under its final name differs from its source (size " +
                      std::to_string(entry.size) + " of " + std::to_string(original.size) + ")");
        }
      } else if (S_ISLNK(entry.mode)) {
        ++symlinks;
        if (entry.link_target != original.link_target) v.push_back("symlink '" + path + "' points elsewhere");
      } else if (S_ISDIR(entry.mode)) {
        if (old_dirs.count(path) == 0) ++new_dirs;
      }
    }
    for (const auto& [path, entry] : source) {
      if (!path.empty() && copy.count(path) == 0) ++missing;
    }

    const bool incomplete = missing > 0 || kept_old > 0;
    if (report.errors != result.messages.size())
      v.push_back("report.errors=" + std::to_string(report.errors) + " but " +
                  std::to_string(result.messages.size()) + " messages");
    if (report.errors > 0 && result.counts.hard_hits == 0)
      v.push_back("errors reported although no ENOSPC/EIO was injected (only retryable faults)");
    if (result.counts.must_report_hits > 0 && report.errors == 0)
      v.push_back("an injected ENOSPC/EIO on an operation that loses an entry was not reported");
    if (report.errors == 0 && incomplete)
      v.push_back("no error reported but " + std::to_string(missing) + " entries missing and " +
                  std::to_string(kept_old) + " files not replaced");
    if (report.files_copied + report.hard_links_made != written) {
      v.push_back("files_copied=" + std::to_string(report.files_copied) + " + hard_links_made=" +
                  std::to_string(report.hard_links_made) + " but " + std::to_string(written) +
                  " regular files were written by this run");
      // Hard-link groups are where the counts went wrong so far: show the
      // fate of every name of a group that is not entirely copied.
      std::map<uint64_t, std::vector<std::string>> groups;
      for (const auto& [path, entry] : source)
        if (S_ISREG(entry.mode)) groups[entry.inode].push_back(path);
      for (const auto& [inode, names] : groups) {
        if (names.size() < 2) continue;
        std::string fates;
        bool all_copied = true;
        for (const std::string& name : names) {
          auto it = copy.find(name);
          const char* fate = it == copy.end() ? "missing"
                             : it->second.content_hash == source.at(name).content_hash ? "copied"
                                                                                        : "old version";
          all_copied &= std::string(fate) == "copied";
          fates += " '" + name + "' " + fate + (old.count(name) != 0 ? " (pre-existing)" : "") + ";";
        }
        if (!all_copied) v.push_back("  hard-link group:" + fates);
      }
    }
    if (report.symlinks_copied != symlinks)
      v.push_back("symlinks_copied=" + std::to_string(report.symlinks_copied) + " but " +
                  std::to_string(symlinks) + " symlinks in the copy");
    if (report.directories_created != new_dirs)
      v.push_back("directories_created=" + std::to_string(report.directories_created) + " but " +
                  std::to_string(new_dirs) + " new directories in the copy");
    if (report.interrupted) v.push_back("report says interrupted");
    if (s.schedule.registration == RegistrationFault::cap) {
      const bool can_register = s.schedule.registered_buffers_max >= 2;  // MIN buffers
      if (can_register != (report.pool.registration == Registration::registered))
        v.push_back("registration capped at " + std::to_string(s.schedule.registered_buffers_max) +
                    " buffers but the pool says " +
                    (report.pool.registration == Registration::registered ? "registered" : "unregistered") +
                    " (note '" + report.pool.registration_note + "')");
      if (can_register && report.pool.buffer_count > s.schedule.registered_buffers_max)
        v.push_back("registration capped at " + std::to_string(s.schedule.registered_buffers_max) +
                    " buffers but the pool has " + std::to_string(report.pool.buffer_count));
    }
    if (s.schedule.registration == RegistrationFault::refuse_all &&
        report.pool.registration != Registration::unregistered)
      v.push_back("registration was refused but the pool says registered");
    if (s.schedule.registration == RegistrationFault::refuse_all &&
        report.pool.registration_note.find("refused") == std::string::npos)
      v.push_back("refused registration not explained: note='" + report.pool.registration_note + "'");
  }

  static void print_failure(const Scenario& s, const RunResult& result) {
    std::string text = "FAILED " + s.describe() + "\n  replay: RINGIO_FAULT_SEED=" + std::to_string(s.seed) +
                       " " + ::testing::internal::GetArgvs()[0] +
                       " --gtest_filter=FaultProperty.replay_one_seed\n  faults " + result.counts.describe() +
                       " hard_hits=" + std::to_string(result.counts.hard_hits) +
                       " must_report_hits=" + std::to_string(result.counts.must_report_hits) +
                       "\n  injected by op: " + result.counts.describe_by_op() +
                       "\n  report: files_copied=" + std::to_string(result.report.files_copied) +
                       " hard_links=" + std::to_string(result.report.hard_links_made) +
                       " symlinks=" + std::to_string(result.report.symlinks_copied) +
                       " dirs=" + std::to_string(result.report.directories_created) +
                       " errors=" + std::to_string(result.report.errors) + "\n";
    size_t shown = 0;
    for (const std::string& violation : result.violations) {
      if (++shown > 20) break;
      text += "  violation: " + violation + "\n";
    }
    shown = 0;
    for (const std::string& message : result.messages) {
      if (++shown > 20) break;
      text += "  ringcp: " + message + "\n";
    }
    ADD_FAILURE() << text;
  }

  static std::unique_ptr<TempDir> disk_;
  static std::unique_ptr<TempDir> memory_;
  static std::map<std::pair<bool, uint64_t>, TreeSnapshot> snapshots_;
};

std::unique_ptr<TempDir> FaultProperty::disk_;
std::unique_ptr<TempDir> FaultProperty::memory_;
std::map<std::pair<bool, uint64_t>, TreeSnapshot> FaultProperty::snapshots_;

TEST_F(FaultProperty, seeded_schedules_keep_every_invariant) {
  if (replay_seed_from_env()) GTEST_SKIP() << "RINGIO_FAULT_SEED set: see replay_one_seed";
  const uint64_t count = schedule_count();
  // A different first seed per day would find more; a fixed one keeps CI
  // reproducible. RINGIO_FAULT_FIRST_SEED moves the window.
  const char* first_text = std::getenv("RINGIO_FAULT_FIRST_SEED");
  const uint64_t first = first_text != nullptr ? std::strtoull(first_text, nullptr, 0) : 1;
  FaultCounts total;
  std::array<bool, kFaultKindCount> drawn{};  // kinds some schedule could inject
  uint64_t failures = 0, runs_with_errors = 0, in_kernel_copies = 0, mapped_files = 0;
  std::map<std::string, uint64_t> failed_profiles;
  const auto started = std::chrono::steady_clock::now();
  for (uint64_t seed = first; seed < first + count; ++seed) {
    const Scenario s = scenario_for(seed);
    const RunResult result = run(s, false);
    total += result.counts;
    for (size_t i = 0; i < kFaultKindCount; ++i) drawn[i] = drawn[i] || s.schedule.draws(FaultKind(i));
    in_kernel_copies += result.report.ops.by_op[size_t(Op::copy_file_range)];
    mapped_files += result.report.files_from_mapping;
    if (result.report.errors > 0) ++runs_with_errors;
    if (!result.violations.empty()) {
      ++failed_profiles[s.profile];
      if (++failures <= 10) print_failure(s, result);
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf("fault schedules: %" PRIu64 " runs in %.1f s, %" PRIu64 " with reported errors, %" PRIu64
              " violating an invariant, %" PRIu64 " in-kernel copies, %" PRIu64 " files written from a mapping\n",
              count, seconds, runs_with_errors, failures, in_kernel_copies, mapped_files);
  for (size_t i = 0; i < kFaultKindCount; ++i)
    std::printf("  %-13s injected %8" PRIu64 "  hit %8" PRIu64 "\n", fault_kind_name(FaultKind(i)),
                total.injected[i], total.hit[i]);
  std::printf("  injected by op: %s\n", total.describe_by_op().c_str());
  for (const auto& [profile, n] : failed_profiles) std::printf("  failing profile %s: %" PRIu64 " seeds\n", profile.c_str(), n);
  EXPECT_EQ(failures, 0u);
  if (count >= 16) {
    // Every kind of fault a schedule draws happened and reached the engine.
    for (size_t i = 0; i < kFaultKindCount; ++i) {
      if (!drawn[i]) continue;
      EXPECT_GT(total.injected[i], 0u) << fault_kind_name(FaultKind(i)) << " never injected";
      EXPECT_GT(total.hit[i], 0u) << fault_kind_name(FaultKind(i)) << " never reached the engine";
    }
    EXPECT_GT(in_kernel_copies, 0u) << "no schedule copied a cached file with copy_file_range";
    EXPECT_GT(mapped_files, 0u) << "no schedule wrote a cached file from its mapping (O_DIRECT)";
  }
}

// Every operation a schedule can fail is failed, by a schedule that targets
// it, with options and a tree under which the engine issues it (--verify,
// --delete, a destination with stale temporaries, and on ext4 with O_DIRECT
// for the data paths of cached large files); the invariants hold.
TEST_F(FaultProperty, every_operation_in_the_fault_masks_is_injected_and_keeps_the_invariants) {
  if (replay_seed_from_env()) GTEST_SKIP() << "RINGIO_FAULT_SEED set: see replay_one_seed";
  struct Target {
    Op op;
    FaultKind kind;
  };
  std::vector<Target> targets;
  auto add = [&](OpMask mask, FaultKind kind) {
    for (size_t i = 0; i < kOpCount; ++i)
      if ((mask & op_bit(Op(i))) != 0) targets.push_back({Op(i), kind});
  };
  add(default_eio_ops(), FaultKind::eio);
  add(default_enospc_ops() & ~op_bit(Op::fallocate), FaultKind::enospc);  // the copier does not preallocate
  add(default_enomem_ops(), FaultKind::enomem);
  add(default_refusal_ops(), FaultKind::einval);
  const OpMask data_path_ops = op_bit(Op::cachestat) | op_bit(Op::map_file) | op_bit(Op::madvise) |
                               op_bit(Op::set_direct_io) | op_bit(Op::copy_file_range);
  uint64_t seed = 1000000;
  for (const Target& target : targets) {
    Scenario s = scenario_for(seed++);
    FaultSchedule& f = s.schedule;
    f = FaultSchedule{};
    f.eio_ops = f.enospc_ops = f.enomem_ops = f.einval_ops = op_bit(target.op);
    (target.kind == FaultKind::eio      ? f.eio
     : target.kind == FaultKind::enospc ? f.enospc
     : target.kind == FaultKind::enomem ? f.enomem
                                        : f.einval) = 1.0;
    s.profile = std::string(fault_kind_name(target.kind)) + "-on-" + op_name(target.op);
    s.prepopulate = s.verify = s.delete_extraneous = true;
    s.directories_open_max = 2;  // directories are opened again by name too
    s.on_disk = (data_path_ops & op_bit(target.op)) != 0;
    // Cached large files: written from their mapping with O_DIRECT, or by
    // copy_file_range where O_DIRECT is off.
    s.direct_io = target.op != Op::copy_file_range;
    s.engine = EngineChoice::automatic;
    const RunResult result = run(s, false);
    EXPECT_GT(result.counts.injected_by_op[size_t(target.op)], 0u) << s.profile << " never injected: " << s.describe();
    if (!result.violations.empty()) print_failure(s, result);
  }
}

// Seeds that once broke an invariant (found by longer runs with
// RINGIO_FAULT_FIRST_SEED / RINGIO_FAULT_SCHEDULES), kept so that CI keeps
// checking them whatever window it runs.
TEST_F(FaultProperty, regression_seeds) {
  // 1169, 1888, 2338: a hard link replacing an existing name is counted in
  // hard_links_made when it is linked to a temporary name, and stays
  // counted when the rename over the old name then fails (ENOSPC / EIO).
  // Each targeted renameat when it was found; the op a seed targets moves
  // when an op joins the fault masks, so it is pinned here.
  for (uint64_t seed : {1169, 1888, 2338}) {
    Scenario s = scenario_for(seed);
    FaultSchedule& f = s.schedule;
    if (f.eio_ops != default_eio_ops()) f.eio_ops = op_bit(Op::renameat);
    if (f.enospc_ops != default_enospc_ops()) f.enospc_ops = op_bit(Op::renameat);
    s.profile = std::string(seed % 10 == 9 ? "enospc" : "eio") + "-on-renameat";
    const RunResult result = run(s, false);
    if (!result.violations.empty()) print_failure(s, result);
  }
}

// RINGIO_FAULT_SEED=N: one run, every injected fault printed.
TEST_F(FaultProperty, replay_one_seed) {
  const auto seed = replay_seed_from_env();
  if (!seed) GTEST_SKIP() << "set RINGIO_FAULT_SEED to replay a seed";
  const Scenario s = scenario_for(*seed);
  const RunResult result = run(s, true);
  std::printf("%s\nfaults %s\ninjected by op: %s\n", s.describe().c_str(), result.counts.describe().c_str(),
              result.counts.describe_by_op().c_str());
  for (const std::string& line : result.fault_log) std::printf("  injected: %s\n", line.c_str());
  for (const std::string& line : result.messages) std::printf("  ringcp: %s\n", line.c_str());
  if (!result.violations.empty()) print_failure(s, result);
}

// The same seed twice, on io_uring (completion order varies between runs):
// every operation both runs issue gets the same decision. Which operations
// run at all can differ after a failure: the other pieces of a failed file
// are abandoned or not depending on what was already in flight.
TEST_F(FaultProperty, a_seed_injects_the_same_faults_whatever_the_completion_order) {
  for (uint64_t seed : {3, 6, 11, 14, 20}) {
    Scenario s = scenario_for(seed);
    s.engine = EngineChoice::automatic;
    s.files_in_flight = 64;
    const RunResult first = run(s, true, true);
    const RunResult second = run(s, true, true);
    uint64_t common = 0, common_faults = 0;
    std::string disagreements;
    size_t shown = 0;
    for (const auto& [key, outcome] : first.decisions) {
      auto it = second.decisions.find(key);
      if (it == second.decisions.end()) continue;
      ++common;
      if (outcome != "-") ++common_faults;
      if (it->second != outcome && ++shown <= 10)
        disagreements += "\n  " + key + ": " + outcome + " then " + it->second;
    }
    EXPECT_TRUE(disagreements.empty()) << "seed " << seed << ": decisions differ" << disagreements;
    EXPECT_GT(common_faults, 0u) << "seed " << seed << " injected nothing both runs saw";
    // Most operations run in both (only work after a failure may differ).
    EXPECT_GT(common * 10, std::max(first.decisions.size(), second.decisions.size()) * 9)
        << "seed " << seed << ": " << common << " operations in common of " << first.decisions.size() << " and "
        << second.decisions.size();
    // Without hard faults nothing is abandoned: the same faults, exactly.
    if (!s.schedule.any_hard() && s.schedule.registration == RegistrationFault::none) {
      std::multiset<std::string> a(first.fault_log.begin(), first.fault_log.end());
      std::multiset<std::string> b(second.fault_log.begin(), second.fault_log.end());
      EXPECT_TRUE(a == b) << "seed " << seed << ": " << a.size() << " vs " << b.size() << " faults";
    }
  }
}

}  // namespace
}  // namespace ringio::test
