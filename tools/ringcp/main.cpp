// ringcp: copy files and directory trees with ringio.
//
// Option letters mean what they mean in GNU cp; what cp lacks takes rsync's
// long names. Exit status: 0 everything copied, 1 usage error, 2 some entries
// not copied, 3 interrupted or fatal.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <sstream>
#include <thread>

#include "ringio/copy.hpp"
#include "copy/options_parse.hpp"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitUsage = 1;
constexpr int kExitPartial = 2;
constexpr int kExitFatal = 3;

std::atomic<bool> g_stop{false};

void on_signal(int) { g_stop.store(true, std::memory_order_relaxed); }

void install_signal_handlers() {
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGHUP, &action, nullptr);
  // Past RLIMIT_FSIZE a write fails with EFBIG instead of killing the
  // process: that file is reported and its temporary removed, the rest of
  // the tree is copied and finished (cp is killed there, mid-tree).
  signal(SIGXFSZ, SIG_IGN);
}

std::string human_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  while (bytes >= 1024 && unit < 4) {
    bytes /= 1024;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof text, unit == 0 ? "%.0f %s" : "%.1f %s", bytes, units[unit]);
  return text;
}

nlohmann::json stats_json(const ringio::CopyReport& report) {
  using nlohmann::json;
  json ops = json::object();
  for (size_t i = 0; i < ringio::kOpCount; ++i) {
    if (report.ops.by_op[i] != 0) ops[ringio::op_name(static_cast<ringio::Op>(i))] = report.ops.by_op[i];
  }
  const double seconds = report.seconds > 0 ? report.seconds : 1e-9;
  return json{
      {"files", report.files_copied},
      {"directories", report.directories_created},
      {"symlinks", report.symlinks_copied},
      {"hard_links", report.hard_links_made},
      {"specials", report.specials_copied},
      {"skipped", report.files_skipped},
      {"deleted", report.entries_deleted},
      {"reflinked", report.files_reflinked},
      {"from_mapping", report.files_from_mapping},
      {"in_kernel", report.files_in_kernel},
      {"bytes", report.bytes_copied},
      {"errors", report.errors},
      {"interrupted", report.interrupted},
      {"seconds", report.seconds},
      {"throughput_bytes_per_second", double(report.bytes_copied) / seconds},
      {"backend", ringio::backend_name(report.backend)},
      {"backend_reason", ringio::escape_invalid_utf8(report.backend_reason)},
      {"backend_description", report.backend_description},
      {"buffer_pool",
       {{"acquires", report.pool.total_acquires},
        {"misses", report.pool.total_misses},
        {"miss_rate", report.pool.miss_rate()},
        {"growths", report.pool.growths},
        {"shrinks", report.pool.shrinks},
        {"failed_resizes", report.pool.failed_resizes},
        {"buffers", report.pool.buffer_count},
        {"buffer_size", report.pool.buffer_size},
        {"peak_in_use", report.pool.peak_in_use},
        {"max_buffers", report.pool.max_buffers},
        {"resize_us", report.pool.resize_ns / 1000},
        {"quiesces", report.pool.quiesces},
        {"registered", report.pool.registration == ringio::Registration::registered},
        {"note", ringio::escape_invalid_utf8(report.pool.registration_note)}}},
      {"ops",
       {{"fixed_reads", report.ops.fixed_reads},
        {"fixed_writes", report.ops.fixed_writes},
        {"plain_reads", report.ops.plain_reads},
        {"plain_writes", report.ops.plain_writes},
        {"ring_metadata_ops", report.ops.ring_metadata_ops},
        {"inline_metadata_ops", report.ops.inline_metadata_ops},
        {"submit_calls", report.ops.submit_calls},
        {"by_op", ops}}},
  };
}

