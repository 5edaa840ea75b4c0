"""Shared pieces of the API integration tests: the API as its own process (uvicorn).

Nothing here is a test; the test modules import the ``api_server`` fixture.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from api.keys import create_key_sync
from stream.processes import ManagedProcess, free_port
from stream.settings import Settings
from tests.helpers import settings_env


@dataclass
class ApiServer:
    url: str
    key: str
    process: ManagedProcess

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=10, **kwargs)


def start_api(settings: Settings, log_path: Path, **env: str) -> ApiServer:
    port = free_port()
    process = ManagedProcess(
        name="api",
        argv=[sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory",
              "--host", "127.0.0.1", "--port", str(port), "--timeout-graceful-shutdown", "3",
              "--log-level", "warning"],
        log_path=log_path,
        env={**settings_env(settings), **env},
    ).start()
    url = f"http://127.0.0.1:{port}"
    process.wait_until(lambda: httpx.get(f"{url}/healthz", timeout=1).status_code == 200,
                       timeout=30, what="/healthz")
    key = create_key_sync(settings, tenant="default", scopes=("read", "ingest", "admin"),
                          name="test", rate_limit=0)
    return ApiServer(url=url, key=key, process=process)


@pytest.fixture
def api_server(settings: Settings, tmp_path: Path) -> Iterator[ApiServer]:
    server = start_api(settings, tmp_path / "api.log")
    yield server
    server.process.stop(timeout=10)


