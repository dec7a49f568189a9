"""Figures for a comparison study, saved as PNG: ROC AUC with intervals, the low-data study, ROC curves.

Matplotlib is imported inside each function and drawn through its object-oriented ``Figure`` API (the
Agg canvas), so importing :mod:`mtl_hf.evaluation` stays light and no GUI backend or global ``pyplot``
state is touched. Every function returns the arrays it drew (:class:`PlotData`), so what a figure
shows can be checked, and re-plotted elsewhere, without reading pixels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from sklearn.metrics import roc_curve

from .inputs import to_binary_columns
from .low_data import CurveDifference, CurvePoint, model_label
from .point_estimates import roc_auc_per_column
from .results import SAMPLING_ORDER, STRATEGY_ORDER, AggregateRow, rank_in, sampling_label, strategy_label
from .score_layouts import DEFAULT_LAYOUT


@dataclass(frozen=True)
class PlotData:
    """What a figure shows.

    Attributes:
        path: the PNG written.
        series: one entry per plotted model / curve, mapping array names (``"x"``, ``"auc"``, ``"low"``,
            ``"high"``, ``"fpr"``, ``"tpr"``, ...) to the arrays drawn.
        x_labels: category labels of the x axis (bar-style plots), else empty.
    """

    path: Path
    series: dict[str, dict[str, np.ndarray]]
    x_labels: tuple[str, ...] = ()


def _figure(width: float = 6.4, height: float = 4.4) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _save(figure: Any, path: str | Path) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, format="png", dpi=150)
    return target


Rows = TypeVar("Rows", AggregateRow, CurvePoint)


def _select_task(aggregates: Sequence[Rows], task: str | None) -> list[Rows]:
    tasks = sorted({a.task for a in aggregates})
    if not tasks:
        raise ValueError("aggregates: nothing to plot")
    if task is None:
        if len(tasks) > 1:
            raise ValueError(f"task: several tasks in the results ({', '.join(tasks)}); name one")
        task = tasks[0]
    if task not in tasks:
        raise ValueError(f"task: {task!r} not in the results ({', '.join(tasks)})")
    return [a for a in aggregates if a.task == task]


def _model_label(row: AggregateRow, with_weighting: bool) -> str:
    name = strategy_label(row.strategy)
    return f"{name} ({row.weighting})" if with_weighting else name


def _models(rows: Sequence[AggregateRow]) -> tuple[list[tuple[str, str]], bool]:
    """Distinct (strategy, weighting) pairs in paper order, and whether weighting must be shown."""
    pairs = sorted(
        {(r.strategy, r.weighting) for r in rows}, key=lambda p: (rank_in(STRATEGY_ORDER, p[0]), p[1])
    )
    return pairs, len(pairs) > len({strategy for strategy, _ in pairs})


def plot_auc_intervals(
    aggregates: Sequence[AggregateRow],
    path: str | Path,
    *,
    task: str | None = None,
    train_fraction: float | None = None,
    title: str | None = None,
) -> PlotData:
    """ROC AUC (mean over seeds) with its bootstrap interval per strategy x sampling (paper's Table 2).

    Args:
        aggregates: rows from :func:`mtl_hf.evaluation.aggregate_over_seeds`.
        path: PNG to write.
        task: the task to plot (required when the results hold several).
        train_fraction: which training fraction to show; default the largest present.
        title: figure title; default ``"ROC AUC, task: <task>"``.

    Returns:
        :class:`PlotData` with, per model, ``x`` (positions), ``auc``, ``low`` and ``high``, and the
        sampling labels of the x axis.
    """
    rows = _select_task(aggregates, task)
    fraction = max(r.train_fraction for r in rows) if train_fraction is None else float(train_fraction)
    rows = [r for r in rows if r.train_fraction == fraction]
    if not rows:
        raise ValueError(f"train_fraction: no results at train_fraction={fraction}")
    samplings = sorted({r.sampling for r in rows}, key=lambda s: rank_in(SAMPLING_ORDER, s))
    models, with_weighting = _models(rows)
    width = 0.8 / len(models)
    figure = _figure()
    axes = figure.add_subplot()
    series: dict[str, dict[str, np.ndarray]] = {}
    for index, (strategy, weighting) in enumerate(models):
        found = {r.sampling: r for r in rows if (r.strategy, r.weighting) == (strategy, weighting)}
        columns = [i for i, s in enumerate(samplings) if s in found]
        picked = [found[samplings[i]] for i in columns]
        x = np.array(columns, dtype=np.float64) - 0.4 + width * (index + 0.5)
        auc = np.array([r.roc_auc_mean for r in picked])
        low = np.array([r.low_mean for r in picked])
        high = np.array([r.high_mean for r in picked])
        label = _model_label(picked[0], with_weighting)
        axes.errorbar(x, auc, yerr=np.vstack([auc - low, high - auc]), fmt="o", capsize=4, label=label)
        series[label] = {"x": x, "auc": auc, "low": low, "high": high}
    axes.set_xticks(range(len(samplings)), [sampling_label(s) for s in samplings])
    axes.set_ylabel(f"ROC AUC ({rows[0].confidence_level * 100:g}% CI)")
    axes.set_title(title or f"ROC AUC, task: {rows[0].task}")
    axes.grid(axis="y", alpha=0.3)
    axes.legend()
    return PlotData(_save(figure, path), series, tuple(sampling_label(s) for s in samplings))


def plot_low_data(
    points: Sequence[CurvePoint],
    differences: Sequence[CurveDifference],
    path: str | Path,
    *,
    task: str | None = None,
    sampling: str | None = None,
    title: str | None = None,
) -> PlotData:
    """The low-data study: test ROC AUC against the training fraction, one line per strategy, and
    (right panel, when ``differences`` are given) the paired differences between strategies.

    Points are the seed-mean AUCs with their patient-bootstrap intervals as error bars, differences
    the paired seed-mean differences with theirs (see :mod:`mtl_hf.evaluation.low_data`). The x axis
    is logarithmic, each tick naming the fraction and its training patients; markers of different
    strategies are shifted slightly sideways so their bars do not hide each other. ``sampling``
    picks the sampling scheme (default: the first in the paper's order among those present).

    Returns:
        :class:`PlotData` with, per strategy (display name), ``x`` (fractions, ascending), ``auc``,
        ``low``, ``high``; per pair (``"MTL − STL"``), ``x``, ``delta``, ``low``, ``high``, ``p``.
    """
    rows = _select_task(points, task)
    samplings = sorted({r.sampling for r in rows}, key=lambda s: rank_in(SAMPLING_ORDER, s))
    chosen = samplings[0] if sampling is None else sampling
    rows = [r for r in rows if r.sampling == chosen]
    if not rows:
        raise ValueError(f"sampling: {chosen!r} not in the results ({', '.join(samplings)})")
    diffs = [d for d in differences if (d.task, d.sampling) == (rows[0].task, chosen)]
    fractions = sorted({r.train_fraction for r in rows})
    patients = {r.train_fraction: r.n_train_patients for r in rows}
    ticks = [f"{f * 100:g} %" + (f"\n{patients[f]} pts" if patients[f] else "") for f in fractions]
    level = f"{rows[0].confidence_level * 100:g}%"
    figure = _figure(11.0 if diffs else 6.4, 4.6)
    axes = figure.subplots(1, 2 if diffs else 1, squeeze=False)[0]
    models = list(dict.fromkeys(r.model for r in rows))
    series: dict[str, dict[str, np.ndarray]] = {}
    for index, model in enumerate(models):
        picked = sorted((r for r in rows if r.model == model), key=lambda r: r.train_fraction)
        x = np.array([r.train_fraction for r in picked])
        auc = np.array([r.roc_auc for r in picked])
        low, high = np.array([r.low for r in picked]), np.array([r.high for r in picked])
        shifted = x * _shift(index, len(models))
        axes[0].errorbar(shifted, auc, yerr=np.vstack([auc - low, high - auc]), marker="o", capsize=4,
                         label=model_label(model))  # fmt: skip
        series[model_label(model)] = {"x": x, "auc": auc, "low": low, "high": high}
    axes[0].set_ylabel(f"Test ROC AUC (mean over seeds, {level} CI)")
    axes[0].set_title(title or f"Low-data study, task: {rows[0].task} ({sampling_label(chosen)})")
    pairs = list(dict.fromkeys((d.model_a, d.model_b) for d in diffs))
    for index, (a, b) in enumerate(pairs):
        picked_d = sorted(
            (d for d in diffs if (d.model_a, d.model_b) == (a, b)), key=lambda d: d.train_fraction
        )
        x = np.array([d.train_fraction for d in picked_d])
        delta = np.array([d.delta for d in picked_d])
        low, high = np.array([d.low for d in picked_d]), np.array([d.high for d in picked_d])
        name = f"{model_label(a)} − {model_label(b)}"
        axes[1].errorbar(x * _shift(index, len(pairs)), delta, yerr=np.vstack([delta - low, high - delta]),
                         marker="s", capsize=4, label=name)  # fmt: skip
        series[name] = {"x": x, "delta": delta, "low": low, "high": high,
                        "p": np.array([d.p_value for d in picked_d])}  # fmt: skip
    if diffs:
        axes[1].axhline(0.0, color="grey", linestyle="--", linewidth=1)
        axes[1].set_ylabel(f"Paired ΔAUC ({level} CI)")
        axes[1].set_title("Paired differences")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xticks(fractions, ticks)
        ax.minorticks_off()
        ax.set_xlabel("Fraction of the training patients")
        ax.grid(alpha=0.3)
        ax.legend()
    return PlotData(_save(figure, path), series)


def _shift(index: int, count: int) -> float:
    """Multiplicative sideways offset of the ``index``-th of ``count`` series on a log axis."""
    return float(1.0 + 0.04 * (index - (count - 1) / 2))


def plot_roc_curves(
    curves: Mapping[str, tuple[Any, Any]],
    path: str | Path,
    *,
    title: str = "ROC curves",
) -> PlotData:
    """Overlay the ROC curves of several models (binary scores), labelled with their AUCs.

    Args:
        curves: model name -> ``(references, predictions)`` on its test set.
        path: PNG to write.
        title: figure title.

    Returns:
        :class:`PlotData` with, per model, ``fpr``, ``tpr``, ``thresholds`` (from
        ``sklearn.metrics.roc_curve``) and ``auc`` (a one-element array).
    """
    if not curves:
        raise ValueError("curves: nothing to plot")
    figure = _figure(5.2, 5.0)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="Chance")
    series: dict[str, dict[str, np.ndarray]] = {}
    for name, (references, predictions) in curves.items():
        columns = to_binary_columns(
            references,
            predictions,
            DEFAULT_LAYOUT,
            references_name=f"curves[{name!r}][0]",
            predictions_name=f"curves[{name!r}][1]",
        )
        fpr, tpr, thresholds = roc_curve(columns.labels[0], columns.scores[0])
        auc = roc_auc_per_column(columns)
        axes.plot(fpr, tpr, label=f"{name} (AUC {auc[0]:.3f})")
        series[name] = {"fpr": fpr, "tpr": tpr, "thresholds": thresholds, "auc": auc}
    axes.set_xlabel("False positive rate (1 − specificity)")
    axes.set_ylabel("True positive rate (sensitivity)")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.01)
    axes.set_aspect("equal")
    axes.set_title(title)
    axes.legend(loc="lower right")
    return PlotData(_save(figure, path), series)
