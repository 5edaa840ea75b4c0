"""The README's "Try it" works: every line of it runs against a ``crm dev`` stack.

A newcomer copies those lines as they are; so does this test, into bash, in a folder that
looks like a checkout after ``make demo`` (``.crm/dev.json`` and ``.venv/bin/crm``), once
``crm dev`` says the models are ready.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from stream.processes import ManagedProcess, free_port
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("CRM_TEST_KAFKA", "embedded") != "embedded",
                       reason="the README's demo runs the embedded broker (make test runs it)"),
]


def try_it_block() -> str:
    """The bash block of the README's "Try it" section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### Try it", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert match, "the README's Try it section has no bash block"
    return match.group(1)


def test_the_try_it_commands_are_bash_that_names_the_api() -> None:
    """Verify the block's shape without a stack: it parses as bash and uses the API."""
    block = try_it_block()
    subprocess.run(["bash", "-n"], input=block, text=True, check=True)
    assert "/v1/customers/at-risk" in block and "/v1/events" in block


@pytest.mark.timeout(600)
def test_every_try_it_command_succeeds_against_crm_dev(tmp_path: Path) -> None:
    """Verify that with `crm dev --simulate` up and its models ready, the README's lines
    run without an error and answer what they promise."""
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    dev = ManagedProcess(
        name="crm dev", log_path=tmp_path / "dev.log",
        argv=[sys.executable, "-m", "crm", "dev", "--simulate", "300", "--port",
              str(free_port()), "--work-dir", str(tmp_path / ".crm")],
        env={"CRM_SESSION_TIMEOUT_S": "6"}).start()
    try:
        info_path = tmp_path / ".crm" / "dev.json"
        wait_for(lambda: info_path.exists() and json.loads(info_path.read_text()).get(
            "models_ready"), timeout=300, what="crm dev to say the models are ready",
            interval=1.0, alive=[dev])
        environment = {key: value for key, value in os.environ.items()
                       if not key.startswith("CRM_")}
        done = subprocess.run(["bash", "-e", "-o", "pipefail"], input=try_it_block(),
                              text=True, capture_output=True, cwd=tmp_path, timeout=120,
                              env=environment)
        assert done.returncode == 0, done.stderr[-2000:]
        answers = [line for line in done.stdout.splitlines() if line.startswith("{")]
        at_risk = json.loads(answers[0])
        assert len(at_risk["customers"]) == 3
        assert at_risk["customers"][0]["churn_probability"] is not None
        customer = json.loads(answers[1])  # the first at risk a moment later: scores move
        assert customer["scores"]["churn_probability"] is not None and customer["features"]
        assert json.loads(answers[3])["segments"], "segments are served"
        assert json.loads(answers[4])["accepted"] == 1
    finally:
        dev.stop(timeout=30)
