"""Tests of copybench (python3 -m unittest, run by ctest): its helpers that
remove files must never reach outside the tree they are given; the --paired
comparison's pure parts (binary specs, order, medians, ratios, verdicts, table)
compute what they claim.  No copies are run."""
import contextlib
import io
import os
import sys
import tempfile
import unittest
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import copybench  # noqa: E402


class RmRfParallelTest(unittest.TestCase):
    def setUp(self):
        self.top = tempfile.mkdtemp(prefix="copybench-test-")
        self.addCleanup(lambda: copybench.rm_rf(self.top))
        self.keep = os.path.join(self.top, "keep")
        os.mkdir(self.keep)
        with open(os.path.join(self.keep, "file"), "w") as f:
            f.write("kept")

    def make_tree(self, name: str, dirs: int = 30, files: int = 7) -> str:
        root = os.path.join(self.top, name)
        for d in range(dirs):
            os.makedirs(os.path.join(root, f"d{d}", "sub"))
            for i in range(files):
                with open(os.path.join(root, f"d{d}", "sub", f"f{i}"), "w") as f:
                    f.write("x")
        # A symlink out of the tree: removed as a link, its target kept.
        os.symlink(self.keep, os.path.join(root, "link-out"))
        return root

    def test_removes_the_tree_and_nothing_beside_it(self):
        root = self.make_tree("victim")
        sibling = self.make_tree("victim-sibling", dirs=2)
        copybench.rm_rf_parallel(root + "/", jobs=4)
        self.assertFalse(os.path.lexists(root))
        self.assertEqual(os.listdir(self.keep), ["file"])
        self.assertEqual(len(os.listdir(sibling)), 3)

    def test_refuses_a_piece_outside_the_tree_before_removing_anything(self):
        root = self.make_tree("victim")
        with mock.patch.object(copybench, "split_tree", return_value=["d0", "../keep"]):
            with self.assertRaises(RuntimeError):
                copybench.rm_rf_parallel(root, jobs=4)
        self.assertTrue(os.path.isdir(os.path.join(root, "d0")))
        self.assertEqual(os.listdir(self.keep), ["file"])

    def test_paths_go_to_rm_as_arguments(self):
        # Each rm receives whole paths in argv, never a list on a pipe that a
        # killed parent could cut short.
        root = self.make_tree("victim", dirs=3)
        started = []
        real_popen = copybench.subprocess.Popen

        def spy(argv, *args, **kwargs):
            started.append((argv, kwargs))
            return real_popen(argv, *args, **kwargs)

        with mock.patch.object(copybench.subprocess, "Popen", side_effect=spy):
            copybench.rm_rf_parallel(root, jobs=2)
        self.assertTrue(started)
        for argv, kwargs in started:
            self.assertEqual(argv[:4], ["rm", "-rf", "--one-file-system", "--"])
            self.assertNotIn("stdin", kwargs)
            for path in argv[4:]:  # the last rm removes what is left: root
                self.assertTrue(path == root or path.startswith(root + os.sep), path)
        self.assertGreater(len(started), 1)
        self.assertFalse(os.path.lexists(root))


def rec(run, t_total, tool_cpu, t_copy=None, tool="ringcp:before", workload="small",
        mode="cold", ok=True):
    """A run record as Bench.measure() leaves it in --paired mode."""
    return {"phase": "paired", "tool": tool, "workload": workload, "mode": mode, "run": run,
            "ok": ok, "t_total": t_total, "t_copy": t_total if t_copy is None else t_copy,
            "tool_cpu": tool_cpu}


class RingcpSpecsTest(unittest.TestCase):
    def test_default_is_the_project_build_unlabelled(self):
        self.assertEqual(copybench.parse_ringcp_specs(None, "/b/ringcp"), [(None, "/b/ringcp")])
        self.assertEqual(copybench.parse_ringcp_specs([], "/b/ringcp"), [(None, "/b/ringcp")])

    def test_labels_and_paths(self):
        got = copybench.parse_ringcp_specs(["before=/x/a", "after=/y/b"])
        self.assertEqual(got, [("before", "/x/a"), ("after", "/y/b")])
        self.assertEqual(copybench.parse_ringcp_specs(["/x/a"]), [(None, "/x/a")])

    def test_an_existing_file_with_an_equals_sign_is_a_path(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "a=b")
            open(path, "w").close()
            self.assertEqual(copybench.parse_ringcp_specs([path]), [(None, path)])

    def test_several_binaries_need_distinct_labels(self):
        with self.assertRaises(SystemExit):
            copybench.parse_ringcp_specs(["/x/a", "after=/y/b"])
        with self.assertRaises(SystemExit):
            copybench.parse_ringcp_specs(["a=/x/a", "a=/y/b"])

    def test_labelled_tools_have_their_own_key_and_binary(self):
        t = copybench.make_tool("ringcp --buffers=8", "/y/b", ["-v"], "after")
        self.assertEqual(t.key, "ringcp:after --buffers=8")
        self.assertEqual(t.label, "ringcp -a (after) --buffers=8")
        self.assertEqual(t.argv("S", "D"), ["/y/b", "-a", "-v", "--buffers=8", "S/.", "D"])
        self.assertTrue(t.is_ringcp)
        self.assertEqual(copybench.make_tool("ringcp", "/x/a", []).key, "ringcp")


