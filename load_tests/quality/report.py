"""QUALITY.md and its plots, from the results of the simulated and the CDNOW runs."""

from __future__ import annotations

import math
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_curve

from load_tests.quality.cdnow import CdnowResult
from load_tests.quality.simulated import SimulatedResult

TARGET_ARI = 0.8
TARGET_SIM_AUC = 0.85
TARGET_HIT_RATIO = 2.0


@dataclass(frozen=True)
class Row:
    what: str
    target: str
    result: float | None
    met: bool | None


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _mark(met: bool | None) -> str:
    return {True: "✅ met", False: "❌ missed", None: "—"}[met]


def _ge(value: float | None, target: float) -> bool | None:
    if value is None or math.isnan(value):
        return None
    return value >= target


def summary_rows(sim: SimulatedResult | None, cdnow: CdnowResult | None) -> list[Row]:
    rows = []
    if sim is not None:
        rows += [
            Row("Simulated: segments ARI (live profile segment vs latent)", f">= {TARGET_ARI}",
                sim.ari_live, _ge(sim.ari_live, TARGET_ARI)),
            Row("Simulated: churn ROC-AUC at the final watermark", f">= {TARGET_SIM_AUC}",
                sim.churn_auc, _ge(sim.churn_auc, TARGET_SIM_AUC)),
            Row("Simulated: hit-rate@10 / popularity hit-rate@10", f">= {TARGET_HIT_RATIO}x",
                sim.hit_rate_ratio, _ge(sim.hit_rate_ratio, TARGET_HIT_RATIO)),
        ]
    if cdnow is not None:
        auc, clv, base = cdnow.metrics["churn_auc"], cdnow.metrics["clv_ours"], \
            cdnow.metrics["clv_bgnbd_gg"]
        rows += [
            Row("CDNOW: churn ROC-AUC (no purchase in the holdout)",
                f"> BG/NBD ({_fmt(auc['bgnbd'])})", auc["ours"],
                _gt(auc["ours"], auc["bgnbd"])),
            Row("CDNOW: CLV Spearman vs holdout spend",
                f"> BG/NBD x Gamma-Gamma ({_fmt(base['spearman'])})", clv["spearman"],
                _gt(clv["spearman"], base["spearman"])),
        ]
    return rows


def _gt(value: float, baseline: float) -> bool | None:
    if math.isnan(value) or math.isnan(baseline):
        return None
    return value > baseline