void print_human_stats(const ringio::CopyReport& report) {
  const double seconds = report.seconds > 0 ? report.seconds : 1e-9;
  std::fprintf(stderr,
               "files: %llu copied, %llu skipped, %llu hard links; directories: %llu; symlinks: %llu\n"
               "bytes: %s in %.3f s (%s/s)\n"
               "backend: %s (%s)\n"
               "buffer pool: %s\n",
               (unsigned long long)report.files_copied, (unsigned long long)report.files_skipped,
               (unsigned long long)report.hard_links_made, (unsigned long long)report.directories_created,
               (unsigned long long)report.symlinks_copied, human_bytes(double(report.bytes_copied)).c_str(),
               report.seconds, human_bytes(double(report.bytes_copied) / seconds).c_str(),
               ringio::backend_name(report.backend), report.backend_reason.c_str(),
               ringio::format_stats_line(report.pool).c_str());
}

// Progress on stderr, for copies that last more than a second, only on a
// terminal; counted from bytes that reached the destination.
class ProgressLine {
 public:
  // total_bytes: known when every source is a regular file (0: unknown; a
  // tree is not walked twice just to size it, so its ETA is not shown).
  ProgressLine(ringio::CopyProgress& progress, bool enabled, uint64_t total_bytes)
      : progress_(progress), enabled_(enabled), total_bytes_(total_bytes) {
    if (enabled_) thread_ = std::thread([this] { loop(); });
  }
  ~ProgressLine() {
    done_.store(true);
    if (thread_.joinable()) thread_.join();
    if (shown_) std::fprintf(stderr, "\r\033[K");
  }

 private:
  void loop() {
    const auto started = std::chrono::steady_clock::now();
    while (!done_.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      if (elapsed < 1.0 || done_.load()) continue;
      const double bytes = double(progress_.bytes_done.load());
      const double rate = bytes / elapsed;
      std::string eta = "ETA --";
      if (total_bytes_ != 0 && rate > 0) {
        char text[32];
        std::snprintf(text, sizeof text, "ETA %.0f s", std::max(0.0, (double(total_bytes_) - bytes) / rate));
        eta = text;
      }
      std::fprintf(stderr, "\r\033[K%llu files, %s, %s/s, %.0f s, %s",
                   (unsigned long long)progress_.files_done.load(), human_bytes(bytes).c_str(),
                   human_bytes(rate).c_str(), elapsed, eta.c_str());
      std::fflush(stderr);
      shown_ = true;
    }
  }
  ringio::CopyProgress& progress_;
  bool enabled_;
  uint64_t total_bytes_;
  std::atomic<bool> done_{false};
  bool shown_ = false;
  std::thread thread_;
};

// io-wq runs what cannot complete inline: file creation, links, statx,
// buffered writes on ext4. Measured on 2 CPUs (docs/BENCHMARKS.md), one worker
// beat two and four on every workload (100,000 small files hot: 3.6 s with
// one, 4.6 s with two, 6.5 s with four): extra workers contend for the same
// directory and inode locks and take CPU from the submitting thread. Half the
// CPUs we may run on, at least one; larger machines are not measured.
uint32_t default_iowq_workers() {
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  const int count = sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? CPU_COUNT(&cpus) : 2;
  return uint32_t(std::max(1, count / 2));
}

}  // namespace

// Many files and deep trees are copied with many descriptors open at once:
// the soft limit goes up to the hard one, as far as this user may.
static void raise_descriptor_limit() {
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }
}

