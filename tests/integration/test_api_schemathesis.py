"""Schemathesis against /openapi.json of a running API: no 5xx, answers match the schema.

Bounded: a few dozen generated requests per operation, about a minute in all. The live alert
stream never ends by design, so it is left out (tests/integration/test_api_sse.py covers it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from stream.settings import Settings
from stream.topics import create_topics
from tests.integration.support import ApiServer, start_api


@pytest.fixture(scope="module")
def schema_server(kafka_bootstrap: str, redis_url: str,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    test_id = uuid.uuid4().hex[:8]
    settings = Settings(kafka_bootstrap=kafka_bootstrap, redis_url=redis_url,
                        topic_prefix=f"s{test_id}.", partitions=3)
    redis.Redis.from_url(redis_url).flushdb()
    create_topics(settings)
    server = start_api(settings, tmp_path_factory.mktemp("schemathesis") / "api.log")
    yield server
    server.process.stop(timeout=10)


CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_headers_conformance,response_schema_conformance")


def test_api_conforms_to_its_schema(schema_server: ApiServer, tmp_path: Path) -> None:
    """Verify that no generated request makes the API fail or answer off-schema."""
    command = [
        str(Path(sys.executable).parent / "st"), "run", f"{schema_server.url}/openapi.json",
        "--header", f"Authorization: Bearer {schema_server.key}",
        "--checks", CHECKS, "--exclude-path", "/v1/alerts/stream",
        # The coverage phase trips a CPython 3.11 bug inside hypothesis (SystemError: AST
        # constructor recursion depth mismatch) while describing its own strategies; the
        # other phases generate the same kinds of requests.
        "--phases", "examples,fuzzing,stateful",
        "--max-examples", "40", "--seed", "6", "--request-timeout", "15",
        "--workers", "2", "--no-color",
        "--report", "junit", "--report-dir", str(tmp_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240,
                            env={**os.environ, "SCHEMATHESIS_HOOKS": ""})
    (tmp_path / "st.out").write_text(result.stdout)
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]


def test_the_schema_names_every_route(schema_server: ApiServer) -> None:
    """Verify that the contract's routes of DESIGN.md are all in /openapi.json."""
    paths = set(httpx.get(f"{schema_server.url}/openapi.json").json()["paths"])
    assert {"/v1/customers/{customer_id}", "/v1/customers/{customer_id}/recommendations",
            "/v1/customers/at-risk", "/v1/segments", "/v1/alerts", "/v1/alerts/stream",
            "/v1/models", "/v1/events", "/v1/segment/batch", "/v1/erasures/{receipt_id}",
            "/healthz", "/readyz", "/metrics"} <= paths
