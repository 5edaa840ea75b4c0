"""Drift detection judged offline: how soon :class:`online_models.drift.DriftMonitor` finds a
planted rise in a model's error, and how often it cries wolf on a stationary stream.

Error streams of the kinds the models give, 4,000 errors each, the change (if any) after
the first 2,000, over many seeds:

* 0/1 errors (sentiment, triage) whose rate rises;
* a churn-like logistic regression whose labels flip (log loss, scored before learning);
* absolute errors (CLV, a forecast's scaled error) whose scale rises;
* each beside its stationary twin of the same length, for false alarms.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from river import linear_model, preprocessing

from load_tests.report import reproduce_line, run_sentence, table, title, write_report
from online_models.drift import DriftMonitor

RESULTS = Path(__file__).resolve().parents[1] / "results"
EVENTS = 4000
CHANGE_AT = 2000

Stream = Callable[[random.Random, bool], list[float]]


def rate_stream(before: float, after: float) -> Stream:
    def errors(rng: random.Random, change: bool) -> list[float]:
        return [float(rng.random() < (after if change and i >= CHANGE_AT else before))
                for i in range(EVENTS)]
    return errors


def scale_stream(before: float, after: float) -> Stream:
    def errors(rng: random.Random, change: bool) -> list[float]:
        return [abs(rng.gauss(0, after if change and i >= CHANGE_AT else before))
                for i in range(EVENTS)]
    return errors


def churn_flip(rng: random.Random, change: bool) -> list[float]:
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    losses = []
    for i in range(EVENTS):
        x = {"recency": rng.gauss(0, 1), "frequency": rng.gauss(0, 1), "tickets": rng.gauss(0, 1)}
        churned = 1.5 * x["recency"] - x["frequency"] + 0.5 * x["tickets"] + rng.gauss(0, 0.5) > 0
        if change and i >= CHANGE_AT:
            churned = not churned
        p = min(max(model.predict_proba_one(x).get(True, 0.5), 1e-6), 1 - 1e-6)
        losses.append(-math.log(p if churned else 1.0 - p))
        model.learn_one(x, churned)
    return losses


STREAMS: list[tuple[str, Stream]] = [
    ("0/1 error rate 0.10 -> 0.40", rate_stream(0.10, 0.40)),
    ("0/1 error rate 0.20 -> 0.30", rate_stream(0.20, 0.30)),
    ("churn log loss, labels flip", churn_flip),
    ("absolute error, scale x1.67 (0.6 -> 1.0)", scale_stream(0.6, 1.0)),
    ("absolute error, scale x1.2 (1.0 -> 1.2)", scale_stream(1.0, 1.2)),
]


def detections(errors: Sequence[float]) -> list[int]:
    monitor = DriftMonitor()
    return [i for i, error in enumerate(errors)
            if monitor.update("model", error, at_ms=i) is not None]


def row(name: str, stream: Stream, seeds: int) -> list[object]:
    delays, missed, early, false_alarms = [], 0, 0, 0
    for seed in range(seeds):
        found = detections(stream(random.Random(seed), True))
        after = [i - CHANGE_AT for i in found if i >= CHANGE_AT]
        early += any(i < CHANGE_AT for i in found)
        if after:
            delays.append(after[0])
        else:
            missed += 1
        false_alarms += bool(detections(stream(random.Random(10_000 + seed), False)))
    quantiles = statistics.quantiles(delays, n=10) if len(delays) > 1 else [math.nan] * 9
    return [name, f"{len(delays)}/{seeds}",
            f"{statistics.median(delays):.0f}" if delays else "-",
            f"{quantiles[8]:.0f}" if delays else "-", f"{max(delays)}" if delays else "-",
            early, f"{false_alarms}/{seeds}"]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--output", type=Path, default=RESULTS / "DRIFT.md")
    args = parser.parse_args(argv)
    started = time.monotonic()
    rows = [row(name, stream, args.seeds) for name, stream in STREAMS]
    monitor = DriftMonitor()
    lines = [*title("Drift detection"),
             f"{run_sentence()}, in {time.monotonic() - started:.0f} s. `DriftMonitor` with its "
             f"defaults (River's ADWIN, delta {monitor.delta}, clock {monitor.clock}, grace "
             f"period {monitor.grace_period}); only rises in error count. Each stream: "
             f"{EVENTS:,} errors, the change after {CHANGE_AT:,}; {args.seeds} seeds, and as "
             "many stationary twins of the same length for false alarms.", "",
             *table(["error stream", "found", "delay: median", "90th pct", "max",
                     "alarms before the change", "stationary twins alarmed"], rows,
                    align="lrrrrrr"), "",
             "Delays are in errors after the change. ADWIN checks every `clock` errors, so no "
             "delay is shorter than the distance to the next check. A drift of 0.2 -> 0.3 in "
             "an error rate takes hundreds of errors to tell from noise; a flip or a jump of "
             "half again takes tens to about a hundred.", "",
             reproduce_line("python -m load_tests.quality.drift")]
    write_report(args.output, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