int main(int argc, char** argv) {
  // First: a SIGINT or SIGTERM at any moment from here on stops the run
  // through the engine (exit 3, temporaries removed), never by the default
  // action.
  install_signal_handlers();
  // --stats takes its value only with "=" so that "--stats SRC DST" never
  // swallows SRC: rewrite "--stats=FORMAT" before the parser sees it.
  // --preserve likewise (as in cp, its list needs "=").
  std::vector<std::string> args(argv + 1, argv + argc);
  std::string stats_format;
  std::vector<std::string> preserve_lists;
  for (std::string& arg : args) {
    if (arg == "--") break;
    if (arg.rfind("--stats=", 0) == 0) {
      stats_format = arg.substr(8);
      arg = "--stats";
    } else if (arg.rfind("--preserve=", 0) == 0) {
      preserve_lists.push_back(arg.substr(11));
      arg = "--preserve";
    } else if (arg == "--preserve") {
      preserve_lists.push_back("mode,ownership,timestamps");
    }
  }

  CLI::App app{"ringcp: copy files and directory trees fast and safely (io_uring)", "ringcp"};
  app.set_version_flag("--version", std::string("ringcp ") + "0.1.0");
  app.footer(
      "Exit status: 0 all copied, 1 usage error, 2 some entries not copied, 3 interrupted or fatal.\n"
      "Environment: RINGIO_DISABLE_IOURING=1 selects the posix backend; RINGIO_STATS=1 prints the "
      "pool statistics on exit.");
  std::vector<std::string> operands;
  bool archive = false, recursive = false, no_deref = false, dereference = false, deref_cli = false;
  bool preserve_basic = false, no_dereference_preserve_links = false, one_fs = false;
  bool no_clobber = false, update = false, skip_unchanged = false, delete_extraneous = false;
  bool dry_run = false, verify = false, fsync_files = false, sqpoll = false, stats = false;
  bool progress = false, no_progress = false, quiet = false, no_direct = false;
  bool no_copy_range = false;
  int verbose = 0;
  bool preserve_flag = false;
  std::vector<std::string> no_preserve_lists, excludes;
  std::string sparse = "auto", reflink = "auto", engine = "auto", buffers = "auto", buffer_size, queue_depth;

  app.add_option("operands", operands, "SRC... DST")->required()->expected(2, -1);
  app.add_flag("-a,--archive", archive, "same as -dR --preserve=all");
  app.add_flag("-r,-R,--recursive", recursive, "copy directories recursively");
  app.add_flag("-P,--no-dereference", no_deref, "never follow symbolic links in SRC");
  app.add_flag("-d", no_dereference_preserve_links, "same as --no-dereference --preserve=links");
  app.add_flag("-L,--dereference", dereference, "always follow symbolic links in SRC");
  app.add_flag("-H", deref_cli, "follow command-line symbolic links in SRC");
  app.add_flag("-p", preserve_basic, "same as --preserve=mode,ownership,timestamps");
  app.add_flag("--preserve", preserve_flag,
               "--preserve[=LIST]: preserve the attributes (mode,ownership,timestamps,links,xattr,all)");
  app.add_option("--no-preserve", no_preserve_lists, "don't preserve the attributes");
  app.add_flag("-x,--one-file-system", one_fs, "stay on this file system");
  app.add_flag("-n,--no-clobber", no_clobber, "do not overwrite an existing file");
  app.add_flag("-u,--update", update, "copy only when the SRC file is newer than the destination or it is missing");
  app.add_option("--sparse", sparse, "auto|always|never")->check(CLI::IsMember({"auto", "always", "never"}));
  app.add_option("--reflink", reflink, "auto|always|never")->check(CLI::IsMember({"auto", "always", "never"}));
  app.add_flag("--skip-unchanged", skip_unchanged, "skip files whose size and modification time match (rsync's quick check)");
  app.add_flag("--delete", delete_extraneous, "delete destination entries the copied source directories do not have");
  app.add_flag("--dry-run", dry_run, "show what would be done, change nothing");
  app.add_option("--exclude", excludes, "exclude files matching PATTERN")->take_all();
  app.add_flag("--stats", stats, "print statistics at the end (--stats=json for JSON on stdout)");
  app.add_flag("--progress", progress, "show progress (default on a terminal)");
  app.add_flag("--no-progress", no_progress, "never show progress");
  app.add_flag("--verify", verify, "re-read each copy from the device and compare its xxh3 with the source's");
  app.add_flag("--fsync", fsync_files, "fsync files and directories before they are published");
  app.add_option("--engine", engine, "auto|uring|posix")->check(CLI::IsMember({"auto", "uring", "posix"}));
  app.add_option("--buffers", buffers, "auto or a fixed buffer count");
  app.add_option("--buffer-size", buffer_size, "bytes per buffer (e.g. 64K, 1M)");
  app.add_option("--queue-depth", queue_depth, "submission queue entries");
  app.add_flag("--sqpoll", sqpoll, "use a kernel submission thread (SQPOLL)");
  app.add_flag("--no-direct", no_direct,
               "never use O_DIRECT (large files: read with it when uncached, written with it from a mapping when "
               "cached)");
  app.add_flag("--no-copy-range", no_copy_range,
               "never use copy_file_range (large cached files that cannot be written with O_DIRECT use it)");
  app.add_flag("-v,--verbose", verbose, "explain what is being done");
  app.add_flag("-q,--quiet", quiet, "print errors only");

  try {
    std::reverse(args.begin(), args.end());
    app.parse(args);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // The parser's own exit codes are not ours: any usage error is 1.
    std::fprintf(stderr, "ringcp: %s\nTry 'ringcp --help' for more information.\n", e.what());
    return kExitUsage;
  }
  auto usage = [](const std::string& message) {
    std::fprintf(stderr, "ringcp: %s\nTry 'ringcp --help' for more information.\n", message.c_str());
    return kExitUsage;
  };

  ringio::CopyOptions options;
  if (archive) {
    options.recursive = true;
    options.symlinks = ringio::SymlinkMode::no_dereference;
    options.preserve = ringio::PreserveSet::all();
  }
  if (recursive) {
    options.recursive = true;
    if (!dereference && !deref_cli) options.symlinks = ringio::SymlinkMode::no_dereference;
  }
  if (no_deref || no_dereference_preserve_links) options.symlinks = ringio::SymlinkMode::no_dereference;
  if (no_dereference_preserve_links) options.preserve.links = true;
  if (deref_cli) options.symlinks = ringio::SymlinkMode::command_line;
  if (dereference) options.symlinks = ringio::SymlinkMode::dereference;
  if (preserve_basic) {
    options.preserve.mode = options.preserve.ownership = options.preserve.timestamps = true;
  }
  std::string bad;
  for (const std::string& list : preserve_lists) {
    if (!ringio::apply_preserve_list(list, true, options.preserve, &bad))
      return usage("invalid argument '" + bad + "' for '--preserve'");
  }
  for (const std::string& list : no_preserve_lists) {
    if (!ringio::apply_preserve_list(list, false, options.preserve, &bad))
      return usage("invalid argument '" + bad + "' for '--no-preserve'");
  }
  options.one_file_system = one_fs;
  if (no_clobber + update + skip_unchanged > 1)
    return usage("options -n, -u and --skip-unchanged are mutually exclusive");
  if (no_clobber) options.clobber = ringio::ClobberMode::no_clobber;
  if (update) options.clobber = ringio::ClobberMode::update_older;
  if (skip_unchanged) options.clobber = ringio::ClobberMode::skip_unchanged;
  options.sparse = sparse == "always" ? ringio::SparseMode::always
                   : sparse == "never" ? ringio::SparseMode::never
                                       : ringio::SparseMode::automatic;
  options.reflink = reflink == "always" ? ringio::ReflinkMode::always
                    : reflink == "never" ? ringio::ReflinkMode::never
                                         : ringio::ReflinkMode::automatic;
  options.delete_extraneous = delete_extraneous;
  if (delete_extraneous && !options.recursive) return usage("--delete needs -r or -a");
  options.dry_run = dry_run;
  options.excludes = excludes;
  options.verify = verify;
  options.fsync = fsync_files;
  options.verbosity = quiet ? -1 : verbose;
  options.engine = engine == "uring" ? ringio::EngineChoice::uring
                   : engine == "posix" ? ringio::EngineChoice::posix
                                       : ringio::EngineChoice::automatic;
  if (!stats_format.empty() && stats_format != "json" && stats_format != "text")
    return usage("invalid argument '" + stats_format + "' for '--stats' (valid: text, json)");

  // The I/O configuration: the preset, then explicit values, then checked.
  // ringcp starts from the large-file preset (256 entries, 256 KiB x 16):
  // on this machine it copied small trees no slower than defaults() and large
  // files faster (docs/BENCHMARKS.md); the pool still adapts from there.
  options.io = ringio::IoConfig::for_large_files();
  if (!buffer_size.empty()) {
    auto bytes = ringio::parse_size(buffer_size);
    if (!bytes || *bytes > UINT32_MAX) return usage("invalid buffer size '" + buffer_size + "'");
    options.io.buffer_size_bytes = static_cast<uint32_t>(*bytes);
  }
  if (!queue_depth.empty()) {
    auto depth = ringio::parse_count(queue_depth, 1, 32768);
    if (!depth) return usage("invalid queue depth '" + queue_depth + "' (1..32768)");
    options.io.sq_entries = static_cast<uint32_t>(*depth);
  }
  if (buffers != "auto") {
    auto parsed = ringio::parse_count(buffers, 1, 16384);
    if (!parsed) return usage("invalid buffer count '" + buffers + "' (auto or 1..16384)");
    const uint32_t count = *parsed;
    options.io.adaptive_buffers = ringio::AdaptiveBuffers::off;
    options.io.initial_buffers = count;
    options.io.min_buffers = std::min(options.io.min_buffers, count);
    options.io.max_buffers = count;
  }
  options.io.sqpoll = sqpoll;
  options.io.direct_io = !no_direct;
  options.copy_in_kernel = !no_copy_range;
  options.io.iowq_max_workers = default_iowq_workers();
  if (const char* workers = std::getenv("RINGCP_IOWQ_WORKERS")) options.io.iowq_max_workers = uint32_t(std::atoi(workers));
  if (const char* files = std::getenv("RINGCP_FILES_IN_FLIGHT")) options.files_in_flight_max = uint32_t(std::max(1, std::atoi(files)));
  if (ringio::Status valid = options.io.validate(); !valid) {
    // Name the value the user gave, not only the field.
    std::string given;
    if (!buffer_size.empty()) given += " (--buffer-size=" + buffer_size + ")";
    if (!queue_depth.empty()) given += " (--queue-depth=" + queue_depth + ")";
    if (buffers != "auto") given += " (--buffers=" + buffers + ")";
    return usage(valid.error().message() + given);
  }

  // The process's own state is the CLI's to read and change, not the library's.
  const mode_t mask = umask(0);
  umask(mask);
  options.umask = mask;
  raise_descriptor_limit();

  const std::string destination = operands.back();
  operands.pop_back();
  auto roots = ringio::plan_copy(operands, destination, options);
  if (!roots) return usage(roots.error().detail);

  ringio::CopyProgress progress_counters;
  ringio::CopyCallbacks callbacks;
  callbacks.report_error = [](const std::string& message) {
    std::fprintf(stderr, "\r\033[Kringcp: %s\n", message.c_str());
  };
  if (!isatty(2)) {
    callbacks.report_error = [](const std::string& message) { std::fprintf(stderr, "ringcp: %s\n", message.c_str()); };
  }
  callbacks.report_verbose = [](const std::string& message) { std::fprintf(stdout, "%s\n", message.c_str()); };
  callbacks.stop = &g_stop;
  callbacks.progress = &progress_counters;
  const bool show_progress = !no_progress && !quiet && (progress || isatty(2));

  ringio::Result<ringio::CopyReport> report = [&] {
    uint64_t total_bytes = 0;
    for (const ringio::CopyRoot& root : roots.value()) {
      struct stat st {};
      if (stat(root.source.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
        total_bytes = 0;
        break;
      }
      total_bytes += uint64_t(st.st_size);
    }
    ProgressLine line(progress_counters, show_progress, total_bytes);
    return ringio::run_copy(roots.value(), options, callbacks);
  }();
  if (!report) {
    std::fprintf(stderr, "ringcp: %s\n", report.error().message().c_str());
    return kExitFatal;
  }
  if (stats) {
    if (stats_format == "json") std::cout << stats_json(*report).dump(2) << std::endl;
    else print_human_stats(*report);
  }
  if (report->interrupted) return kExitFatal;
  return report->errors != 0 ? kExitPartial : kExitOk;
}
