"""Background children of a worker step out of its way, whatever its scheduling."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

CHILD = """
import os
from stream.processes import run_in_background
before = os.nice(0)
run_in_background(7)
print(os.sched_getscheduler(0) == os.SCHED_OTHER, os.nice(0) - before)
"""


def _run_child(prefix: list[str]) -> list[str]:
    return subprocess.run([*prefix, sys.executable, "-c", CHILD], capture_output=True,
                          text=True, check=True).stdout.split()


def test_a_background_child_runs_niced_under_the_default_policy() -> None:
    assert _run_child([]) == ["True", "7"]


@pytest.mark.skipif(not hasattr(os, "sched_setscheduler"), reason="Linux scheduling")
def test_a_background_child_of_a_real_time_worker_drops_real_time_priority() -> None:
    chrt = shutil.which("chrt")
    if chrt is None or subprocess.run([chrt, "--rr", "5", "true"]).returncode != 0:
        pytest.skip("real-time priority is not permitted here (root or CAP_SYS_NICE)")
    assert _run_child([chrt, "--rr", "5"]) == ["True", "7"]
