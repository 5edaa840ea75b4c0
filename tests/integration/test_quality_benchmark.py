"""The quality benchmark end to end, in quick mode: real broker, real Redis, ``crm worker``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("lifetimes", reason="the quality benchmark needs the bench extra")
pytest.importorskip("matplotlib", reason="the quality benchmark needs the bench extra")

from load_tests.quality.runner import run_quality_benchmark

pytestmark = pytest.mark.slow


def _number(text: str, label: str) -> float:
    """The number in the last column of the table row that starts with ``label``."""
    match = re.search(rf"^\| {re.escape(label)}[^\n]*\| (-?[0-9.]+)x? \|", text, re.MULTILINE)
    assert match, f"no row {label!r} in the report"
    return float(match.group(1))


@pytest.mark.timeout(600)
def test_quick_quality_benchmark_writes_a_sane_report(tmp_path: Path) -> None:
    """Verify that quick mode writes QUALITY.md with its plots and numbers in range."""
    report = run_quality_benchmark(output_dir=tmp_path, quick=True, progress=False)
    text = report.read_text()
    assert report == tmp_path / "QUALITY.md"
    for plot in ("quality_roc.png", "quality_calibration.png", "quality_clv.png",
                 "quality_segments.png", "quality_hit_rate.png"):
        assert (tmp_path / plot).stat().st_size > 1000, plot
        assert f"]({plot})" in text
    for label in ("ours: `churn_probability`", "BG/NBD: minus expected holdout purchases",
                  "churn ROC-AUC, final checkpoint at the final watermark vs truth"):
        assert 0.0 <= _number(text, label) <= 1.0, label
    # Both churn scores must carry real signal on CDNOW, even on a sample.
    assert _number(text, "ours: `churn_probability`") > 0.6
    assert _number(text, "BG/NBD: minus expected holdout purchases") > 0.6
    assert -1.0 <= _number(text, "ARI, `segment` in the Redis profiles vs latent segment") <= 1.0
    hit_rate = _number(text, "hit-rate@10, ours")
    assert 0.0 < hit_rate <= 1.0
    spearman = re.search(r"^\| BG/NBD x Gamma-Gamma \(lifetimes\) \| ([0-9.]+) \| (-?[0-9.]+) \|",
                         text, re.MULTILINE)
    assert spearman and -1.0 <= float(spearman.group(2)) <= 1.0
