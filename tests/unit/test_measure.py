"""The benchmarks' measuring helpers find what they measure."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import time

from load_tests.measure import spawned_children


def test_spawned_children_are_the_multiprocessing_children_only() -> None:
    """The alert benchmark counts the workers' recommender processes by this."""
    spawned = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(30,))
    spawned.start()
    plain = subprocess.Popen(["sleep", "30"])
    try:
        found = spawned_children([os.getpid()])
        assert spawned.pid in found
        assert plain.pid not in found
    finally:
        spawned.kill()
        plain.kill()
        spawned.join()
        plain.wait()
