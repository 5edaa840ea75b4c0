"""``crm dev``: up with one command, healthy within 60 s, and Ctrl-C leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from stream.processes import free_port
from tests.helpers import wait_for


def descendants(pid: int) -> set[int]:
    """Every living process below ``pid``, found by walking /proc parent links."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_dev_stack_starts_answers_and_stops_cleanly(tmp_path: Path) -> None:
    """Verify that crm dev serves /healthz within 60 s and SIGINT stops every process."""
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("CRM_KAFKA_BOOTSTRAP", "CRM_REDIS_URL")}
    env["CRM_SESSION_TIMEOUT_S"] = "6"
    log = (tmp_path / "dev.out").open("wb")
    dev = subprocess.Popen(
        [sys.executable, "-m", "crm", "dev", "--port", str(port), "--work-dir",
         str(tmp_path / "crm"), "--simulate", "50"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    started = time.monotonic()
    try:
        wait_for(lambda: healthy(f"http://127.0.0.1:{port}/healthz"), timeout=60,
                 what="/healthz to answer")
        elapsed = time.monotonic() - started
        dev_json = tmp_path / "crm" / "dev.json"
        wait_for(dev_json.exists, timeout=30, what="crm dev to write dev.json")
        info = json.loads(dev_json.read_text())
        assert info["api_key"] and info["dashboard_url"].endswith(info["api_key"])
        assert info["api_url"] == f"http://127.0.0.1:{port}"
        assert info["kafka_bootstrap"].startswith("127.0.0.1:")
        assert info["redis_url"].startswith("redis://127.0.0.1:")
        children = wait_for(lambda: descendants(dev.pid) if len(descendants(dev.pid)) >= 4
                            else None, timeout=30, what="broker, redis, worker, api, simulator")
        print(f"healthy after {elapsed:.1f}s with {len(children)} child processes")
    finally:
        dev.send_signal(signal.SIGINT)
        dev.wait(60)
        log.close()
    assert dev.returncode == 0, (tmp_path / "dev.out").read_text()[-3000:]
    leftovers = wait_for(lambda: not any(alive(pid) for pid in children) or None, timeout=10,
                         what="every child to exit")
    assert leftovers
    output = (tmp_path / "dev.out").read_text()
    assert "stopped." in output
