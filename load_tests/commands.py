"""The product as the benchmarks use it: ``crm`` commands in child processes, as an operator
runs them (the benchmarks import no worker or API internals to start or provision anything).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from load_tests.scheduling import realtime_argv
from stream.processes import ManagedProcess
from stream.settings import Settings


def crm_argv(args: list[str], priority: int = 0) -> list[str]:
    """The command line of ``crm ARGS`` in this interpreter, at real-time ``priority`` if any.

    >>> crm_argv(["worker"], priority=10)[:3] + crm_argv(["worker"])[1:]
    ['chrt', '--rr', '10', '-m', 'crm', 'worker']
    """
    return [*realtime_argv(priority), sys.executable, "-m", "crm", *args]


def start_crm(name: str, args: list[str], *, env: dict[str, str], work: Path,
              priority: int = 0) -> ManagedProcess:
    """Start a long-running ``crm`` command (``worker``, ``api``, ``simulate``), its log in
    ``work/NAME.log``."""
    return ManagedProcess(name=name, argv=crm_argv(args, priority), log_path=work / f"{name}.log",
                          env=env).start()


def run_crm(args: list[str], settings: Settings) -> str:
    """Run a ``crm`` command to its end with ``settings`` as its environment; its output."""
    done = subprocess.run(crm_argv(args), capture_output=True, text=True, timeout=120,
                          env={**os.environ, **settings.to_env()})
    if done.returncode:
        raise SystemExit(f"crm {' '.join(args)} failed: {done.stderr[-800:]}")
    return done.stdout


def create_topics(settings: Settings) -> None:
    """``crm topics create``: every topic under the settings' prefix."""
    run_crm(["topics", "create"], settings)


def create_key(settings: Settings, *, tenant: str, scopes: str, name: str,
               rate_limit: int) -> str:
    """``crm keys create``: a new API key (printed once by the command)."""
    output = run_crm(["keys", "create", "--tenant", tenant, "--scopes", scopes, "--name", name,
                      "--rate-limit", str(rate_limit)], settings)
    return output.strip().splitlines()[-1]