class PairedArgsTest(unittest.TestCase):
    def test_paired_defaults(self):
        a = copybench.parse_args(["--paired", "--ringcp", "a=/x", "--ringcp", "b=/y"])
        self.assertEqual((a.rounds, a.runs, a.tools, a.workloads, a.modes, a.no_limits),
                         (10, 10, "ringcp", "small,large,mixed", "cold,hot", True))
        a = copybench.parse_args(["--paired", "--rounds", "2", "--workloads", "small"])
        self.assertEqual((a.rounds, a.runs, a.workloads), (2, 2, "small"))

    def test_rounds_without_paired_is_an_error(self):
        with contextlib.redirect_stderr(io.StringIO()), self.assertRaises(SystemExit):
            copybench.parse_args(["--rounds", "3"])
        with contextlib.redirect_stderr(io.StringIO()), self.assertRaises(SystemExit):
            copybench.parse_args(["--paired", "--adaptive"])


class PairedOrderTest(unittest.TestCase):
    def test_two_tools_alternate_within_and_across_rounds(self):
        firsts = {}
        for rnd in range(1, 11):
            orders = [copybench.paired_order(["A", "B"], rnd, cell) for cell in range(6)]
            for cell, order in enumerate(orders):
                self.assertEqual(sorted(order), ["A", "B"])
                firsts.setdefault(cell, []).append(order[0])
            # consecutive cells of a round flip the order: ...AB BA AB...
            for x, y in zip(orders, orders[1:]):
                self.assertEqual(x, y[::-1])
        for cell, f in firsts.items():
            self.assertEqual(f.count("A"), 5, cell)

    def test_three_tools_each_first_equally_often(self):
        firsts = [copybench.paired_order(["A", "B", "C"], rnd, 0)[0] for rnd in range(1, 10)]
        self.assertEqual([firsts.count(x) for x in "ABC"], [3, 3, 3])


class ComparePairTest(unittest.TestCase):
    def runs(self, walls, cpus, **kw):
        return {i + 1: rec(i + 1, w, c, **kw) for i, (w, c) in enumerate(zip(walls, cpus))}

    def test_medians_ratios_and_paired_ratios(self):
        base = self.runs([10, 11, 12], [1.0, 1.0, 1.0])
        other = self.runs([10.2, 12, 11], [0.9, 1.0, 1.1])
        r = copybench.compare_pair(base, other)
        self.assertEqual((r["base_wall"], r["wall"]), (11, 11))
        self.assertAlmostEqual(r["wall_ratio"], 1.0)
        # per round: 1.02, 12/11, 11/12 -> median 1.02
        self.assertAlmostEqual(r["paired_wall_ratio"], 1.02)
        self.assertAlmostEqual(r["paired_wall_min"], 11 / 12)
        self.assertAlmostEqual(r["paired_wall_max"], 12 / 11)
        self.assertEqual((r["faster_rounds"], r["pairs"]), (1, 3))
        self.assertAlmostEqual(r["cpu_ratio"], 1.0)
        self.assertTrue(r["wall_pass"] and r["cpu_pass"])

    def test_paired_ratios_only_pair_the_same_round(self):
        base = {1: rec(1, 10, 1), 2: rec(2, 20, 1), 4: rec(4, 40, 1)}
        other = {1: rec(1, 11, 1), 3: rec(3, 99, 1), 4: rec(4, 44, 1)}
        self.assertEqual([round(x, 6) for x in copybench.paired_ratios(base, other, "t_total")],
                         [1.1, 1.1])

    def test_wall_threshold(self):
        base = self.runs([10, 10, 10], [1, 1, 1])
        self.assertTrue(copybench.compare_pair(base, self.runs([10.5] * 3, [1] * 3))["wall_pass"])
        self.assertFalse(copybench.compare_pair(base, self.runs([10.6] * 3, [1] * 3))["wall_pass"])
        # faster is never a failure
        self.assertTrue(copybench.compare_pair(base, self.runs([5] * 3, [1] * 3))["wall_pass"])
        self.assertFalse(copybench.compare_pair(base, self.runs([10.6] * 3, [1] * 3),
                                                wall_tol=0.05)["wall_pass"])
        self.assertTrue(copybench.compare_pair(base, self.runs([10.6] * 3, [1] * 3),
                                               wall_tol=0.10)["wall_pass"])

    def test_cpu_threshold_and_floor(self):
        base = self.runs([10] * 3, [1.0] * 3)
        self.assertTrue(copybench.compare_pair(base, self.runs([10] * 3, [1.03] * 3))["cpu_pass"])
        self.assertFalse(copybench.compare_pair(base, self.runs([10] * 3, [1.05] * 3))["cpu_pass"])
        # tiny CPU times: 0.040 -> 0.048 s is +20 %: FAIL, unless a 10 ms floor is given
        small = self.runs([1] * 3, [0.040] * 3)
        r = copybench.compare_pair(small, self.runs([1] * 3, [0.048] * 3))
        self.assertFalse(r["cpu_pass"])
        self.assertAlmostEqual(r["cpu_ratio"], 1.2)
        self.assertTrue(copybench.compare_pair(small, self.runs([1] * 3, [0.048] * 3),
                                               cpu_floor=0.01)["cpu_pass"])
        self.assertFalse(copybench.compare_pair(small, self.runs([1] * 3, [0.051] * 3),
                                                cpu_floor=0.01)["cpu_pass"])

    def test_a_failed_tool_fails_and_a_failed_baseline_is_undecided(self):
        base = self.runs([10] * 3, [1] * 3)
        r = copybench.compare_pair(base, self.runs([9] * 2, [1] * 2), failed=True)
        self.assertFalse(r["wall_pass"] or r["cpu_pass"])
        r = copybench.compare_pair(base, {})
        self.assertFalse(r["wall_pass"])
        r = copybench.compare_pair({}, self.runs([9] * 3, [1] * 3))
        self.assertIsNone(r["wall_pass"])
        self.assertIsNone(r["wall_ratio"])


