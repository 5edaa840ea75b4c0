"""The segments benchmark replays a shop through the worker's batch function against a real
redis-server and reports the choices of the number of segments it saw: its bookkeeping must
agree with what the segmenter serves, or its table of choices would mislead."""

from __future__ import annotations

from pathlib import Path

from load_tests.bench_segments import replay
from load_tests.quality.families import generate_shop
from load_tests.quality.family_run import START
from stream.settings import Settings


async def test_a_replay_reports_the_choices_that_led_to_the_segments_served(
        redis_url: str, tmp_path: Path) -> None:
    shop = generate_shop("abrupt_stop", customers=200, days=90, seed=5, start=START)
    settings = Settings(kafka_bootstrap="127.0.0.1:9", redis_url=redis_url,
                        checkpoint_dir=tmp_path)

    result = await replay(settings, shop, batching=1)

    assert len(result.choices) >= 2, "the first fit chooses a number, and later refits again"
    assert result.choices[-1].segments == result.segments, "the last choice is what is served"
    assert [c.refit for c in result.choices] == sorted(c.refit for c in result.choices)
    assert result.planted == 3
    # Three ways to shop, planted: the segments served tell them apart better than chance.
    assert result.ari > 0.2
