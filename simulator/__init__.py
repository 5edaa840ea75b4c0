"""A simulated web shop with hidden ground truth: ``crm simulate`` and ``crm dev --simulate``.

:class:`ShopSimulator` yields contract-exact events in event-time order, deterministic by
seed; :func:`run_simulation` sends them through the producer SDK. The benchmarks and tests use
the same two. Depends only on :mod:`schemas` and the producer SDK with its settings
(import-linter checks it).
"""

from simulator.run import SimulationReport, read_jsonl, run_simulation, write_jsonl
from simulator.shop import TOPIC_BY_TYPE, ShopSimulator

__all__ = [
    "TOPIC_BY_TYPE",
    "ShopSimulator",
    "SimulationReport",
    "read_jsonl",
    "run_simulation",
    "write_jsonl",
]