# --- plots ------------------------------------------------------------------------------------


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_roc(path: Path, sim: SimulatedResult | None, cdnow: CdnowResult | None) -> Path:
    plt = _pyplot()
    panels = [p for p in (("cdnow", cdnow), ("sim", sim)) if p[1] is not None]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 5), squeeze=False)
    for ax, (kind, result) in zip(axes[0], panels, strict=True):
        if kind == "cdnow":
            assert isinstance(result, CdnowResult)
            labels = np.asarray(result.no_purchase)
            curves = [("ours (churn probability)", np.asarray(result.ours_churn), "-"),
                      ("BG/NBD (- expected purchases)", -np.asarray(result.bgnbd_expected), "-"),
                      ("days since last purchase", np.asarray(result.recency_days), ":")]
            auc = result.metrics["churn_auc"]
            aucs = [auc["ours"], auc["bgnbd"], auc["recency"]]
            ax.set_title("CDNOW: no purchase in the 39-week holdout")
        else:
            assert isinstance(result, SimulatedResult)
            labels = np.asarray(result.churned)
            curves = [("ours (churn probability)", np.asarray(result.churn_scores), "-")]
            aucs = [result.churn_auc]
            ax.set_title("Simulated shop: churned (ground truth)")
        if len(set(labels.tolist())) > 1:
            for (name, scores, style), value in zip(curves, aucs, strict=True):
                fpr, tpr, _ = roc_curve(labels, scores)
                ax.plot(fpr, tpr, style, label=f"{name}: AUC {value:.3f}")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def calibration_bins(probabilities: Sequence[float], labels: Sequence[int],
                     bins: int = 10) -> list[tuple[float, float, int]]:
    """(mean predicted, observed rate, count) per equal-width probability bin, non-empty only.

    >>> calibration_bins([0.1, 0.15, 0.9], [0, 1, 1], bins=2)
    [(0.125, 0.5, 2), (0.9, 1.0, 1)]
    """
    p = np.asarray(probabilities, dtype=float)
    y = np.asarray(labels, dtype=float)
    index = np.minimum((p * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        mask = index == b
        if mask.any():
            out.append((round(float(p[mask].mean()), 6), round(float(y[mask].mean()), 6),
                        int(mask.sum())))
    return out


def plot_calibration(path: Path, sim: SimulatedResult | None,
                     cdnow: CdnowResult | None) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    series = []
    if cdnow is not None:
        series.append(("CDNOW (no holdout purchase)", cdnow.ours_churn, cdnow.no_purchase))
    if sim is not None:
        series.append(("simulated shop (churned)", sim.churn_scores, sim.churned))
    for name, probabilities, labels in series:
        rows = calibration_bins(probabilities, labels)
        ax.plot([r[0] for r in rows], [r[1] for r in rows], "o-", label=name)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="perfect calibration")
    ax.set_xlabel("predicted churn probability (bin mean)")
    ax.set_ylabel("observed rate")
    ax.set_title("Calibration of churn_probability")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_clv(path: Path, cdnow: CdnowResult) -> Path:
    plt = _pyplot()
    actual = np.asarray(cdnow.holdout_spend)
    fig, axes = plt.subplots(1, 2, figsize=(11, 5), sharex=True, sharey=True)
    for ax, (name, predicted, key) in zip(axes, (
            ("ours (ClvModel, scaled to 39 weeks)", cdnow.ours_clv, "clv_ours"),
            ("BG/NBD x Gamma-Gamma", cdnow.bgnbd_gg_clv, "clv_bgnbd_gg")), strict=True):
        values = np.nan_to_num(np.asarray(predicted, dtype=float))
        # log1p on both axes: most customers spend nothing in the holdout.
        ax.scatter(values + 1, actual + 1, s=3, alpha=0.25)
        top = max(values.max(), actual.max()) + 1
        ax.plot([1, top], [1, top], color="grey", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        metrics = cdnow.metrics[key]
        ax.set_title(f"{name}\nSpearman {metrics['spearman']:.3f}, MAE ${metrics['mae']:.2f}",
                     fontsize=10)
        ax.set_xlabel("predicted holdout spend + $1")
    axes[0].set_ylabel("actual holdout spend + $1")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def contingency(latent: Sequence[int], learned: Sequence[int]) -> tuple[np.ndarray, list[int]]:
    """Counts of customers per (latent segment, learned segment); learned ids in column order.

    >>> table, columns = contingency([0, 0, 1], [3, 3, 1])
    >>> table.tolist(), columns
    ([[0, 2], [1, 0]], [1, 3])
    """
    rows = max(latent) + 1 if latent else 0
    columns = sorted(set(learned))
    table = np.zeros((rows, len(columns)), dtype=int)
    position = {segment: i for i, segment in enumerate(columns)}
    for a, b in zip(latent, learned, strict=True):
        table[a, position[b]] += 1
    return table, columns


def plot_segments(path: Path, sim: SimulatedResult) -> Path:
    plt = _pyplot()
    table, columns = contingency(sim.latent_segments, sim.live_segments)
    fig, (heat, bars) = plt.subplots(1, 2, figsize=(12, 5),
                                     gridspec_kw={"width_ratios": [3, 2]})
    heat.imshow(table, cmap="Blues", aspect="auto")
    heat.set_yticks(range(len(sim.latent_names)), sim.latent_names, fontsize=8)
    names = [f"{c}: {sim.segment_labels.get(c, 'unscored')}" for c in columns]
    heat.set_xticks(range(len(columns)), names, rotation=30, ha="right", fontsize=7)
    for (i, j), count in np.ndenumerate(table):
        heat.text(j, i, str(count), ha="center", va="center", fontsize=7,
                  color="white" if count > table.max() / 2 else "black")
    heat.set_title(f"Latent vs learned segment (ARI {sim.ari_live:.3f})")
    sizes = table.sum(axis=0)
    bars.barh(range(len(columns)), sizes)
    bars.set_yticks(range(len(columns)), names, fontsize=7)
    bars.invert_yaxis()
    bars.set_title("Learned segment sizes (customers)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_hit_rate(path: Path, sim: SimulatedResult) -> Path:
    plt = _pyplot()
    groups = (("through the pipeline", sim.reco), ("diagnostic: in event order", sim.reco_in_order))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    width = 0.38
    for index, (_, reco) in enumerate(groups):
        ours = float(reco.get("hit_rate_at_10") or 0.0)
        baseline = float(reco.get("popularity_hit_rate_at_10") or 0.0)
        first = index == 0
        for offset, value, color, label in (
                (-width / 2, ours, "tab:blue", "ours (MF + bought together)"),
                (width / 2, baseline, "tab:grey", "popularity (decayed trending)")):
            ax.bar(index + offset, value, width, color=color, label=label if first else None)
            ax.text(index + offset, value, f"{value:.3f}", ha="center", va="bottom", fontsize=8)
        ax.plot([index, index + width], [TARGET_HIT_RATIO * baseline] * 2, color="tab:red",
                ls="--", lw=1, label=f"target: {TARGET_HIT_RATIO:g}x popularity" if first else None)
    ax.set_xticks(range(len(groups)), [name for name, _ in groups])
    ax.set_ylabel("progressive hit-rate@10 on purchases")
    ax.set_title(f"Recommendations ({sim.reco.get('purchases_evaluated')} purchases)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --- markdown ---------------------------------------------------------------------------------


def render(
    *,
    sim: SimulatedResult | None,
    cdnow: CdnowResult | None,
    plots: dict[str, str],
    elapsed_s: float,
    quick: bool,
    notes: Sequence[str] = (),
) -> str:
    lines = [
        "# Model quality",
        "",
        "Written by `crm bench quality`" + (" --quick" if quick else "") + " on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC ({platform.machine()}, "
        f"Python {platform.python_version()}) in {elapsed_s / 60:.1f} minutes. Everything below "
        "went through the real pipeline: the producer SDK, a Kafka-protocol broker (embedded "
        "tansu), `crm worker` (Faust agents, Redis feature store, online models) and a real "
        "redis-server; scores come from the worker's Redis profiles and from the model "
        "checkpoint it wrote when stopped with SIGTERM.",
        "",
    ]
    if quick:
        lines += ["> **Quick mode**: a small simulated shop and a CDNOW sample; the numbers are "
                  "noisy and only show that the benchmark runs.", ""]
    lines += ["## Summary", "", "| measure | target | result | |", "|---|---|---:|---|"]
    for row in summary_rows(sim, cdnow):
        lines.append(f"| {row.what} | {row.target} | {_fmt(row.result)} | {_mark(row.met)} |")
    lines.append("")
    if sim is not None:
        lines += _sim_section(sim, plots)
    if cdnow is not None:
        lines += _cdnow_section(cdnow, plots)
    if notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in notes] + [""]
    return "\n".join(lines)


def _sim_section(sim: SimulatedResult, plots: dict[str, str]) -> list[str]:
    config = sim.config
    reco = sim.reco
    in_order = sim.reco_in_order
    online = sim.churn_online
    churn_rate = sum(sim.churned) / max(len(sim.churned), 1)
    lines = [
        "## (a) Simulated shop against its ground truth",
        "",
        f"`ShopSimulator(customers={config.customers}, days={config.days:g}, "
        f"seed={config.seed}, catalogue_size={config.catalogue_size})`: "
        f"{sim.events:,} events into {config.partitions} partitions; the worker processed them "
        f"in {sim.seconds_processing:.0f} s ({sim.events / max(sim.seconds_processing, 1e-9):,.0f} "
        f"events/s end to end, producing included). {sim.customers_scored:,} customers scored; "
        f"{churn_rate:.0%} of them churn in the truth. Worker settings: defaults "
        f"(`CRM_CHURN_HORIZON_DAYS=30`) plus `{_settings(sim.worker_settings)}`.",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| ARI, `segment` in the Redis profiles vs latent segment | {_fmt(sim.ari_live)} |",
        f"| ARI, final model re-assigning every customer at the end | {_fmt(sim.ari_final)} |",
        f"| reference: ARI of batch k-means (sklearn, 10 restarts) on the same final vectors | "
        f"{_fmt(sim.ari_batch_kmeans)} |",
        f"| churn ROC-AUC, final checkpoint at the final watermark vs truth | "
        f"{_fmt(sim.churn_auc)} |",
        f"| churn progressive ROC-AUC on delayed labels (online, {online.get('examples')} "
        f"examples) | {_fmt(online.get('roc_auc'))} |",
        f"| churn progressive log loss | {_fmt(online.get('log_loss'))} |",
        f"| hit-rate@10, ours ({reco.get('purchases_evaluated')} purchases, progressive) | "
        f"{_fmt(reco.get('hit_rate_at_10'))} |",
        f"| hit-rate@10, decayed popularity on the same purchases | "
        f"{_fmt(reco.get('popularity_hit_rate_at_10'))} |",
        f"| lift over popularity | {_fmt(sim.hit_rate_ratio, 2)}x |",
        f"| diagnostic: hit-rate@10 with the same events strictly in event order (no pipeline)"
        f" | {_fmt(in_order.get('hit_rate_at_10'))} |",
        f"| diagnostic: popularity hit-rate@10, in event order | "
        f"{_fmt(in_order.get('popularity_hit_rate_at_10'))} |",
        f"| diagnostic: lift over popularity, in event order | "
        f"{_fmt(in_order.get('lift_over_popularity'), 2)}x |",
        "",
        "The worker reads the three input topics with one agent and learns each micro-batch "
        "in event-time order, but replaying months of events in minutes, each partition is "
        "fetched at its own pace (the producer is held to "
        f"{config.max_backlog:,} events ahead of the worker), so a purchase can still be "
        "learnt and evaluated before some clicks of its own session (the product views and "
        "cart adds that lead to it); live, they are milliseconds apart. The in-order "
        "diagnostic feeds the same events to a fresh `Recommender` with the scorer's calls "
        "in event order (an order's products judged against the one list served before it, "
        "as the worker does): the gap between the two rows is that session context. The "
        "target is judged on the pipeline's figure.",
        "",
    ]
    for key, caption in (("segments", "Latent vs learned segments"),
                         ("hit_rate", "Hit-rate@10 against popularity")):
        if key in plots:
            lines += [f"![{caption}]({plots[key]})", ""]
    return lines


def _cdnow_section(cdnow: CdnowResult, plots: dict[str, str]) -> list[str]:
    auc = cdnow.metrics["churn_auc"]
    rows = (("ours: ClvModel at the end of calibration x 273/90", "clv_ours"),
            ("ours: `clv` in the Redis profile (at the last purchase) x 273/90", "clv_ours_live"),
            ("BG/NBD x Gamma-Gamma (lifetimes)", "clv_bgnbd_gg"))
    online = cdnow.online
    sample = "all customers" if cdnow.config.sample is None else \
        f"a random sample of {cdnow.config.sample:,} customers (seed {cdnow.config.seed})"
    lines = [
        "## (b) CDNOW, replayed in event time",
        "",
        f"`lifetimes/datasets/CDNOW_master.txt`, {sample}: {cdnow.customers:,} customers. "
        f"Calibration 1997-01-01..1997-09-30 (39 weeks, {cdnow.calibration_events:,} purchase "
        "events at noon UTC, replayed through Kafka and the worker in "
        f"{cdnow.seconds_processing:.0f} s); holdout 1997-10-01..1998-06-30 (39 weeks). "
        f"Worker settings: `{_settings(cdnow.worker_settings)}`. Every customer is scored at "
        "the end of calibration from the worker's final checkpoint; BG/NBD and Gamma-Gamma are "
        "fitted by `lifetimes` on the same calibration data in the same run. "
        f"{np.mean(cdnow.no_purchase):.1%} of the customers buy nothing in the holdout.",
        "",
        "### Churn: who buys nothing in the holdout",
        "",
        "| score | ROC-AUC |",
        "|---|---:|",
        f"| ours: `churn_probability` (online logistic regression, delayed labels) | "
        f"{_fmt(auc['ours'])} |",
        f"| BG/NBD: minus expected holdout purchases | {_fmt(auc['bgnbd'])} |",
        f"| naive: days since the last purchase | {_fmt(auc['recency'])} |",
        "",
        f"Online (progressive, on the worker's own delayed 90-day labels): ROC-AUC "
        f"{_fmt(online.get('churn', {}).get('roc_auc'))} over "
        f"{online.get('churn', {}).get('examples')} examples.",
        "",
        "### CLV: spend in the holdout",
        "",
        "| prediction | MAE ($) | Spearman |",
        "|---|---:|---:|",
    ]
    for name, key in rows:
        metrics = cdnow.metrics[key]
        lines.append(f"| {name} | {_fmt(metrics['mae'], 2)} | {_fmt(metrics['spearman'])} |")
    lines.append("")
    for key, caption in (("roc", "ROC curves"), ("calibration", "Calibration"),
                         ("clv", "CLV predicted vs actual")):
        if key in plots:
            lines += [f"![{caption}]({plots[key]})", ""]
    return lines


def _settings(overrides: dict[str, object]) -> str:
    return " ".join(f"CRM_{name.upper()}={value}" for name, value in overrides.items())


def write_report(
    output_dir: Path,
    *,
    sim: SimulatedResult | None,
    cdnow: CdnowResult | None,
    elapsed_s: float,
    quick: bool,
    notes: Sequence[str] = (),
) -> Path:
    """Write the plots and ``QUALITY.md`` into ``output_dir``; returns the report's path."""
    output_dir.mkdir(parents=True, exist_ok=True)
    plots: dict[str, str] = {}
    if sim is not None or cdnow is not None:
        plots["roc"] = plot_roc(output_dir / "quality_roc.png", sim, cdnow).name
        plots["calibration"] = plot_calibration(output_dir / "quality_calibration.png", sim,
                                                cdnow).name
    if cdnow is not None:
        plots["clv"] = plot_clv(output_dir / "quality_clv.png", cdnow).name
    if sim is not None:
        plots["segments"] = plot_segments(output_dir / "quality_segments.png", sim).name
        plots["hit_rate"] = plot_hit_rate(output_dir / "quality_hit_rate.png", sim).name
    path = output_dir / "QUALITY.md"
    path.write_text(render(sim=sim, cdnow=cdnow, plots=plots, elapsed_s=elapsed_s, quick=quick,
                           notes=notes))
    return path
