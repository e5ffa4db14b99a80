"""Tests of copybench's helpers that remove files: they must never reach
outside the tree they are given (python3 -m unittest, run by ctest)."""
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


if __name__ == "__main__":
    unittest.main()
