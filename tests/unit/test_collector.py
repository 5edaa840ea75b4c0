"""The garbage collector of a worker once its models are loaded (stream.collector)."""

import gc

import pytest

from stream.collector import YOUNG_THRESHOLD, tune_for_batches


@pytest.fixture
def restore_collector():
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_what_the_process_holds_is_frozen_and_a_batch_can_die_young(restore_collector):
    models = [{"weights": [float(i)] * 3} for i in range(1000)]
    tune_for_batches()
    assert gc.get_freeze_count() >= len(models)
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD > 700


def test_cycles_are_still_collected(restore_collector):
    tune_for_batches()
    node: dict = {}
    node["self"] = node
    del node
    assert gc.collect() >= 1
