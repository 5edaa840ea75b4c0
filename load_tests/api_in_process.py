"""What one ``GET /v1/customers/{id}`` costs the API's ASGI app itself, without HTTP or a
client: the app called directly, one request at a time, against the benchmark's Redis.

The one place in the benchmarks that imports the API: it measures the app that ``crm api``
serves (``api.main.create_app``, the factory uvicorn runs), in this process.
"""

from __future__ import annotations

import asyncio
import time

from api.main import create_app
from api.settings import ApiSettings
from stream.settings import Settings


def in_process_cost(settings: Settings, key: str, ids: list[str], requests: int = 2000,
                    ) -> tuple[float, float]:
    """(wall µs, CPU µs) per ``GET /v1/customers/{id}`` called on the ASGI app directly, one
    at a time, against the benchmark's Redis: the app's own cost without HTTP or a client."""

    async def run() -> tuple[float, float]:
        app = create_app(settings, ApiSettings())  # its producer is made on first use: never
        headers = [(b"host", b"bench"), (b"authorization", f"Bearer {key}".encode())]
        failures: list[str] = []

        async def call(index: int) -> None:
            path = f"/v1/customers/{ids[index % len(ids)]}"
            scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                     "method": "GET", "scheme": "http", "path": path,
                     "raw_path": path.encode(), "query_string": b"", "root_path": "",
                     "headers": headers, "client": ("127.0.0.1", 1),
                     "server": ("127.0.0.1", 80), "state": {}}

            async def receive() -> dict[str, object]:
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message: dict[str, object]) -> None:
                if message["type"] == "http.response.start" and message["status"] != 200:
                    failures.append(f"{message['status']} on {path}")

            await app(scope, receive, send)  # type: ignore[arg-type]

        for index in range(200):
            await call(index)
        wall, cpu = time.perf_counter(), time.process_time()
        for index in range(requests):
            await call(index)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        await app.state.crm.redis.aclose()
        if failures:
            raise SystemExit(f"{len(failures)} in-process requests failed: {failures[:5]}")
        return wall / requests * 1e6, cpu / requests * 1e6

    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(run())
    return uvloop.run(run())