class PairedSummaryTest(unittest.TestCase):
    TOOLS = [("ringcp:before", "ringcp -a (before)"), ("ringcp:after", "ringcp -a (after)")]

    def records(self, after_small_hot=1.0):
        out = []
        for rnd in (1, 2, 3):
            for wl in ("small", "large"):
                for mode in ("cold", "hot"):
                    out.append(rec(rnd, 2.0 + rnd / 100, 1.0, tool="ringcp:before",
                                   workload=wl, mode=mode))
                    f = after_small_hot if (wl, mode) == ("small", "hot") else 1.0
                    out.append(rec(rnd, (2.0 + rnd / 100) * f, 1.0, tool="ringcp:after",
                                   workload=wl, mode=mode))
        # records of other phases are ignored
        out.append(dict(rec(1, 100, 100, tool="ringcp:after"), phase="h2h"))
        out.append(dict(rec(0, 100, 100, tool="ringcp:before"), phase="settle"))
        return out

    def test_one_row_per_workload_and_mode(self):
        ok = {"ok": True, "content": "full", "soft": {}, "hard": {}}
        verify = {(k, wl, m): ok for k, _ in self.TOOLS for wl in ("small", "large")
                  for m in ("cold", "hot")}
        rows = copybench.paired_summary(self.records(), self.TOOLS, ["small", "large"],
                                        ["cold", "hot"], verify)
        self.assertEqual([(r["workload"], r["mode"]) for r in rows],
                         [("small", "cold"), ("small", "hot"), ("large", "cold"), ("large", "hot")])
        for r in rows:
            self.assertEqual((r["pairs"], r["runs"], r["base_runs"]), (3, 3, 3))
            self.assertAlmostEqual(r["wall_ratio"], 1.0)
            self.assertTrue(r["pass"])
        md = "\n".join(copybench.paired_markdown(rows, 3, identical=["before, after"]))
        self.assertIn("Verdict: PASS (all 4 rows)", md)
        self.assertIn("same binary", md)
        self.assertEqual(md.count("| PASS | PASS |"), 4)
        self.assertNotIn(" ms above", md)   # no CPU floor by default

    def test_a_slower_cell_fails_and_is_named(self):
        rows = copybench.paired_summary(self.records(after_small_hot=1.08), self.TOOLS,
                                        ["small", "large"], ["cold", "hot"])
        bad = [r for r in rows if not r["pass"]]
        self.assertEqual([(r["workload"], r["mode"]) for r in bad], [("small", "hot")])
        self.assertAlmostEqual(bad[0]["wall_ratio"], 1.08)
        self.assertAlmostEqual(bad[0]["paired_wall_ratio"], 1.08)
        self.assertTrue(bad[0]["cpu_pass"])
        md = "\n".join(copybench.paired_markdown(rows, 3))
        self.assertIn("Verdict: **FAIL** -- small hot: wall", md)
        self.assertIn("| 1.080 |", md)

    def test_a_copy_mismatch_fails(self):
        bad = {"ok": False, "content": "full", "soft": {}, "hard": {"content": 1}}
        rows = copybench.paired_summary(self.records(), self.TOOLS, ["small"], ["cold"],
                                        {("ringcp:after", "small", "cold"): bad})
        self.assertFalse(rows[0]["pass"])
        self.assertTrue(rows[0]["wall_pass"])
        self.assertIn("MISMATCH", "\n".join(copybench.paired_markdown(rows, 3)))

    def test_seconds_per_round(self):
        cells = [{"round": r, "workload": wl, "mode": m, "seconds": s}
                 for r, scale in ((1, 1), (2, 2), (3, 3))
                 for wl, m, s in (("small", "cold", 10 * scale), ("small", "hot", 5 * scale),
                                  ("large", "cold", 2 * scale))]
        per_wl, whole = copybench.round_seconds(cells)
        self.assertEqual(per_wl, {"small": 30, "large": 4})
        self.assertEqual(whole, 34)


if __name__ == "__main__":
    unittest.main()
