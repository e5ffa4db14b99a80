#!/usr/bin/env python3
"""copybench: one command that measures ``ringcp -a`` against the usual copy tools.

What it does
============

It copies the same source trees with

=============  =========================================================
``ringcp``     ``ringcp -a SRC/. DST``            (``--ringcp PATH``)
``cp``         ``cp -a SRC/. DST``
``rsync``      ``rsync -a SRC/ DST/``
``rclone``     ``rclone copy --transfers 8 --links SRC DST``
``tar``        ``tar -C SRC -cf - . | tar -C DST -xf -``  (bash, pipefail)
=============  =========================================================

on the same workloads, interleaved (run *i* of every tool before run *i+1* of
any, with the tool order rotated from run to run), cold and hot, and reports
medians and ratios against ringcp and against a measured limit of the machine.

Workloads are created once under the work directory (``--workdir``, default
``/var/tmp/ringio-bench``) and reused; each has a marker file with its spec
(``src/<id>.spec.json``) and a cached manifest with content hashes
(``src/<id>.manifest.json``).  Source and destination are on the same
filesystem (``<workdir>/src/<id>`` -> ``<workdir>/dst``).

===========  ===============================================  =================
workload     full                                             ``--quick``
===========  ===============================================  =================
small        100,000 files of 4 KiB in 100 directories        20,000 files
large        one 2 GiB file of random data                    512 MiB
medium       10 files of 100 MiB of random data               (same)
mixed        copy of /usr/include + /usr/share/doc (symlinks  (same)
             included) + random files of 8..64 MiB
===========  ===============================================  =================

One measurement
---------------

1. ``rm -rf`` the previous destination, ``sync``, drop the page cache, dentries
   and inodes (``echo 3 > /proc/sys/vm/drop_caches``) -- for hot runs too, see
   ``prepare()`` for why;
2. hot runs only: read the whole source once (``tar -cf - . | cat``) to warm it;
3. ``mkdir DST``; run the tool under ``/usr/bin/time`` and ``os.wait4`` (so its
   CPU time and peak RSS are its own); read ``Cached``/``Dirty`` from
   ``/proc/meminfo`` right after it exits; then ``sync``.

Reported per tool, workload and mode (medians over the runs):

* **time** -- from start to the end of the final ``sync`` (data on disk): the
  primary number. **no sync** -- until the tool exited.
* **tool/ringcp** -- the tool's time divided by ringcp's (> 1: ringcp faster).
* **tool/limit** -- the tool's time divided by the limit of the workload:

  - *large, medium*: ``fio`` (io_uring, O_DIRECT, bs=1M, iodepth=32) reads the
    source file(s) sequentially and writes as many bytes to a new file; limit =
    bytes / min(read bw, write bw) cold, bytes / write bw hot. The disk here is
    host-cached: buffered tools can beat it.
  - *small, mixed*: the small-file bound. read = the tree read cold by 4
    parallel ``tar -cf - <quarter> | cat > /dev/null``; create = ``tar -xf`` of
    an archive of the tree held in /dev/shm, then ``sync``; limit =
    max(read, create) cold, create hot.

  The limits are measured once per round, interleaved with the copies.
* **busy CPU** -- whole machine, /proc/stat delta (user+nice+system+irq+softirq)
  over copy + sync, in CPU seconds; **tool CPU** -- the tool's process tree's
  own user+sys (``wait4``); **peak RSS** -- max RSS of the copying process(es)
  (GNU ``time`` ``%M``; see ``run_tool()`` for why not plain ``ru_maxrss``);
  **Cached/Dirty** -- /proc/meminfo right after the copy, before the sync.
* **verify** -- the first successful copy of each tool and workload is checked
  against the source manifest: file list, types, sizes, symlink targets and a
  SHA-256 of every file's content (``--verify sample``: files >= 1 MiB and
  every 50th small file; ``none``). Modes, owners and mtimes that were not
  preserved are listed as notes (rclone does not keep modes, tar keeps whole
  seconds), not as failures.

A tool that is not installed is skipped with an install hint. A tool that fails
(exits non-zero: e.g. a ringcp built before its copy engine, exit status 3, or
one killed after ``--timeout``) is recorded as FAILED in the table with its
first error line, and its further runs on that workload and mode are skipped;
everything else goes on.  ringcp runs with ``RINGIO_STATS=1``; its pool
statistics lines are kept in the JSON.  The JSON also holds every single run
(with the time spent removing, syncing, dropping and warming before it), the
load average before each run, and the ringcp binary's hash at start and end (a
rebuild in the middle of a run is reported).

Adaptive vs fixed (``--adaptive``)
----------------------------------

Instead of the tool comparison, runs ringcp with ``--buffers=N`` for N in
``--buffer-counts`` (2,4,8,16,32,64), ``--buffers=auto`` and without the option
(the default) on small, large and mixed, prints auto vs best fixed vs default,
then re-measures auto against the winning fixed count head to head,
interleaved, for ``--h2h-runs`` (>= 5) rounds.

Two builds side by side (``--paired``)
--------------------------------------

``--ringcp LABEL=PATH`` (repeatable) makes every given ringcp binary a tool
of its own (key ``ringcp:LABEL``, shown as ``ringcp -a (LABEL)``); the first
is the baseline of every ratio.  ``--paired --rounds N`` (default 10) compares
them for "nothing gets slower": for each workload (default small, large,
mixed) in turn, one unmeasured settling copy (the first run after a switch
of workload is slower), then N rounds; a round runs every mode (default
cold, hot) and, within each mode, every binary once, back to back, the order
alternating from mode to mode and round to round (AB BA, BA AB, ...;
``paired_order()``), so that load on the machine hits both alike.  Each run is measured as above (time to data on
disk, user+sys of the process tree from ``wait4``); each binary's first copy
per workload *and mode* is verified.  Reported per workload and mode: the
median wall time of each, the ratio of the medians (the criterion: PASS when
<= 1 + ``--wall-tolerance``, 0.05), the median (and range) of the per-round
ratios, how many rounds the new one was faster in, the CPU medians and their
ratio (PASS when <= 1 + ``--cpu-tolerance``, 0.03, allowed for noise; with
``--cpu-floor S`` also when the new median is at most S seconds above the
old one, for copies that use ~0.1 s of CPU; default 0: off), the median of
the per-round CPU ratios, a verdict, and the seconds one round takes per
workload.  Limits are not measured.  The
same binary under two labels (an A/A run) shows the noise.

Usage
=====

Run as root (drop_caches), from anywhere::

    python3 bench/harness/copybench.py --quick --png docs/bench-quick.png \\
        --markdown /tmp/quick.md --json /tmp/quick.json
    python3 bench/harness/copybench.py                     # everything
    python3 bench/harness/copybench.py --tools cp,tar,rsync --workloads small \\
        --modes cold --runs 3
    python3 bench/harness/copybench.py --adaptive --runs 3
    python3 bench/harness/copybench.py --paired --rounds 10 \
        --ringcp before=/work/ringcp-before --ringcp after=build/release/tools/ringcp \
        --markdown /tmp/paired.md --json /tmp/paired.json
    python3 bench/harness/copybench.py --clean             # remove the workdir

``--quick``: small (20,000 files) and large (512 MiB), cold, ringcp vs ``cp -a``
and ``tar|tar``, 3 runs; a few minutes. Explicit ``--tools``, ``--workloads``,
``--modes``, ``--runs`` override those defaults.

Needs: Python 3.9+ (stdlib only), coreutils, tar, bash, ``time`` (GNU time,
for the peak RSS), ``fio`` (limits), ``gnuplot-nox`` (``--png``); ``rsync``,
``rclone`` for those tools. On Debian::

    apt-get install -y time fio gnuplot-nox rsync rclone

Disk: the sources (about 4 GiB for all full workloads) plus one copy.
``--small-files N`` and ``--large-mib N`` shrink the workloads (for trying the
harness out); ``--note TEXT`` adds a line to the report and the chart.

Pitfalls this harness works around (found on the development machine)
---------------------------------------------------------------------

* ``ru_maxrss`` of a child includes the parent's peak RSS (exec() folds the
  old mm's high-water mark in; with vfork that is the harness's mm): hence GNU
  time, see ``Bench.run_tool()``.
* ext4 without a journal, mounted with ``discard``: every unlink discards
  synchronously, ~1.5-3 ms per file here; destinations are removed by 12
  parallel rm processes (``rm_rf_parallel()``), outside the timed part.
* ext4 without a journal skips recently freed inodes whose inode-table block
  is cached: caches are dropped before every run (``Bench.prepare()``).
* relatime: the first read of a fresh (or a day-old) tree updates atimes, so a
  timed copy would also write back one inode per source file; the manifest
  scan reads the tree once and syncs, and a stale tree is re-read
  (``Workload.refresh_atime_if_stale()``).
* ``tar -cf /dev/null`` reads no file data (GNU tar special-cases it): the
  warm-up and the read bound pipe through ``cat``.
* the machine may be shared: the 1-min load average before each run is
  recorded and a busy machine is called out in the report.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
DEFAULT_RINGCP = os.path.join(REPO, "build", "release", "tools", "ringcp")
PLOT_SCRIPT = os.path.join(HERE, "plot.gnuplot")
GNU_TIME = "/usr/bin/time"
SPEC_VERSION = 1
WORKDIR_MARK = ".copybench-workdir"

ALL_TOOLS = ["ringcp", "cp", "rsync", "rclone", "tar"]
ALL_WORKLOADS = ["small", "large", "medium", "mixed"]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------

def workload_spec(name: str, quick: bool, small_files: int | None = None,
                  large_mib: int | None = None) -> dict:
    """The recipe of a workload; its JSON is the marker that allows reuse."""
    if name == "small":
        n = small_files or (20_000 if quick else 100_000)
        return {"version": SPEC_VERSION, "name": name, "kind": "tree",
                "id": f"small-{n}x4K", "files": n, "dirs": 100,
                "file_size": 4 * KiB, "what": f"{n:,} files x 4 KiB in 100 dirs"}
    if name == "large":
        size = large_mib * MiB if large_mib else (512 * MiB if quick else 2 * GiB)
        return {"version": SPEC_VERSION, "name": name, "kind": "bytes",
                "id": f"large-{size // MiB}M", "files": 1, "file_size": size,
                "what": f"1 file x {human_bytes(size)} random"}
    if name == "medium":
        return {"version": SPEC_VERSION, "name": name, "kind": "bytes",
                "id": "medium-10x100M", "files": 10, "file_size": 100 * MiB,
                "what": "10 files x 100 MiB random"}
    if name == "mixed":
        sizes = [8, 16, 24, 32, 48, 64]
        return {"version": SPEC_VERSION, "name": name, "kind": "tree",
                "id": "mixed-v1", "trees": ["/usr/include", "/usr/share/doc"],
                "random_mib": sizes,
                "what": "/usr/include + /usr/share/doc + 6 random files of 8-64 MiB"}
    raise SystemExit(f"copybench: unknown workload {name!r} (known: {', '.join(ALL_WORKLOADS)})")


def expected_bytes(spec: dict) -> int:
    if spec["name"] == "mixed":
        return sum(spec["random_mib"]) * MiB + 400 * MiB  # the trees: ~300 MB here
    return spec["files"] * spec["file_size"] + spec["files"] * 4 * KiB


def human_bytes(n: float) -> str:
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size:
            v = n / size
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.1f} {unit}"
    return f"{int(n)} B"


def write_random_file(path: str, size: int, chunk: int = 16 * MiB) -> None:
    # os.urandom is ~400 MB/s here: 2 GiB in ~5 s.
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(chunk, left)
            f.write(os.urandom(n))
            left -= n


def create_workload(spec: dict, path: str) -> None:
    tmp = path + ".creating"
    rm_rf(tmp)
    os.makedirs(tmp)
    t0 = time.perf_counter()
    if spec["name"] == "small":
        n, dirs, size = spec["files"], spec["dirs"], spec["file_size"]
        per, extra = divmod(n, dirs)
        for d in range(dirs):
            dpath = os.path.join(tmp, f"d{d:03d}")
            os.mkdir(dpath)
            for i in range(per + (1 if d < extra else 0)):
                with open(os.path.join(dpath, f"f{i:05d}"), "wb") as f:
                    f.write(os.urandom(size))
    elif spec["kind"] == "bytes":
        for i in range(spec["files"]):
            name = "data.bin" if spec["files"] == 1 else f"file{i:02d}.bin"
            write_random_file(os.path.join(tmp, name), spec["file_size"])
    elif spec["name"] == "mixed":
        for tree in spec["trees"]:
            if not os.path.isdir(tree):
                raise SystemExit(f"copybench: {tree} is missing: cannot build the mixed workload")
            subprocess.run(["cp", "-a", tree, os.path.join(tmp, os.path.basename(tree))],
                           check=True)
        os.mkdir(os.path.join(tmp, "random"))
        for mib in spec["random_mib"]:
            write_random_file(os.path.join(tmp, "random", f"r{mib:02d}M.bin"), mib * MiB)
    os.rename(tmp, path)
    os.sync()
    log(f"created workload {spec['id']} in {time.perf_counter() - t0:.1f} s")


def scan_tree(root: str, want_hash: bool) -> dict:
    """path -> [type, size, mode, mtime_ns, uid, gid, sha256|link target|None].

    The root itself is recorded as '.'.  type: f file, d dir, l symlink, o other.
    """
    out = {}
    st = os.lstat(root)
    out["."] = ["d", 0, st.st_mode & 0o7777, st.st_mtime_ns, st.st_uid, st.st_gid, None]
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(root, rel) if rel else root) as it:
            for e in it:
                p = f"{rel}/{e.name}" if rel else e.name
                st = e.stat(follow_symlinks=False)
                mode = st.st_mode
                if e.is_symlink():
                    out[p] = ["l", st.st_size, 0, st.st_mtime_ns, st.st_uid, st.st_gid,
                              os.readlink(e.path)]
                elif e.is_dir(follow_symlinks=False):
                    out[p] = ["d", 0, mode & 0o7777, st.st_mtime_ns, st.st_uid, st.st_gid, None]
                    stack.append(p)
                elif e.is_file(follow_symlinks=False):
                    out[p] = ["f", st.st_size, mode & 0o7777, st.st_mtime_ns, st.st_uid,
                              st.st_gid, file_sha256(e.path) if want_hash else None]
                else:
                    out[p] = ["o", 0, mode & 0o7777, st.st_mtime_ns, st.st_uid, st.st_gid,
                              oct(mode)]
    return out


def file_sha256(path: str) -> str:
    with open(path, "rb") as f:
        if hasattr(hashlib, "file_digest"):
            return hashlib.file_digest(f, "sha256").hexdigest()
        h = hashlib.sha256()
        for block in iter(lambda: f.read(MiB), b""):
            h.update(block)
        return h.hexdigest()


def manifest_stats(man: dict) -> dict:
    s = {"files": 0, "dirs": 0, "symlinks": 0, "other": 0, "bytes": 0}
    for e in man.values():
        key = {"f": "files", "d": "dirs", "l": "symlinks"}.get(e[0], "other")
        s[key] += 1
        if e[0] == "f":
            s["bytes"] += e[1]
    return s


class Workload:
    def __init__(self, spec: dict, workdir: str):
        self.spec = spec
        self.name = spec["name"]
        self.id = spec["id"]
        self.path = os.path.join(workdir, "src", self.id)
        self.marker = self.path + ".spec.json"
        self.manifest_path = self.path + ".manifest.json"
        self.manifest: dict = {}
        self.stats: dict = {}
        self.archive: str | None = None     # tar of the tree in /dev/shm (tree bound)
        self.quarters: list[list[str]] = []  # 4 groups of entries (tree bound)

    def label(self) -> str:
        return f"{self.name} ({self.spec['what']})"

    def ensure(self, want_hash: bool) -> None:
        ok = False
        if os.path.isdir(self.path) and os.path.exists(self.marker):
            try:
                with open(self.marker) as f:
                    ok = json.load(f) == self.spec
            except (OSError, ValueError):
                ok = False
        if not ok:
            log(f"creating workload {self.id} ({self.spec['what']}) under {self.path}")
            for p in (self.marker, self.manifest_path):
                if os.path.exists(p):
                    os.unlink(p)
            rm_rf_parallel(self.path)
            create_workload(self.spec, self.path)
            with open(self.marker, "w") as f:
                json.dump(self.spec, f, indent=1)
        else:
            log(f"reusing workload {self.id} ({self.path})")
        self.load_manifest(want_hash)

    def load_manifest(self, want_hash: bool) -> None:
        man = None
        if os.path.exists(self.manifest_path):
            try:
                with open(self.manifest_path) as f:
                    doc = json.load(f)
                if doc.get("hashed") or not want_hash:
                    man = doc["entries"]
            except (OSError, ValueError, KeyError):
                man = None
        if man is None:
            t0 = time.perf_counter()
            man = scan_tree(self.path, want_hash)
            with open(self.manifest_path, "w") as f:
                json.dump({"hashed": want_hash, "entries": man}, f)
            # The scan read every file and directory, which updated their atimes
            # (relatime): write those inodes now, not during a measured sync.
            os.sync()
            log(f"manifest of {self.id}: {len(man)} entries in {time.perf_counter() - t0:.1f} s")
        else:
            self.refresh_atime_if_stale(man)
        self.manifest = man
        self.stats = manifest_stats(man)

    def refresh_atime_if_stale(self, man: dict) -> None:
        """relatime updates an atime on the first read after a change or after
        24 h; a copy tool reading a stale source would then dirty one inode per
        file and the measured sync would write them.  When a sample of the tree
        looks stale, read everything once and sync."""
        paths = sorted(man)
        step = max(1, len(paths) // 500)
        now = time.time()
        stale = False
        for p in paths[::step]:
            try:
                st = os.lstat(os.path.join(self.path, p) if p != "." else self.path)
            except OSError:
                continue
            if os.path.islink(os.path.join(self.path, p)):
                continue
            if st.st_atime <= max(st.st_mtime, st.st_ctime) or now - st.st_atime > 20 * 3600:
                stale = True
                break
        if stale:
            log(f"{self.id}: atimes are stale, reading the tree once so that runs do not update them")
            read_tree(self.path)
            os.sync()

    def prepare_tree_bound(self, shm: str) -> None:
        # 4 quarters balanced by bytes (+ 4 KiB per entry), from entries at the
        # first depth that has at least 16 of them.
        tops = split_tree(self.path, 16)
        cost = {t: 0 for t in tops}
        for p, e in self.manifest.items():
            top = "."
            if "." not in cost:
                parts = p.split("/")
                for i in range(1, len(parts) + 1):
                    if "/".join(parts[:i]) in cost:
                        top = "/".join(parts[:i])
                        break
                else:
                    continue  # a directory above the tops
            cost[top] += e[1] + 4 * KiB
        buckets: list[list[str]] = [[], [], [], []]
        load = [0, 0, 0, 0]
        for t in sorted(tops, key=lambda t: -cost[t]):
            i = load.index(min(load))
            buckets[i].append("./" + t if t != "." else ".")
            load[i] += cost[t]
        self.quarters = [b for b in buckets if b]
        self.archive = os.path.join(shm, f"copybench-{self.id}.tar")
        t0 = time.perf_counter()
        subprocess.run(["tar", "-C", self.path, "-cf", self.archive, "."], check=True)
        log(f"{self.id}: tree-bound archive {human_bytes(os.path.getsize(self.archive))} "
            f"in {shm} ({time.perf_counter() - t0:.1f} s)")

    def drop_tree_bound(self) -> None:
        if self.archive and os.path.exists(self.archive):
            os.unlink(self.archive)
        self.archive = None


# --------------------------------------------------------------------------
# System helpers
# --------------------------------------------------------------------------

def rm_rf(path: str) -> None:
    if os.path.lexists(path):
        subprocess.run(["rm", "-rf", "--one-file-system", "--", path], check=True)


def split_tree(root: str, want: int) -> list[str]:
    """Entries of root (relative paths), expanded level by level until there
    are at least `want` of them (or nothing is left to expand)."""
    tops = ["."]
    while len(tops) < want:
        nxt, grew = [], False
        for t in tops:
            full = root if t == "." else os.path.join(root, t)
            if os.path.isdir(full) and not os.path.islink(full):
                kids = sorted(os.listdir(full))
                if kids:
                    grew = True
                    nxt.extend(k if t == "." else f"{t}/{k}" for k in kids)
                    continue
            nxt.append(t)
        if not grew:
            break
        tops = nxt
    return tops


def rm_rf_parallel(path: str, jobs: int = 12) -> None:
    """rm -rf, in `jobs` parallel processes.

    This root fs is ext4 without a journal, mounted with `discard`: with no
    journal there is no commit to batch the discards at, so every freed extent
    is discarded synchronously by the unlinking task (fs/ext4/mballoc.c,
    ext4_mb_clear_bb() -> ext4_issue_discard()).  That costs ~1.5-3 ms per file
    here: a plain rm -rf of 20,000 small files takes about a minute, which
    would dominate the harness.  The latency overlaps well: 8-16 parallel rm
    processes are ~10x faster.  (Outside the timed part, but it is why a run
    of many-file workloads takes long between measurements.)

    Every rm gets its paths as arguments, checked to lie strictly inside
    `path`.  An earlier version fed them to `xargs -0` through a pipe: when
    the harness was killed in the middle of that write, xargs still ran rm
    on the cut-off last record, which can be any prefix of a path (such as
    /var), and removed it."""
    if not os.path.lexists(path):
        return
    root = os.path.abspath(path)
    if os.path.isdir(root) and not os.path.islink(root):
        pieces = [os.path.normpath(os.path.join(root, p)) for p in split_tree(root, jobs * 4) if p != "."]
        for p in pieces:
            if p == root or os.path.commonpath([root, p]) != root:
                raise RuntimeError(f"rm_rf_parallel: {p!r} is not inside {root!r}")
        running: list[subprocess.Popen] = []

        def reap_one() -> None:
            proc = running.pop(0)
            if proc.wait() != 0:
                raise subprocess.CalledProcessError(proc.returncode, proc.args)

        for i in range(0, len(pieces), 4):
            while len(running) >= jobs:
                reap_one()
            running.append(subprocess.Popen(["rm", "-rf", "--one-file-system", "--", *pieces[i:i + 4]]))
        while running:
            reap_one()
    rm_rf(root)


def drop_caches() -> bool:
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def read_tree(path: str) -> None:
    # Not `tar -cf /dev/null`: GNU tar notices an archive named /dev/null and
    # then does not read file contents at all.  Piping through cat makes it read.
    subprocess.run(["bash", "-c", 'tar -C "$1" -cf - . | cat > /dev/null', "bash", path],
                   check=True)


def cpu_busy_seconds() -> float:
    with open("/proc/stat") as f:
        fields = f.readline().split()
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def loadavg1() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def meminfo_kib() -> dict:
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":", 1)
            if k in ("Cached", "Dirty", "Writeback", "MemFree"):
                out[k] = int(v.split()[0])
    return out


def first_line(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        lines = (r.stdout or r.stderr).strip().splitlines()
        return lines[0] if lines else ""
    except (OSError, subprocess.TimeoutExpired):
        return ""


def file_identity(path: str) -> dict | None:
    """mtime and SHA-256 of a binary, to notice a rebuild in the middle of a run."""
    try:
        st = os.stat(path)
        return {"mtime": _dt.datetime.fromtimestamp(st.st_mtime).isoformat(timespec="seconds"),
                "size": st.st_size, "sha256": file_sha256(path)[:16]}
    except OSError:
        return None


def mount_of(path: str) -> dict:
    path = os.path.realpath(path)
    best = {"mountpoint": "/", "device": "?", "fstype": "?", "options": ""}
    with open("/proc/mounts") as f:
        for line in f:
            dev, mnt, fstype, opts = line.split()[:4]
            mnt = mnt.replace("\\040", " ")
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and \
                    len(mnt) >= len(best["mountpoint"]):
                best = {"mountpoint": mnt, "device": dev, "fstype": fstype, "options": opts}
    dev = os.path.basename(best["device"])
    jt = f"/sys/fs/ext4/{dev}/journal_task"
    if best["fstype"] == "ext4" and os.path.exists(jt):
        with open(jt) as f:
            best["journal"] = "none" if f.read().strip() == "<none>" else "yes"
    sched = f"/sys/block/{dev}/queue/scheduler"
    if os.path.exists(sched):
        with open(sched) as f:
            best["scheduler"] = f.read().strip()
    return best


def machine_info(workdir: str) -> dict:
    info = {"kernel": platform.release(), "cpus": os.cpu_count()}
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    info["os"] = line.split("=", 1)[1].strip().strip('"')
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["mem_gib"] = round(int(f.readline().split()[1]) / (1024 * 1024), 1)
        for k in ("dirty_ratio", "dirty_background_ratio", "dirty_expire_centisecs"):
            with open(f"/proc/sys/vm/{k}") as f:
                info[f"vm.{k}"] = int(f.read())
    except OSError:
        pass
    info["fs"] = mount_of(workdir)
    return info


def machine_line(m: dict) -> str:
    fs = m["fs"]
    j = f", journal {fs['journal']}" if "journal" in fs else ""
    return (f"{m.get('os', '?')}, Linux {m['kernel']}, {m['cpus']} CPUs ({m.get('cpu', '?')}), "
            f"{m.get('mem_gib', '?')} GiB RAM; {fs['fstype']} on {fs['device']}{j}")


# --------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------

class Tool:
    def __init__(self, key: str, label: str, exe: str, argv, hint: str,
                 env: dict | None = None, ringcp: bool = False):
        self.key, self.label, self.exe, self.argv_fn = key, label, exe, argv
        self.hint, self.env, self.is_ringcp = hint, env or {}, ringcp

    def argv(self, src: str, dst: str) -> list[str]:
        return self.argv_fn(src, dst)

    def available(self) -> bool:
        if os.sep in self.exe:
            return os.access(self.exe, os.X_OK)
        return shutil.which(self.exe) is not None


def parse_ringcp_specs(values: list[str] | None, default: str = DEFAULT_RINGCP) -> list[tuple]:
    """The --ringcp arguments as [(label or None, absolute path)].

    ``PATH`` or ``LABEL=PATH`` (LABEL: letters, digits, ``.``, ``_``, ``-``; a
    value that names an existing file is taken as a path even if it has a
    ``=``).  None given: the project's build, unlabelled.  Several binaries must
    each have a distinct label; the first is the baseline of every ratio."""
    if not values:
        return [(None, os.path.abspath(default))]
    out = []
    for v in values:
        label, path = None, v
        if "=" in v and not os.path.exists(v):
            head, tail = v.split("=", 1)
            if head and all(c.isalnum() or c in "._-" for c in head):
                label, path = head, tail
        if not path:
            raise SystemExit(f"copybench: --ringcp {v!r}: no path")
        out.append((label, os.path.abspath(path)))
    if len(out) > 1:
        labels = [lab for lab, _ in out]
        if None in labels:
            raise SystemExit("copybench: with several --ringcp, give each a label: "
                             "--ringcp before=PATH --ringcp after=PATH")
        if len(set(labels)) != len(labels):
            raise SystemExit(f"copybench: --ringcp labels must differ: {', '.join(labels)}")
    return out


def ringcp_key(label: str | None) -> str:
    """Tool key of a ringcp binary: ``ringcp`` unlabelled, ``ringcp:LABEL`` labelled."""
    return "ringcp" if label is None else f"ringcp:{label}"


def make_tool(key: str, ringcp_path: str, ringcp_extra: list[str],
              ringcp_label: str | None = None) -> Tool:
    """`key` is a tool name; for ringcp, ``ringcp`` plus optional extra
    arguments (``ringcp --buffers=auto``).  With `ringcp_label` the key becomes
    ``ringcp:LABEL[ args]`` and the binary is `ringcp_path`."""
    if key == "ringcp" or key.startswith("ringcp "):
        args = key.split()[1:]
        extra = ringcp_extra + args
        name = "ringcp -a" if ringcp_label is None else f"ringcp -a ({ringcp_label})"
        label = name + "".join(" " + x for x in args)
        full_key = " ".join([ringcp_key(ringcp_label)] + args)
        return Tool(full_key, label, ringcp_path,
                    lambda s, d: [ringcp_path, "-a", *extra, s + "/.", d],
                    f"build it: cmake --build build/release --target ringcp (or pass --ringcp PATH)"
                    if ringcp_label is None else f"no executable at {ringcp_path}",
                    env={"RINGIO_STATS": "1"}, ringcp=True)
    if key == "cp":
        return Tool(key, "cp -a", "cp", lambda s, d: ["cp", "-a", s + "/.", d],
                    "apt-get install -y coreutils")
    if key == "rsync":
        return Tool(key, "rsync -a", "rsync", lambda s, d: ["rsync", "-a", s + "/", d + "/"],
                    "apt-get install -y rsync")
    if key == "rclone":
        # No config file is needed for local paths; /dev/null silences the
        # "config file not found" notice.
        return Tool(key, "rclone copy", "rclone",
                    lambda s, d: ["rclone", "copy", "--transfers", "8", "--links", s, d],
                    "apt-get install -y rclone", env={"RCLONE_CONFIG": "/dev/null"})
    if key == "tar":
        return Tool(key, "tar|tar", "tar",
                    lambda s, d: ["bash", "-c",
                                  'set -o pipefail; tar -C "$1" -cf - . | tar -C "$2" -xf -',
                                  "bash", s, d],
                    "apt-get install -y tar")
    raise SystemExit(f"copybench: unknown tool {key!r} (known: {', '.join(ALL_TOOLS)})")


# --------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------

class Bench:
    def __init__(self, args, workdir: str):
        self.args = args
        self.workdir = workdir
        self.dst = os.path.join(workdir, "dst")
        self.records: list[dict] = []     # copy runs
        self.limits: list[dict] = []      # limit runs
        self.verify: dict = {}            # (tool key, workload) -> result
        self.failed: set = set()          # (tool key, workload, mode) that failed
        # --paired verifies each tool's first copy per workload *and mode* (a
        # hot copy may take another path than a cold one): keys get the mode.
        self.verify_per_mode = bool(getattr(args, "paired", False))
        self.caches_dropped = True
        self.gnu_time = os.access(GNU_TIME, os.X_OK)
        self.shm = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
        self.current: subprocess.Popen | None = None
        self.last_prepare: dict = {}
        self.cell_seconds: list[dict] = []  # --paired: seconds per round, workload and mode
        self.settle_seconds: dict = {}      # --paired: workload -> seconds of its settling copy

    # -- between runs --------------------------------------------------------
    def prepare(self, mode: str, src: str) -> None:
        """Remove the previous destination, sync, drop caches; warm for hot.

        Caches are dropped before hot runs too, not only cold ones: ext4 without
        a journal (this machine's root fs) will not reuse an inode whose dtime
        is less than RECENTCY_MIN = 60 s old (+ RECENTCY_DIRTY = 300 s when its
        inode-table block is dirty) as long as that table block is still in the
        buffer cache -- fs/ext4/ialloc.c, recently_deleted(), checked by
        find_inode_bit() when there is no journal.  After the rm -rf of a
        100k-file copy, the next copy would skip over all those inodes, spreading
        the new ones over more inode-table blocks, and many-file copies get
        slower run after run.  sync + drop_caches evicts the table blocks
        ("not in the buffer cache: it must have been written out"), so every run
        allocates inodes the same way.  The hot state is then rebuilt by reading
        the source once.
        """
        t0 = time.perf_counter()
        rm_rf_parallel(self.dst)
        t1 = time.perf_counter()
        os.sync()
        t2 = time.perf_counter()
        if not drop_caches():
            if self.caches_dropped:
                log("WARNING: cannot write /proc/sys/vm/drop_caches (not root?): "
                    "runs are neither cold nor comparable")
            self.caches_dropped = False
        t3 = time.perf_counter()
        if mode == "hot":
            read_tree(src)
        t4 = time.perf_counter()
        self.last_prepare = {"rm": t1 - t0, "sync": t2 - t1, "drop": t3 - t2, "warm": t4 - t3}

    # -- one tool run --------------------------------------------------------
    def run_tool(self, tool: Tool, wl: Workload, mode: str, run: int) -> dict:
        """Run the tool once and measure it.

        Peak RSS: ru_maxrss from wait4() on a child that Python spawned is at
        least this harness's own peak RSS: the child starts as a (v)fork of us
        and exec() folds the old mm's high-water mark into the process's maxrss
        (measured here: /bin/true "uses" 300 MB after the harness touched 300
        MB).  So the tool runs under GNU time, a ~1 MB process whose %M is the
        max RSS of its own children only.  CPU time comes from wait4() (GNU
        time's own share is negligible)."""
        self.prepare(mode, wl.path)
        os.mkdir(self.dst)
        argv = tool.argv(wl.path, self.dst)
        env = dict(os.environ, **tool.env)
        tfile = tempfile.NamedTemporaryFile(prefix="copybench-time-", delete=False)
        efile = tempfile.TemporaryFile(prefix="copybench-err-")
        tfile.close()
        wrapper = [GNU_TIME, "-f", "%M", "-o", tfile.name] if self.gnu_time else []
        rec = {"workload": wl.name, "mode": mode, "tool": tool.key, "label": tool.label,
               "run": run, "argv": argv}
        rec["load1"] = loadavg1()
        mem0 = meminfo_kib()
        cpu0 = cpu_busy_seconds()
        t0 = time.perf_counter()
        try:
            proc = subprocess.Popen(wrapper + argv, stdin=subprocess.DEVNULL,
                                    stdout=efile, stderr=efile, env=env,
                                    start_new_session=True)
        except OSError as e:
            rec.update(ok=False, error=f"cannot start: {e}")
            efile.close()
            os.unlink(tfile.name)
            return rec
        self.current = proc
        killer = threading.Timer(self.args.timeout, _kill_group, [proc.pid])
        killer.start()
        try:
            _, status, ru = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
            self.current = None
        t1 = time.perf_counter()
        mem1 = meminfo_kib()
        os.sync()
        t2 = time.perf_counter()
        cpu2 = cpu_busy_seconds()
        rc = os.waitstatus_to_exitcode(status)
        proc.returncode = rc
        maxrss = ru.ru_maxrss
        if self.gnu_time:
            try:
                with open(tfile.name) as f:
                    last = [x for x in f.read().split("\n") if x.strip()]
                maxrss = int(last[-1]) if last and last[-1].strip().isdigit() else None
            except OSError:
                maxrss = None
        os.unlink(tfile.name)
        efile.seek(0)
        out = efile.read().decode("utf-8", "replace")
        efile.close()
        rec.update(prepare=self.last_prepare)
        rec.update(rc=rc, ok=(rc == 0), t_total=t2 - t0, t_copy=t1 - t0,
                   busy_cpu=cpu2 - cpu0, tool_cpu=ru.ru_utime + ru.ru_stime,
                   tool_user=ru.ru_utime, tool_sys=ru.ru_stime, maxrss_kib=maxrss,
                   maxrss_from="gnu-time" if self.gnu_time else "wait4 (includes harness)",
                   cached_kib=mem1["Cached"], dirty_kib=mem1["Dirty"],
                   writeback_kib=mem1.get("Writeback"), cached_before_kib=mem0["Cached"])
        if tool.is_ringcp:
            rec["ringio_stats"] = [ln for ln in out.splitlines() if "acquires=" in ln][:8]
        if rc != 0:
            msg = [ln.strip() for ln in out.splitlines() if ln.strip()]
            rec["error"] = f"rc={rc}" + (f": {msg[0]}" if msg else "")
            if rc == -signal.SIGKILL:
                rec["error"] += f" (killed after --timeout {self.args.timeout} s)"
            rec["output_tail"] = msg[-5:]
        elif out.strip():
            rec["output_tail"] = out.strip().splitlines()[-3:]
        return rec

    # -- limits ----------------------------------------------------------------
    def fio(self, argv: list[str]) -> dict:
        r = subprocess.run(argv, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"fio failed: {(r.stderr or r.stdout).strip()[:300]}")
        text = r.stdout
        return json.loads(text[text.index("{"):])["jobs"][0]

    def measure_fio_limit(self, wl: Workload, run: int) -> dict:
        files = [os.path.join(wl.path, p) for p, e in sorted(wl.manifest.items()) if e[0] == "f"]
        total = sum(os.path.getsize(f) for f in files)
        common = ["fio", "--output-format=json", "--ioengine=io_uring", "--direct=1",
                  "--bs=1M", "--iodepth=32", f"--size={total}"]
        self.prepare("cold", wl.path)
        names = ":".join(f.replace(":", "\\:") for f in files)
        rd = self.fio(common + ["--name=read", "--rw=read", f"--filename={names}",
                                "--file_service_type=sequential"])
        wpath = os.path.join(self.workdir, "fio-write.tmp")
        try:
            wr = self.fio(common + ["--name=write", "--rw=write", f"--filename={wpath}",
                                    "--fallocate=none", "--end_fsync=1"])
        finally:
            if os.path.exists(wpath):
                os.unlink(wpath)
            os.sync()
        rbw, wbw = rd["read"]["bw_bytes"], wr["write"]["bw_bytes"]
        return {"workload": wl.name, "run": run, "kind": "fio", "bytes": total,
                "read_bw": rbw, "write_bw": wbw,
                "cold": total / min(rbw, wbw), "hot": total / wbw}

    def measure_tree_bound(self, wl: Workload, run: int) -> dict:
        self.prepare("cold", wl.path)
        t0 = time.perf_counter()
        procs = [subprocess.Popen(["bash", "-c", 'd=$1; shift; tar -C "$d" -cf - "$@" | cat > /dev/null',
                                   "bash", wl.path, *q]) for q in wl.quarters]
        rcs = [p.wait() for p in procs]
        t_read = time.perf_counter() - t0
        if any(rcs):
            raise RuntimeError(f"parallel tar read failed: {rcs}")
        self.prepare("cold", wl.path)
        os.mkdir(self.dst)
        t0 = time.perf_counter()
        subprocess.run(["tar", "-C", self.dst, "-xf", wl.archive], check=True)
        t1 = time.perf_counter()
        os.sync()
        t_create = time.perf_counter() - t0
        return {"workload": wl.name, "run": run, "kind": "tree", "read": t_read,
                "create": t_create, "create_nosync": t1 - t0, "parallel": len(wl.quarters),
                "cold": max(t_read, t_create), "hot": t_create}

    def measure_limit(self, wl: Workload, run: int) -> dict | None:
        if self.args.no_limits:
            return None
        try:
            if wl.spec["kind"] == "bytes":
                if not shutil.which("fio"):
                    return None
                rec = self.measure_fio_limit(wl, run)
                log(f"  limit {wl.name} run {run}: fio read {rec['read_bw'] / 1e6:.0f} MB/s, "
                    f"write {rec['write_bw'] / 1e6:.0f} MB/s -> {rec['cold']:.2f} s cold, "
                    f"{rec['hot']:.2f} s hot")
            else:
                rec = self.measure_tree_bound(wl, run)
                log(f"  limit {wl.name} run {run}: read {rec['read']:.2f} s "
                    f"({rec['parallel']} x tar|cat), create {rec['create']:.2f} s "
                    f"(tar -x from {self.shm} + sync) -> {rec['cold']:.2f} s")
        except (RuntimeError, OSError, subprocess.CalledProcessError, ValueError, KeyError) as e:
            log(f"  limit {wl.name} run {run}: FAILED: {e}")
            return {"workload": wl.name, "run": run, "error": str(e)}
        self.limits.append(rec)
        return rec

    # -- verification ----------------------------------------------------------
    def verify_copy(self, tool: Tool, wl: Workload) -> dict:
        t0 = time.perf_counter()
        content = self.args.verify
        src = wl.manifest
        dst = scan_tree(self.dst, want_hash=False)
        hard = {"missing": 0, "extra": 0, "type": 0, "size": 0, "content": 0, "symlink": 0}
        soft = {"mode": 0, "owner": 0, "mtime>=1s": 0, "mtime<1s": 0}
        examples = []
        hashed = 0
        for p, s in src.items():
            d = dst.get(p)
            if d is None:
                hard["missing"] += 1
                examples.append(f"missing {p}")
                continue
            if d[0] != s[0]:
                hard["type"] += 1
                examples.append(f"type {p}: {s[0]} -> {d[0]}")
                continue
            if s[0] == "f":
                if d[1] != s[1]:
                    hard["size"] += 1
                    examples.append(f"size {p}: {s[1]} -> {d[1]}")
                    continue
                want = content == "full" or (content == "sample" and (
                    s[1] >= MiB or zlib.crc32(p.encode()) % 50 == 0))
                if want and s[6]:
                    hashed += 1
                    if file_sha256(os.path.join(self.dst, p)) != s[6]:
                        hard["content"] += 1
                        examples.append(f"content {p}")
            elif s[0] == "l":
                if d[6] != s[6]:
                    hard["symlink"] += 1
                    examples.append(f"symlink {p}: {s[6]!r} -> {d[6]!r}")
                continue
            if d[2] != s[2]:
                soft["mode"] += 1
            if (d[4], d[5]) != (s[4], s[5]):
                soft["owner"] += 1
            if d[3] != s[3]:
                soft["mtime>=1s" if abs(d[3] - s[3]) >= 1_000_000_000 else "mtime<1s"] += 1
        for p in dst:
            if p not in src:
                hard["extra"] += 1
                examples.append(f"extra {p}")
        ok = not any(hard.values())
        res = {"ok": ok, "content": content, "hashed": hashed, "entries": len(src),
               "hard": {k: v for k, v in hard.items() if v},
               "soft": {k: v for k, v in soft.items() if v},
               "examples": examples[:10], "seconds": round(time.perf_counter() - t0, 2)}
        note = "" if ok else f" FAILED {res['hard']} e.g. {examples[:3]}"
        log(f"  verify {tool.label} on {wl.name}: {'ok' if ok else 'MISMATCH'} "
            f"({hashed} files hashed, {res['seconds']} s)"
            + (f"; not preserved: {res['soft']}" if res["soft"] else "") + note)
        return res

    # -- one measured copy, with bookkeeping -------------------------------------
    def measure(self, tool: Tool, wl: Workload, mode: str, run: int, nruns: int) -> dict | None:
        key = (tool.key, wl.name, mode)
        if key in self.failed:
            return None
        rec = self.run_tool(tool, wl, mode, run)
        self.records.append(rec)
        if rec["ok"]:
            log(f"  {wl.name} {mode} run {run}/{nruns} {tool.label}: {rec['t_total']:.2f} s "
                f"(no sync {rec['t_copy']:.2f} s, tool CPU {rec['tool_cpu']:.2f} s, "
                f"RSS {fmt_mib(rec['maxrss_kib'])} MiB)")
            vkey = (tool.key, wl.name, mode) if self.verify_per_mode else (tool.key, wl.name)
            if self.args.verify != "none" and vkey not in self.verify:
                self.verify[vkey] = self.verify_copy(tool, wl)
        else:
            self.failed.add(key)
            log(f"  {wl.name} {mode} run {run}/{nruns} {tool.label}: FAILED {rec.get('error')}"
                f" -- skipping its remaining {mode} runs on {wl.name}")
        return rec

    def cleanup_dst(self) -> None:
        rm_rf_parallel(self.dst)
        os.sync()


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


def rotate(items: list, k: int) -> list:
    if not items:
        return items
    k %= len(items)
    return items[k:] + items[:k]


# --------------------------------------------------------------------------
# Campaigns
# --------------------------------------------------------------------------

def run_compare(b: Bench, workloads: list[Workload], tools: list[Tool], modes: list[str],
                runs: int) -> None:
    for wl in workloads:
        log(f"== workload {wl.label()}: {wl.stats['files']:,} files, "
            f"{wl.stats['dirs']:,} dirs, {wl.stats['symlinks']:,} symlinks, "
            f"{human_bytes(wl.stats['bytes'])}")
        try:
            if wl.spec["kind"] == "tree" and not b.args.no_limits:
                wl.prepare_tree_bound(b.shm)
            for r in range(1, runs + 1):
                b.measure_limit(wl, r)
                for mode in modes:
                    for tool in rotate(tools, r - 1):
                        b.measure(tool, wl, mode, r, runs)
        finally:
            wl.drop_tree_bound()
            b.cleanup_dst()


def run_adaptive(b: Bench, workloads: list[Workload], ringcp_path: str, extra: list[str],
                 modes: list[str], runs: int, h2h_runs: int) -> dict:
    counts = [int(x) for x in b.args.buffer_counts.split(",") if x.strip()]
    variants = ["ringcp", "ringcp --buffers=auto"] + [f"ringcp --buffers={n}" for n in counts]
    tools = [make_tool(v, ringcp_path, extra) for v in variants]
    if not tools[0].available():
        log(f"ringcp not found at {ringcp_path}: {tools[0].hint}")
        return {"error": f"ringcp not found at {ringcp_path}"}
    mode = modes[0]
    result = {"mode": mode, "counts": counts, "phase1": {}, "h2h": {}}
    run_compare(b, workloads, tools, [mode], runs)
    for wl in workloads:
        med = {}
        for t in tools:
            ts = [r["t_total"] for r in b.records
                  if r["workload"] == wl.name and r["tool"] == t.key and r["mode"] == mode and r["ok"]]
            med[t.key] = statistics.median(ts) if ts else None
        fixed = {n: med[f"ringcp --buffers={n}"] for n in counts
                 if med[f"ringcp --buffers={n}"] is not None}
        best = min(fixed, key=fixed.get) if fixed else None
        # What auto ended at, from the RINGIO_STATS=1 line of its last good run.
        auto_line = next((r["ringio_stats"][0] for r in reversed(b.records)
                          if r["workload"] == wl.name and r["tool"] == "ringcp --buffers=auto"
                          and r["ok"] and r.get("ringio_stats")), "")
        auto_end = " ".join(f for f in auto_line.split() if f.split("=")[0] in
                            ("buffers", "growths", "shrinks", "miss_rate"))
        result["phase1"][wl.name] = {"default": med["ringcp"], "auto": med["ringcp --buffers=auto"],
                                     "fixed": fixed, "best_fixed": best, "auto_end": auto_end}
    log("== head to head: auto vs the best fixed count")
    for wl in workloads:
        p1 = result["phase1"][wl.name]
        if p1["best_fixed"] is None or p1["auto"] is None:
            result["h2h"][wl.name] = {"error": "ringcp failed in phase 1"}
            continue
        pair = [tools[1], make_tool(f"ringcp --buffers={p1['best_fixed']}", ringcp_path, extra)]
        a, f = [], []
        try:
            for r in range(1, h2h_runs + 1):
                order = pair if r % 2 else pair[::-1]   # ABBA-style alternation
                for t in order:
                    rec = b.run_tool(t, wl, mode, r)
                    rec["phase"] = "h2h"
                    b.records.append(rec)
                    if rec["ok"]:
                        (a if t is pair[0] else f).append(rec["t_total"])
                        log(f"  h2h {wl.name} run {r}/{h2h_runs} {t.label}: {rec['t_total']:.2f} s")
                    else:
                        log(f"  h2h {wl.name} run {r}/{h2h_runs} {t.label}: FAILED {rec.get('error')}")
        finally:
            b.cleanup_dst()
        n = min(len(a), len(f))
        result["h2h"][wl.name] = {
            "fixed": p1["best_fixed"], "auto": a, "fixed_times": f,
            "auto_median": statistics.median(a) if a else None,
            "fixed_median": statistics.median(f) if f else None,
            "auto_wins": sum(1 for i in range(n) if a[i] < f[i]), "pairs": n}
    return result


def paired_order(tools: list, rnd: int, cell: int) -> list:
    """Tool order of one workload+mode cell in a --paired round (rounds and
    cells from 1 and 0).  Rotated by round + cell: with two tools the order is
    AB, BA, AB, ... within a round and flips from round to round, so each tool
    goes first equally often and neither always follows the other."""
    return rotate(list(tools), rnd - 1 + cell)


def run_paired(b: Bench, workloads: list[Workload], tools: list[Tool], modes: list[str],
               rounds: int) -> None:
    """Paired rounds: per workload, `rounds` rounds of every mode, each mode a
    cell that runs every tool once, back to back, in the order of
    paired_order(), so that whatever the machine does at that moment hits
    every tool alike.

    The workload loop is the outer one, and each workload starts with one
    unmeasured copy by the first tool (phase "settle"): the run after a switch
    of workload pays for it.  In the first A/A smoke test (same binary twice,
    workloads switching every round) the large cold copy that followed the
    removal of a 100,000-file copy took 9.6 and 8.9 s, with 4.3 s of CPU; the
    one right after it, 4.5 and 5.7 s with 0.8-1.3 s (see docs/BENCHMARKS.md).
    Seconds per cell (removing, syncing, dropping, warming, copying and
    verifying) go to b.cell_seconds, the settling copy's to b.settle_seconds."""
    for wl in workloads:
        log(f"== paired: workload {wl.label()}, {rounds} rounds")
        t0 = time.perf_counter()
        rec = b.run_tool(tools[0], wl, modes[0], 0)
        rec["phase"] = "settle"
        b.records.append(rec)
        b.settle_seconds[wl.name] = round(time.perf_counter() - t0, 2)
        log(f"  {wl.name} {modes[0]} settling copy (not counted) {tools[0].label}: "
            + (f"{rec['t_total']:.2f} s" if rec["ok"] else f"FAILED {rec.get('error')}"))
        try:
            for r in range(1, rounds + 1):
                t_round = time.perf_counter()
                for i, mode in enumerate(modes):
                    t0 = time.perf_counter()
                    for tool in paired_order(tools, r, i):
                        rec = b.measure(tool, wl, mode, r, rounds)
                        if rec is not None:
                            rec["phase"] = "paired"
                    b.cell_seconds.append({"round": r, "workload": wl.name, "mode": mode,
                                           "seconds": round(time.perf_counter() - t0, 2)})
                log(f"== {wl.name} round {r}/{rounds} took {time.perf_counter() - t_round:.0f} s")
        finally:
            b.cleanup_dst()


def safe_ratio(a, b):
    """a / b, or None when either is missing or b is 0."""
    return a / b if (a is not None and b) else None


def paired_ratios(base: dict, other: dict, field: str) -> list[float]:
    """other / base of `field` in every round both have ({round: record})."""
    out = []
    for rnd in sorted(set(base) & set(other)):
        x = safe_ratio(other[rnd].get(field), base[rnd].get(field))
        if x is not None:
            out.append(x)
    return out


def compare_pair(base: dict, other: dict, wall_tol: float = 0.05, cpu_tol: float = 0.03,
                 cpu_floor: float = 0.0, failed: bool = False) -> dict:
    """One workload+mode of one tool against the baseline.

    base, other: {round: record} of the successful runs (record: t_total,
    t_copy, tool_cpu).  Wall passes when median(other) <= median(base) *
    (1 + wall_tol); CPU passes when median(other) <= median(base) * (1 +
    cpu_tol) or is at most cpu_floor seconds above it (an absolute allowance
    for copies that take a few hundredths of a second of CPU; 0: none).
    `failed`: the tool failed a run (then FAIL whatever the medians)."""
    bw = median_of([r["t_total"] for r in base.values()])
    ow = median_of([r["t_total"] for r in other.values()])
    bc = median_of([r["tool_cpu"] for r in base.values()])
    oc = median_of([r["tool_cpu"] for r in other.values()])
    pw = paired_ratios(base, other, "t_total")
    pc = paired_ratios(base, other, "tool_cpu")
    row = {"base_wall": bw, "wall": ow, "wall_ratio": safe_ratio(ow, bw),
           "paired_wall_ratio": median_of(pw), "paired_wall_min": min(pw, default=None),
           "paired_wall_max": max(pw, default=None), "paired_wall_ratios": pw,
           "faster_rounds": sum(1 for x in pw if x < 1), "pairs": len(pw),
           "base_nosync": median_of([r["t_copy"] for r in base.values()]),
           "nosync": median_of([r["t_copy"] for r in other.values()]),
           "base_cpu": bc, "cpu": oc, "cpu_ratio": safe_ratio(oc, bc),
           "paired_cpu_ratio": median_of(pc), "base_runs": len(base), "runs": len(other),
           "wall_tol": wall_tol, "cpu_tol": cpu_tol, "cpu_floor": cpu_floor}
    row["nosync_ratio"] = safe_ratio(row["nosync"], row["base_nosync"])
    if failed or not other:
        row["wall_pass"] = row["cpu_pass"] = False
        row["why"] = "the tool failed" if failed else "no successful run"
    elif not base:
        row["wall_pass"] = row["cpu_pass"] = None
        row["why"] = "the baseline has no successful run"
    else:
        row["wall_pass"] = row["wall_ratio"] <= 1 + wall_tol
        row["cpu_pass"] = (oc <= bc * (1 + cpu_tol)) or (oc - bc <= cpu_floor)
    return row


def paired_summary(records: list[dict], tools: list, workloads: list[str], modes: list[str],
                   verify: dict | None = None, wall_tol: float = 0.05, cpu_tol: float = 0.03,
                   cpu_floor: float = 0.0) -> list[dict]:
    """Rows of the --paired table: every tool after the first against the
    first, per workload and mode.  tools: [(key, label)]; records: the
    harness's run records (phase "paired"); verify: {(key, workload, mode):
    result} (or (key, workload))."""
    verify = verify or {}
    (base_key, base_label), others = tools[0], tools[1:]
    rows = []

    def runs(key, wl, mode):
        recs = [r for r in records if r.get("phase") == "paired" and r["tool"] == key
                and r["workload"] == wl and r["mode"] == mode]
        return {r["run"]: r for r in recs if r["ok"]}, any(not r["ok"] for r in recs)

    for wl in workloads:
        for mode in modes:
            base, _ = runs(base_key, wl, mode)
            for key, label in others:
                other, failed = runs(key, wl, mode)
                row = {"workload": wl, "mode": mode, "base": base_key, "base_label": base_label,
                       "tool": key, "label": label}
                row.update(compare_pair(base, other, wall_tol, cpu_tol, cpu_floor, failed))
                row["verify"] = verify.get((key, wl, mode)) or verify.get((key, wl))
                row["base_verify"] = verify.get((base_key, wl, mode)) or verify.get((base_key, wl))
                bad_copy = any(v is not None and not v["ok"] for v in (row["verify"], row["base_verify"]))
                if bad_copy:
                    row["why"] = "copy MISMATCH"
                row["pass"] = (bool(row["wall_pass"]) and bool(row["cpu_pass"])
                               and not bad_copy) if row["wall_pass"] is not None else None
                rows.append(row)
    return rows


def round_seconds(cell_seconds: list[dict]) -> tuple[dict, float]:
    """({workload: median seconds per round}, median seconds of a whole round)
    from the {round, workload, mode, seconds} entries of run_paired()."""
    per: dict = {}
    for c in cell_seconds:
        by_round = per.setdefault(c["workload"], {})
        by_round[c["round"]] = by_round.get(c["round"], 0.0) + c["seconds"]
    rounds = sorted({c["round"] for c in cell_seconds})
    whole = [sum(v.get(r, 0.0) for v in per.values()) for r in rounds]
    return ({wl: statistics.median(v.values()) for wl, v in per.items()},
            statistics.median(whole) if whole else 0.0)


def verdict_cell(ok) -> str:
    return "—" if ok is None else ("PASS" if ok else "**FAIL**")


def paired_markdown(rows: list[dict], rounds: int, cell_seconds: list[dict] | None = None,
                    identical: list[str] | None = None,
                    settle_seconds: dict | None = None) -> list[str]:
    """The --paired table, its legend, the verdict and the time per round."""
    if not rows:
        return ["Paired comparison: nothing was measured.", ""]
    tol = rows[0]
    several = len({r["tool"] for r in rows}) > 1

    def short(key, label):
        return key.split(":", 1)[1] if key.startswith("ringcp:") else label

    base = short(rows[0]["base"], rows[0]["base_label"])
    new = "tool" if several else short(rows[0]["tool"], rows[0]["label"])
    L = [f"Paired comparison, {rounds} rounds; every ratio is "
         + (f"**{new} / {base}** ({rows[0]['label']} / {rows[0]['base_label']})" if not several
            else f"**tool / {base}** (tool in the mode column)") + ".", "",
         "**wall** = median time to data on disk (copy + final `sync`) over the rounds; "
         "**medians** = ratio of the two medians (the criterion: wall PASS when <= "
         f"{1 + tol['wall_tol']:.2f}); **paired** = median (min–max) of the per-round "
         "ratios, each round's two runs taken back to back; **faster** = rounds in which the "
         "tool was faster than the baseline; **CPU** = median user+sys of the tool's process "
         f"tree (`wait4`), **CPU ratio** = ratio of the CPU medians (CPU PASS when <= "
         f"{1 + tol['cpu_tol']:.2f}: a {tol['cpu_tol'] * 100:.0f} % allowance for noise"
         + (f", or when the tool's median is at most {tol['cpu_floor'] * 1000:.0f} ms above the "
            "baseline's" if tol["cpu_floor"] else "")
         + "), **CPU paired** = median of the per-round CPU ratios; "
         "**verify** = the tool's first copy in that workload and mode checked against the source.",
         "",
         f"| workload | mode | {base} wall (s) | {new} wall (s) | medians | paired | {new} faster "
         f"| {base} CPU (s) | {new} CPU (s) | CPU ratio | CPU paired | wall | CPU | pairs "
         f"| {new} verify |",
         "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|--:|---|"]
    for r in rows:
        if several:
            wlmode = f"{r['workload']} | {r['mode']} ({r['label']})"
        else:
            wlmode = f"{r['workload']} | {r['mode']}"
        paired = (f"{fmt_ratio3(r['paired_wall_ratio'])} ({fmt_ratio3(r['paired_wall_min'])}–"
                  f"{fmt_ratio3(r['paired_wall_max'])})" if r["pairs"] else "—")
        ver = verify_cell(r["verify"]).replace("|", "\\|")
        if r.get("why"):
            ver += f"; {r['why']}"
        L.append(f"| {wlmode} | {fmt_s(r['base_wall'])} | {fmt_s(r['wall'])} "
                 f"| {fmt_ratio3(r['wall_ratio'])} | {paired} | {r['faster_rounds']}/{r['pairs']} "
                 f"| {fmt_s3(r['base_cpu'])} | {fmt_s3(r['cpu'])} | {fmt_ratio3(r['cpu_ratio'])} "
                 f"| {fmt_ratio3(r['paired_cpu_ratio'])} | {verdict_cell(r['wall_pass'])} | {verdict_cell(r['cpu_pass'])} "
                 f"| {r['pairs']}/{rounds} | {ver} |")
    L.append("")
    fails = [r for r in rows if r["pass"] is False]
    unknown = [r for r in rows if r["pass"] is None]
    if fails:
        L.append("Verdict: **FAIL** -- " + "; ".join(
            f"{r['workload']} {r['mode']}"
            + (f" ({r['label']})" if several else "")
            + ": " + ", ".join(x for x, bad in (("wall", not r["wall_pass"]),
                                                ("CPU", not r["cpu_pass"]),
                                                (r.get("why") or "", bool(r.get("why")))) if bad and x)
            for r in fails))
    elif unknown:
        L.append("Verdict: incomplete (the baseline failed on "
                 + ", ".join(f"{r['workload']} {r['mode']}" for r in unknown) + ")")
    else:
        L.append(f"Verdict: PASS (all {len(rows)} rows)")
    if any(r["pairs"] < rounds for r in rows):
        L.append(f"(some rows have fewer than {rounds} pairs: interrupted or failed runs)")
    if identical:
        L.append("")
        L.append("Note: " + ", ".join(identical) + " are the same binary (same SHA-256): "
                 "an A/A run, the ratios show the noise of this machine.")
    if cell_seconds:
        per_wl, per_round = round_seconds(cell_seconds)
        L.append("")
        L.append("Seconds per round (median over the rounds; every mode and tool, including "
                 "removing, syncing, dropping caches, warming and verifying): "
                 + ", ".join(f"{wl} {v:.0f} s" for wl, v in per_wl.items())
                 + f"; all workloads {per_round:.0f} s"
                 + (("; plus one unmeasured settling copy per workload before its rounds ("
                     + ", ".join(f"{wl} {v:.0f} s" for wl, v in settle_seconds.items()) + ")")
                    if settle_seconds else "") + ".")
    L.append("")
    return L


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------

def fmt_s(x) -> str:
    return "—" if x is None else (f"{x:.2f}" if x < 100 else f"{x:.0f}")


def fmt_ratio(x) -> str:
    return "—" if x is None else f"{x:.2f}"


def fmt_s3(x) -> str:
    return "—" if x is None else f"{x:.3f}" if x < 10 else fmt_s(x)


def fmt_ratio3(x) -> str:
    return "—" if x is None else f"{x:.3f}"


def fmt_mib(kib) -> str:
    return "?" if kib is None else f"{kib / 1024:.0f}" if kib >= 10 * 1024 else f"{kib / 1024:.1f}"


def median_of(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(b: Bench, workloads, tools, modes) -> list[dict]:
    rows = []
    # tool/ringcp is against the first ringcp (the first --ringcp binary).
    base_key = next((t.key for t in tools if t.is_ringcp), None)
    for wl in workloads:
        lim = [x for x in b.limits if x["workload"] == wl.name and "error" not in x]
        for mode in modes:
            limit = median_of([x[mode] for x in lim])
            base = None
            group = []
            for t in tools:
                recs = [r for r in b.records if r["workload"] == wl.name and r["mode"] == mode
                        and r["tool"] == t.key and r.get("phase") not in ("h2h", "settle")]
                if not recs:
                    continue
                good = [r for r in recs if r["ok"]]
                row = {"workload": wl.name, "mode": mode, "tool": t.key, "label": t.label,
                       "ringcp": t.is_ringcp, "runs": len(good), "attempts": len(recs),
                       "limit": limit}
                if good:
                    tt = [r["t_total"] for r in good]
                    row.update(
                        time=statistics.median(tt), min=min(tt), max=max(tt),
                        time_nosync=median_of([r["t_copy"] for r in good]),
                        busy_cpu=median_of([r["busy_cpu"] for r in good]),
                        tool_cpu=median_of([r["tool_cpu"] for r in good]),
                        maxrss_kib=max((r["maxrss_kib"] for r in good if r["maxrss_kib"]), default=None),
                        cached_mib=median_of([r["cached_kib"] / 1024 for r in good]),
                        dirty_mib=median_of([r["dirty_kib"] / 1024 for r in good]))
                    row["vs_limit"] = row["time"] / limit if limit else None
                else:
                    row["error"] = next((r.get("error") for r in recs if r.get("error")), "failed")
                v = b.verify.get((t.key, wl.name, mode)) or b.verify.get((t.key, wl.name))
                row["verify"] = v
                group.append(row)
                if t.key == base_key and good:
                    base = row["time"]
            for row in group:
                row["vs_ringcp"] = (row["time"] / base) if (base and "time" in row) else None
            rows.extend(group)
    return rows


def verify_cell(v) -> str:
    if v is None:
        return "—"
    if not v["ok"]:
        return "MISMATCH " + ", ".join(f"{k} {n}" for k, n in v["hard"].items())
    cell = "ok" if v["content"] == "full" else f"ok ({v['content']})"
    if v["soft"]:
        cell += "; not kept: " + ", ".join(f"{k} {n}" for k, n in v["soft"].items())
    return cell


def limit_rows(b: Bench, workloads) -> list[dict]:
    out = []
    for wl in workloads:
        lim = [x for x in b.limits if x["workload"] == wl.name and "error" not in x]
        if not lim:
            continue
        row = {"workload": wl.name, "kind": lim[0]["kind"], "runs": len(lim),
               "cold": median_of([x["cold"] for x in lim]), "hot": median_of([x["hot"] for x in lim])}
        if row["kind"] == "fio":
            row.update(read_bw=median_of([x["read_bw"] for x in lim]),
                       write_bw=median_of([x["write_bw"] for x in lim]), bytes=lim[0]["bytes"])
        else:
            row.update(read=median_of([x["read"] for x in lim]),
                       create=median_of([x["create"] for x in lim]),
                       create_nosync=median_of([x["create_nosync"] for x in lim]),
                       parallel=lim[0]["parallel"])
        out.append(row)
    return out


def markdown_report(b: Bench, meta: dict, workloads, rows, lims, missing, warnings,
                    adaptive, paired_lines: list[str] | None = None) -> str:
    L = []
    L.append(f"Command: `{meta['command']}`  ")
    L.append(f"Date: {meta['date']}  ")
    L.append(f"Machine: {meta['machine_line']}  ")
    if b.args.note:
        L.append(f"Note: {b.args.note}  ")
    L.append(f"Workloads ({meta['workdir']}): " + "; ".join(
        f"**{wl.name}** = {wl.spec['what']} ({wl.stats['files']:,} files, "
        f"{wl.stats['dirs']:,} dirs, {wl.stats['symlinks']:,} symlinks, "
        f"{human_bytes(wl.stats['bytes'])})" for wl in workloads))
    bins = meta.get("ringcp_binaries") or []
    if len(bins) > 1 or any(x["label"] for x in bins):
        L[-1] += "  "
        L.append("ringcp binaries: " + "; ".join(
            f"**{x['label'] or 'ringcp'}** = `{x['path']}` (sha256 "
            f"{(x['start'] or {}).get('sha256', '?')}, {(x['start'] or {}).get('mtime', '?')})"
            for x in bins))
    L.append("")
    if paired_lines:
        L.extend(paired_lines)
        if rows:
            L.append("All measurements, per tool (medians over the rounds):")
            L.append("")
    if rows:
        L.append("Median of the runs. **time** = start to end of the final `sync` (data on disk); "
                 "**no sync** = until the tool exits. **tool/ringcp** > 1: ringcp is faster. "
                 "**tool/limit**: time over the machine limit of the workload (table below). "
                 "**busy CPU**: machine-wide CPU seconds during copy + sync (/proc/stat); "
                 "**tool CPU**: the tool's own user+sys; **RSS**: peak RSS of the copying process; "
                 "**Cached/Dirty**: /proc/meminfo right after the copy, before the sync.")
        L.append("")
        L.append("| workload | mode | tool | time (s) | min–max (s) | no sync (s) | tool/ringcp "
                 "| tool/limit | busy CPU (s) | tool CPU (s) | RSS (MiB) | Cached (MiB) "
                 "| Dirty (MiB) | runs | verify |")
        L.append("|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|")
        for r in rows:
            if "time" not in r:
                err = (r.get("error") or "failed").replace("|", "\\|")
                L.append(f"| {r['workload']} | {r['mode']} | {r['label']} | FAILED | — | — | — | — "
                         f"| — | — | — | — | — | 0/{r['attempts']} | {err} |")
                continue
            L.append("| " + " | ".join([
                r["workload"], r["mode"], r["label"].replace("|", "\\|"), fmt_s(r["time"]),
                f"{fmt_s(r['min'])}–{fmt_s(r['max'])}", fmt_s(r["time_nosync"]),
                fmt_ratio(r["vs_ringcp"]), fmt_ratio(r.get("vs_limit")),
                fmt_s(r["busy_cpu"]), fmt_s(r["tool_cpu"]), fmt_mib(r["maxrss_kib"]),
                f"{r['cached_mib']:.0f}", f"{r['dirty_mib']:.0f}",
                str(r["runs"]), verify_cell(r["verify"])]) + " |")
        L.append("")
    if lims:
        L.append("Limits (median of the runs, measured interleaved with the copies):")
        L.append("")
        L.append("| workload | limit | cold (s) | hot (s) | measured |")
        L.append("|---|---|--:|--:|---|")
        for x in lims:
            if x["kind"] == "fio":
                what = "bytes / min(read, write) cold; bytes / write hot"
                det = (f"fio io_uring O_DIRECT bs=1M qd=32: read {x['read_bw'] / 1e6:.0f} MB/s, "
                       f"write {x['write_bw'] / 1e6:.0f} MB/s ({human_bytes(x['bytes'])}, {x['runs']} runs)")
            else:
                what = "max(read, create) cold; create hot"
                det = (f"read {fmt_s(x['read'])} s ({x['parallel']} parallel tar\\|cat, cold); "
                       f"create {fmt_s(x['create'])} s (tar -x from /dev/shm + sync; "
                       f"{fmt_s(x['create_nosync'])} s before the sync); {x['runs']} runs")
            L.append(f"| {x['workload']} | {what} | {fmt_s(x['cold'])} | {fmt_s(x['hot'])} | {det} |")
        L.append("")
    notes = []
    for key, hint in missing:
        notes.append(f"- `{key}` not found, skipped: `{hint}`")
    for w in warnings:
        notes.append(f"- WARNING: {w}")
    failed = [r for r in rows if "time" not in r]
    for r in failed:
        notes.append(f"- {r['label']} failed on {r['workload']} ({r['mode']}): {r.get('error')}")
    if not b.gnu_time:
        notes.append("- GNU time missing (`apt-get install -y time`): RSS is wait4's ru_maxrss and "
                     "includes the harness's own peak")
    loads = [r["load1"] for r in b.records if "load1" in r]
    if loads and max(loads) > 0.5:
        notes.append(f"- 1-min load average before the runs: median {statistics.median(loads):.1f}, "
                     f"max {max(loads):.1f} on {os.cpu_count()} CPUs. It counts tasks waiting on "
                     f"the disk, such as the parallel rm that removes the previous copy, not only "
                     f"other work; busy CPU includes any other work; expect noise")
    if not b.caches_dropped:
        notes.append("- caches could NOT be dropped (not root): cold runs are not cold")
    if notes:
        L.append("Notes:")
        L.append("")
        L.extend(notes)
        L.append("")
    if adaptive:
        L.extend(adaptive_markdown(adaptive))
    return "\n".join(L) + "\n"


def adaptive_markdown(a: dict) -> list[str]:
    if "error" in a:
        return [f"Adaptive study not run: {a['error']}", ""]
    L = [f"Adaptive vs fixed buffer counts ({a['mode']}, median s):", ""]
    counts = a["counts"]
    L.append("| workload | default | auto | " + " | ".join(f"N={n}" for n in counts)
             + " | best fixed | auto/best | auto/default | auto ended at (RINGIO_STATS) |")
    L.append("|---|--:|--:|" + "--:|" * len(counts) + "--:|--:|--:|---|")
    for wl, p in a["phase1"].items():
        best = p["best_fixed"]
        ab = p["auto"] / p["fixed"][best] if (p["auto"] and best) else None
        ad = p["auto"] / p["default"] if (p["auto"] and p["default"]) else None
        L.append(f"| {wl} | {fmt_s(p['default'])} | {fmt_s(p['auto'])} | "
                 + " | ".join(fmt_s(p["fixed"].get(n)) for n in counts)
                 + f" | {best if best else 'FAILED'} | {fmt_ratio(ab)} | {fmt_ratio(ad)} "
                 f"| {p.get('auto_end') or '—'} |")
    L += ["", "Head to head, auto vs the best fixed count (interleaved):", "",
          "| workload | fixed N | auto (s) | fixed (s) | auto/fixed | auto faster in |",
          "|---|--:|--:|--:|--:|--:|"]
    for wl, h in a["h2h"].items():
        if "error" in h:
            L.append(f"| {wl} | — | — | — | — | {h['error']} |")
            continue
        ratio = h["auto_median"] / h["fixed_median"] if (h["auto_median"] and h["fixed_median"]) else None
        L.append(f"| {wl} | {h['fixed']} | {fmt_s(h['auto_median'])} | {fmt_s(h['fixed_median'])} "
                 f"| {fmt_ratio(ratio)} | {h['auto_wins']}/{h['pairs']} |")
    L.append("")
    return L


def make_png(b: Bench, rows, lims, workloads, tools, modes, out: str, title: str) -> bool:
    if not shutil.which("gnuplot"):
        log("gnuplot not found (apt-get install -y gnuplot-nox): no PNG")
        return False
    # Tools with no successful run at all get no bars; the chart says so instead.
    cols = [t for t in tools if any(r["tool"] == t.key and "time" in r for r in rows)]
    failed = [t.label for t in tools if t not in cols and any(r["tool"] == t.key for r in rows)]
    if not cols:
        log("nothing to plot")
        return False
    lim_by = {x["workload"]: x for x in lims}
    header = ["group"] + [t.label for t in cols] + ["limit"]
    data, ratio = [], []
    for wl in workloads:
        for mode in modes:
            got = {r["tool"]: r for r in rows if r["workload"] == wl.name and r["mode"] == mode}
            if not got:
                continue
            lim = lim_by.get(wl.name, {}).get(mode)
            label = f"{wl.name} {mode}"
            vals = [got.get(t.key, {}).get("time") for t in cols]
            data.append([label] + vals + [lim])
            ratio.append([label] + [(v / lim if (v and lim) else None) for v in vals]
                         + [1.0 if lim else None])

    def write(path, table):
        with open(path, "w") as f:
            f.write(" ".join(f'"{h}"' for h in header) + "\n")
            for row in table:
                f.write(f'"{row[0]}" ' + " ".join("?" if v is None else f"{v:.4f}" for v in row[1:]) + "\n")

    with tempfile.TemporaryDirectory(prefix="copybench-plot-") as d:
        dat, rat = os.path.join(d, "time.dat"), os.path.join(d, "ratio.dat")
        write(dat, data)
        write(rat, ratio)
        has_ratio = any(v is not None for row in ratio for v in row[1:-1])
        note = "; ".join(x for x in [b.args.note,
                                     ("not measured (failed): " + ", ".join(failed)) if failed else ""]
                         if x)
        expr = (f"datafile='{dat}'; ratiofile='{rat}'; outfile='{out}'; "
                f"ncols={len(header)}; ngroups={len(data)}; "
                f"charttitle='{title.replace(chr(39), '')}'; note='{note.replace(chr(39), '')}'; "
                f"showratio={1 if has_ratio else 0}")
        r = subprocess.run(["gnuplot", "-e", expr, PLOT_SCRIPT], capture_output=True, text=True)
        if r.returncode != 0:
            log(f"gnuplot failed: {r.stderr.strip()[:500]}")
            return False
    log(f"wrote {out}")
    return True


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="copybench.py",
        description="Benchmark ringcp -a against cp -a, rsync -a, rclone copy and tar|tar "
                    "(see the module docstring: python3 -m pydoc bench/harness/copybench.py).")
    p.add_argument("--quick", action="store_true",
                   help="small (20,000 files) + large (512 MiB), cold, ringcp/cp/tar, 3 runs")
    p.add_argument("--workdir", default="/var/tmp/ringio-bench",
                   help="where the workloads and the destination live (default %(default)s)")
    p.add_argument("--ringcp", action="append", metavar="[LABEL=]PATH",
                   help="ringcp binary (default %s); repeat with labels to measure several "
                        "builds as separate tools, e.g. --ringcp before=/tmp/a --ringcp after=/tmp/b "
                        "(the first is the baseline of the ratios)" % DEFAULT_RINGCP)
    p.add_argument("--ringcp-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for every ringcp run (repeatable)")
    p.add_argument("--runs", type=int, help="runs per tool, workload and mode (5; --quick 3)")
    p.add_argument("--tools", help=f"comma list of {','.join(ALL_TOOLS)} (default all; --quick ringcp,cp,tar)")
    p.add_argument("--workloads", help=f"comma list of {','.join(ALL_WORKLOADS)} "
                                       "(default all; --quick small,large; --adaptive small,large,mixed)")
    p.add_argument("--modes", help="comma list of cold,hot (default cold,hot; --quick and --adaptive cold)")
    p.add_argument("--small-files", type=int, metavar="N",
                   help="files in the small workload (default 100,000; --quick 20,000)")
    p.add_argument("--large-mib", type=int, metavar="N",
                   help="size of the large workload in MiB (default 2048; --quick 512)")
    p.add_argument("--verify", choices=["full", "sample", "none"], default="full",
                   help="content check of each tool's first copy (default %(default)s)")
    p.add_argument("--no-limits", action="store_true", help="skip the fio and tree-bound measurements")
    p.add_argument("--timeout", type=float, default=3600, help="kill a tool after this many seconds")
    p.add_argument("--adaptive", action="store_true",
                   help="study ringcp --buffers=N vs --buffers=auto instead of comparing tools")
    p.add_argument("--buffer-counts", default="2,4,8,16,32,64", help="fixed counts for --adaptive")
    p.add_argument("--h2h-runs", type=int, default=None,
                   help="head-to-head rounds, auto vs best fixed (default max(5, runs))")
    p.add_argument("--paired", action="store_true",
                   help="compare the --ringcp binaries (2 or more) in paired, interleaved rounds "
                        "and judge every one after the first against the first (default: "
                        "small,large,mixed, cold,hot, 10 rounds, no limits)")
    p.add_argument("--rounds", type=int, help="--paired: rounds (default 10)")
    p.add_argument("--wall-tolerance", type=float, default=0.05, metavar="F",
                   help="--paired: wall PASS when median ratio <= 1+F (default %(default)s)")
    p.add_argument("--cpu-tolerance", type=float, default=0.03, metavar="F",
                   help="--paired: CPU PASS when median ratio <= 1+F (default %(default)s) ...")
    p.add_argument("--cpu-floor", type=float, default=0.0, metavar="S",
                   help="... or the CPU median is at most S seconds above the baseline's "
                        "(default %(default)s: no such allowance)")
    p.add_argument("--json", help="write all measurements as JSON")
    p.add_argument("--markdown", help="write the Markdown report")
    p.add_argument("--png", help="write a bar chart (gnuplot)")
    p.add_argument("--note", default="",
                   help="a line of text for the report and the chart (e.g. 'ringcp not yet measured')")
    p.add_argument("--clean", action="store_true", help="remove the work directory and exit")
    a = p.parse_args(argv)
    if a.paired:
        if a.adaptive:
            p.error("--paired and --adaptive do not go together")
        if a.rounds is not None:
            a.runs = a.rounds
        elif a.runs is None:
            a.runs = 10
        a.rounds = a.runs
        if a.tools is None:
            a.tools = "ringcp"
        if a.workloads is None:
            a.workloads = "small,large,mixed"
        if a.modes is None:
            a.modes = "cold,hot"
        a.no_limits = True   # the comparison is between the binaries, not against the device
    elif a.rounds is not None:
        p.error("--rounds goes with --paired (otherwise: --runs)")
    if a.runs is None:
        a.runs = 3 if (a.quick or a.adaptive) else 5
    if a.runs < 1:
        p.error("--runs must be >= 1")
    if a.tools is None:
        a.tools = "ringcp,cp,tar" if a.quick else ",".join(ALL_TOOLS)
    if a.workloads is None:
        a.workloads = ("small,large" if a.quick else
                       "small,large,mixed" if a.adaptive else ",".join(ALL_WORKLOADS))
    if a.modes is None:
        a.modes = "cold" if (a.quick or a.adaptive) else "cold,hot"
    a.h2h_runs = max(5, a.runs) if a.h2h_runs is None else a.h2h_runs
    for m in a.modes.split(","):
        if m not in ("cold", "hot"):
            p.error(f"unknown mode {m!r}")
    return a


def check_space(workdir: str, specs: list[dict]) -> None:
    need = 0
    for s in specs:
        marker = os.path.join(workdir, "src", s["id"] + ".spec.json")
        if not os.path.exists(marker):
            need += expected_bytes(s)
    need += max(expected_bytes(s) for s in specs) + GiB
    st = os.statvfs(workdir)
    free = st.f_bavail * st.f_frsize
    if free < need:
        raise SystemExit(f"copybench: {workdir} has {human_bytes(free)} free, needs about "
                         f"{human_bytes(need)} for these workloads and one copy")
    files = sum(s.get("files", 20_000) for s in specs) * 2
    if st.f_favail and st.f_favail < files:
        raise SystemExit(f"copybench: {workdir} has only {st.f_favail} free inodes, needs ~{files}")


def main(argv=None) -> int:
    args = parse_args(argv)
    workdir = os.path.abspath(args.workdir)
    if workdir in ("/", os.path.expanduser("~")) or len(workdir) < 5:
        raise SystemExit(f"copybench: refusing work directory {workdir}")
    if args.clean:
        if os.path.exists(os.path.join(workdir, WORKDIR_MARK)):
            rm_rf_parallel(workdir)
            log(f"removed {workdir}")
        elif os.path.exists(workdir):
            raise SystemExit(f"copybench: {workdir} has no {WORKDIR_MARK}: not removing it")
        return 0
    if os.geteuid() != 0:
        log("WARNING: not root: caches cannot be dropped (run as root for meaningful numbers)")
    if os.path.exists(workdir) and os.listdir(workdir) and \
            not os.path.exists(os.path.join(workdir, WORKDIR_MARK)):
        raise SystemExit(f"copybench: {workdir} exists and is not a copybench work directory")
    os.makedirs(os.path.join(workdir, "src"), exist_ok=True)
    open(os.path.join(workdir, WORKDIR_MARK), "a").close()

    wl_names = [w.strip() for w in args.workloads.split(",") if w.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    specs = [workload_spec(n, args.quick, args.small_files, args.large_mib) for n in wl_names]
    binaries = parse_ringcp_specs(args.ringcp)
    ringcp_path = binaries[0][1]
    if args.adaptive and len(binaries) > 1:
        raise SystemExit("copybench: --adaptive takes one ringcp binary")

    tools, missing, warnings = [], [], []
    if not args.adaptive:
        for key in [t.strip() for t in args.tools.split(",") if t.strip()]:
            for label, path in (binaries if key.split()[0] == "ringcp" else [(None, ringcp_path)]):
                t = make_tool(key, path, args.ringcp_arg, label)
                if t.available():
                    tools.append(t)
                else:
                    log(f"{t.label}: not found ({t.exe}), skipped -- {t.hint}")
                    missing.append((t.key, t.hint))
    if args.paired and (missing or len(tools) < 2):
        raise SystemExit("copybench: --paired needs at least two tools that run, e.g. "
                         "--ringcp before=PATH --ringcp after=PATH"
                         + (f" (missing: {', '.join(k for k, _ in missing)})" if missing else ""))
    if not os.access(GNU_TIME, os.X_OK):
        log("GNU time not found (apt-get install -y time): peak RSS will include the harness's own")
    if not shutil.which("fio") and any(s["kind"] == "bytes" for s in specs) and not args.no_limits:
        log("fio not found (apt-get install -y fio): no device limit for large/medium")

    check_space(workdir, specs)
    b = Bench(args, workdir)
    started = time.time()
    meta = {"command": "python3 " + " ".join(shlex.quote(x) for x in
                                             [os.path.relpath(__file__, os.getcwd())] + sys.argv[1:]),
            "date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            "workdir": workdir, "args": vars(args)}
    meta["machine"] = machine_info(workdir)
    meta["machine_line"] = machine_line(meta["machine"])
    meta["versions"] = {t.key: first_line([t.exe, "--version"] if t.key != "rclone"
                                          else ["rclone", "version"]) for t in tools}
    meta["versions"]["fio"] = first_line(["fio", "--version"]) if shutil.which("fio") else None
    meta["repo_head"] = first_line(["git", "-C", REPO, "describe", "--always", "--dirty"])
    meta["ringcp_binaries"] = [{"key": ringcp_key(label), "label": label, "path": path,
                                "start": file_identity(path)} for label, path in binaries]
    meta["ringcp_binary_start"] = meta["ringcp_binaries"][0]["start"]
    by_hash = {}
    for x in meta["ringcp_binaries"]:
        if x["start"]:
            by_hash.setdefault(x["start"]["sha256"], []).append(x["label"] or "ringcp")
    identical = [", ".join(v) for v in by_hash.values() if len(v) > 1]
    for same in identical:
        log(f"note: {same} are the same binary (same SHA-256)")
    meta["load1_start"] = loadavg1()
    log(f"machine: {meta['machine_line']}; load average {meta['load1_start']:.2f}")
    if meta["load1_start"] > 0.5 * (os.cpu_count() or 1):
        log("WARNING: the machine is busy: the numbers will be noisy")

    workloads = []
    for s in specs:
        wl = Workload(s, workdir)
        wl.ensure(want_hash=args.verify != "none")
        workloads.append(wl)

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    adaptive = None
    interrupted = False
    try:
        if args.adaptive:
            adaptive = run_adaptive(b, workloads, ringcp_path, args.ringcp_arg, modes,
                                    args.runs, args.h2h_runs)
            tools = [make_tool(v, ringcp_path, args.ringcp_arg) for v in
                     ["ringcp", "ringcp --buffers=auto"] +
                     [f"ringcp --buffers={n}" for n in args.buffer_counts.split(",")]]
            modes = modes[:1]
        elif args.paired:
            run_paired(b, workloads, tools, modes, args.rounds)
        else:
            run_compare(b, workloads, tools, modes, args.runs)
    except KeyboardInterrupt:
        interrupted = True
        if b.current is not None:
            _kill_group(b.current.pid)
        log("interrupted: reporting what was measured")
        for wl in workloads:
            wl.drop_tree_bound()
        b.cleanup_dst()

    for x in meta["ringcp_binaries"]:
        x["end"] = file_identity(x["path"])
        if x["start"] != x["end"]:
            name = x["label"] or "ringcp"
            log(f"WARNING: the ringcp binary {name} ({x['path']}) changed during the benchmark (rebuilt?)")
            warnings.append(f"the ringcp binary {name} ({x['path']}) changed during the run "
                            f"(rebuilt?): its numbers mix builds")
    meta["ringcp_binary_end"] = meta["ringcp_binaries"][0]["end"]
    rows = summarize(b, workloads, tools, modes)
    lims = limit_rows(b, workloads)
    elapsed = time.time() - started
    meta["elapsed_s"] = round(elapsed, 1)
    meta["interrupted"] = interrupted
    paired = None
    paired_lines = None
    if args.paired:
        prow = paired_summary(b.records, [(t.key, t.label) for t in tools],
                              [wl.name for wl in workloads], modes, b.verify,
                              args.wall_tolerance, args.cpu_tolerance, args.cpu_floor)
        paired = {"rounds": args.rounds, "baseline": tools[0].key,
                  "wall_tolerance": args.wall_tolerance, "cpu_tolerance": args.cpu_tolerance,
                  "cpu_floor": args.cpu_floor, "rows": prow, "cell_seconds": b.cell_seconds,
                  "settle_seconds": b.settle_seconds,
                  "identical_binaries": identical,
                  "pass": (all(r["pass"] for r in prow) and bool(prow)
                           and not interrupted)}
        paired_lines = paired_markdown(prow, args.rounds, b.cell_seconds, identical,
                                       b.settle_seconds)
    md = markdown_report(b, meta, workloads, rows, lims, missing, warnings, adaptive, paired_lines)
    print(md)
    log(f"total {elapsed:.0f} s")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(md)
        log(f"wrote {args.markdown}")
    if args.json:
        doc = {"meta": meta,
               "workloads": {wl.name: {"spec": wl.spec, "stats": wl.stats, "path": wl.path}
                             for wl in workloads},
               "summary": rows, "limits_summary": lims, "limits": b.limits, "runs": b.records,
               "verify": {"@".join(k): v for k, v in b.verify.items()},
               "adaptive": adaptive, "paired": paired, "missing": missing, "warnings": warnings}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1, default=str)
        log(f"wrote {args.json}")
    if args.png:
        title = (f"copybench {'--quick ' if args.quick else ''}{meta['date']}: median time to data on disk"
                 if not args.adaptive else "copybench --adaptive: ringcp buffer counts")
        make_png(b, rows, lims, workloads, tools, modes, os.path.abspath(args.png), title)
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
