"""Experiment results as typed rows: one per run and task, aggregated over seeds, paired comparisons.

A comparison study (the paper's Tables 1 and 2) is a grid of runs: training strategy (STL,
pre-training, MTL) x loss weighting x sampling (all data, under-sampled) x training fraction x seed.
Each run contributes one :class:`ResultRow` per task, built from its test metrics
(:meth:`ResultRow.from_metrics` reads the keys of ``test_metrics.json`` / the ``mtl_roc_auc`` metric).
:func:`aggregate_over_seeds` reduces the seeds to mean and sample standard deviation, and
:func:`summarize_comparisons` does the same for paired model comparisons. Everything is sorted by one
deterministic key, so tables and CSV files do not depend on the order runs finished in.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from .report import PairedComparison

_NAN = float("nan")

#: Display names of the strategies and sampling schemes used in the paper; others show as written.
STRATEGY_LABELS: dict[str, str] = {
    "stl": "STL",
    "pretrain": "Pre-training",
    "pretraining": "Pre-training",
    "pretrain_finetune": "Pre-training",
    "mtl": "MTL",
}
SAMPLING_LABELS: dict[str, str] = {
    "all": "All data",
    "none": "All data",
    "undersample": "Under sampled",
    "undersampled": "Under sampled",
    "oversample": "Over sampled",
    "oversampled": "Over sampled",
}
#: Row order of the paper's tables; names not listed follow, alphabetically.
STRATEGY_ORDER: tuple[str, ...] = ("stl", "pretrain", "pretraining", "pretrain_finetune", "mtl")
SAMPLING_ORDER: tuple[str, ...] = ("all", "none", "undersample", "undersampled", "oversample", "oversampled")


def strategy_label(name: str) -> str:
    """Display name of a training strategy (``"stl"`` -> ``"STL"``)."""
    return STRATEGY_LABELS.get(name, name)


def sampling_label(name: str) -> str:
    """Display name of a sampling scheme (``"undersample"`` -> ``"Under sampled"``)."""
    return SAMPLING_LABELS.get(name, name)


def rank_in(order: Sequence[str], name: str) -> tuple[int, str]:
    """Sort key placing ``name`` by its position in ``order``; unlisted names follow, alphabetically."""
    return (order.index(name), "") if name in order else (len(order), name)


@dataclass(frozen=True)
class ResultRow:
    """Test result of one run on one task.

    Attributes:
        strategy: ``"stl"``, ``"pretrain"``, ``"mtl"`` or another strategy name.
        weighting: loss-weighting method (``"fixed"``, ...; ``"none"`` for single-task runs).
        sampling: sampling scheme of the training set (``"all"``, ``"undersample"``, ...).
        train_fraction: share of the training set used (1.0 = all).
        seed: the run's seed.
        task: task (head) name.
        roc_auc: test ROC AUC (macro for multi-label / multi-class tasks).
        low, high: bootstrap (patient-level) confidence bounds.
        delong_low, delong_high: DeLong confidence bounds (NaN when not available).
        n_test: test samples; n_patients: test patients (0 if unknown).
        pr_auc, accuracy, sensitivity, specificity: optional extras (NaN when not computed).
        confidence_level: level of the bounds.
        run_dir: the run's output folder, for provenance.
    """

    strategy: str
    weighting: str
    sampling: str
    train_fraction: float
    seed: int
    task: str
    roc_auc: float
    low: float
    high: float
    delong_low: float = _NAN
    delong_high: float = _NAN
    n_test: int = 0
    n_patients: int = 0
    pr_auc: float = _NAN
    accuracy: float = _NAN
    sensitivity: float = _NAN
    specificity: float = _NAN
    confidence_level: float = 0.95
    run_dir: str = ""

    @classmethod
    def from_metrics(
        cls,
        metrics: Mapping[str, Any],
        *,
        strategy: str,
        weighting: str,
        sampling: str,
        train_fraction: float,
        seed: int,
        task: str,
        run_dir: str = "",
    ) -> ResultRow:
        """Build a row from one task's metrics as the ``mtl_roc_auc`` metric returns them.

        Reads ``roc_auc``, ``roc_auc_low``, ``roc_auc_high`` (required) and, when present,
        ``roc_auc_delong_low``, ``roc_auc_delong_high``, ``n_samples``, ``n_groups``, ``pr_auc``,
        ``accuracy``, ``sensitivity``, ``specificity``, ``confidence_level``.
        """
        missing = [key for key in ("roc_auc", "roc_auc_low", "roc_auc_high") if key not in metrics]
        if missing:
            raise ValueError(f"metrics: task {task!r} lacks {', '.join(missing)} (keys: {sorted(metrics)})")

        def number(key: str) -> float:
            value = metrics.get(key)
            return _NAN if value is None else float(value)

        return cls(
            strategy=strategy,
            weighting=weighting,
            sampling=sampling,
            train_fraction=float(train_fraction),
            seed=int(seed),
            task=task,
            roc_auc=number("roc_auc"),
            low=number("roc_auc_low"),
            high=number("roc_auc_high"),
            delong_low=number("roc_auc_delong_low"),
            delong_high=number("roc_auc_delong_high"),
            n_test=int(metrics.get("n_samples", 0) or 0),
            n_patients=int(metrics.get("n_groups", 0) or 0),
            pr_auc=number("pr_auc"),
            accuracy=number("accuracy"),
            sensitivity=number("sensitivity"),
            specificity=number("specificity"),
            confidence_level=float(metrics.get("confidence_level", 0.95)),
            run_dir=run_dir,
        )


@dataclass(frozen=True)
class AggregateRow:
    """One configuration (strategy, weighting, sampling, fraction, task) summarised over its seeds.

    Means are plain means over seeds; ``roc_auc_sd`` is the sample standard deviation (``ddof=1``,
    NaN for a single seed). ``low_mean`` / ``high_mean`` average the per-seed bootstrap bounds, and
    ``delong_*_mean`` the DeLong bounds: they describe the test-set uncertainty of a typical run,
    while ``roc_auc_sd`` describes the spread due to training randomness.
    """

    strategy: str
    weighting: str
    sampling: str
    train_fraction: float
    task: str
    n_seeds: int
    seeds: tuple[int, ...]
    roc_auc_mean: float
    roc_auc_sd: float
    low_mean: float
    high_mean: float
    delong_low_mean: float
    delong_high_mean: float
    n_test: int
    confidence_level: float


@dataclass(frozen=True)
class ComparisonRow:
    """Paired comparison of two models (A minus B) on the same test set, for one seed and task."""

    task: str
    sampling: str
    train_fraction: float
    seed: int
    model_a: str
    model_b: str
    auc_a: float
    auc_b: float
    delta: float
    delong_low: float
    delong_high: float
    delong_p: float
    bootstrap_low: float
    bootstrap_high: float
    bootstrap_p: float
    n_test: int = 0
    confidence_level: float = 0.95

    @classmethod
    def from_comparison(
        cls,
        comparison: PairedComparison,
        *,
        task: str,
        sampling: str,
        train_fraction: float,
        seed: int,
        model_a: str,
        model_b: str,
        n_test: int = 0,
    ) -> ComparisonRow:
        """Row from :func:`mtl_hf.evaluation.compare_scores`' result; missing parts become NaN."""
        d, b = comparison.delong, comparison.bootstrap
        level = d.confidence_level if d is not None else b.confidence_level if b is not None else 0.95
        return cls(
            task=task,
            sampling=sampling,
            train_fraction=float(train_fraction),
            seed=int(seed),
            model_a=model_a,
            model_b=model_b,
            auc_a=comparison.auc_a,
            auc_b=comparison.auc_b,
            delta=comparison.difference,
            delong_low=d.low if d is not None else _NAN,
            delong_high=d.high if d is not None else _NAN,
            delong_p=d.p_value if d is not None else _NAN,
            bootstrap_low=b.low if b is not None else _NAN,
            bootstrap_high=b.high if b is not None else _NAN,
            bootstrap_p=b.p_value if b is not None else _NAN,
            n_test=int(n_test),
            confidence_level=level,
        )


@dataclass(frozen=True)
class ComparisonSummary:
    """One comparison (model A vs B, task, sampling, fraction) over its seeds.

    ``n_significant`` counts seeds whose p-value (DeLong's when available, else the bootstrap's) is
    below ``alpha``. Seeds share the test set, so their p-values are not independent and are not
    combined into one.
    """

    task: str
    sampling: str
    train_fraction: float
    model_a: str
    model_b: str
    n_seeds: int
    delta_mean: float
    delta_sd: float
    n_significant: int
    alpha: float


def _nanmean(values: Iterable[float]) -> float:
    array = np.asarray(list(values), dtype=np.float64)
    return float(array[~np.isnan(array)].mean()) if (~np.isnan(array)).any() else _NAN


def _sd(values: Sequence[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else _NAN


def result_sort_key(row: ResultRow | AggregateRow) -> tuple[Any, ...]:
    """Task, sampling (paper order), training fraction (largest first), strategy (paper order), weighting."""
    return (
        row.task,
        rank_in(SAMPLING_ORDER, row.sampling),
        -row.train_fraction,
        rank_in(STRATEGY_ORDER, row.strategy),
        row.weighting,
        getattr(row, "seed", 0),
    )


def comparison_sort_key(row: ComparisonRow | ComparisonSummary) -> tuple[Any, ...]:
    return (
        row.task,
        rank_in(SAMPLING_ORDER, row.sampling),
        -row.train_fraction,
        row.model_a,
        row.model_b,
        getattr(row, "seed", 0),
    )


def aggregate_over_seeds(rows: Iterable[ResultRow]) -> list[AggregateRow]:
    """Mean and sample sd over seeds of each (strategy, weighting, sampling, fraction, task).

    Raises:
        ValueError: if one configuration lists the same seed twice.
    """
    groups: dict[tuple[str, str, str, float, str], list[ResultRow]] = {}
    for row in rows:
        key = (row.strategy, row.weighting, row.sampling, row.train_fraction, row.task)
        groups.setdefault(key, []).append(row)
    out = []
    for (strategy, weighting, sampling, fraction, task), members in groups.items():
        members = sorted(members, key=lambda r: r.seed)
        seeds = tuple(r.seed for r in members)
        if len(set(seeds)) != len(seeds):
            raise ValueError(
                f"rows: seed listed twice for strategy={strategy!r} weighting={weighting!r} "
                f"sampling={sampling!r} train_fraction={fraction} task={task!r}: {seeds}"
            )
        aucs = [r.roc_auc for r in members]
        out.append(
            AggregateRow(
                strategy=strategy,
                weighting=weighting,
                sampling=sampling,
                train_fraction=fraction,
                task=task,
                n_seeds=len(members),
                seeds=seeds,
                roc_auc_mean=float(np.mean(aucs)),
                roc_auc_sd=_sd(aucs),
                low_mean=_nanmean(r.low for r in members),
                high_mean=_nanmean(r.high for r in members),
                delong_low_mean=_nanmean(r.delong_low for r in members),
                delong_high_mean=_nanmean(r.delong_high for r in members),
                n_test=min(r.n_test for r in members),
                confidence_level=members[0].confidence_level,
            )
        )
    return sorted(out, key=result_sort_key)


def summarize_comparisons(rows: Iterable[ComparisonRow], alpha: float = 0.05) -> list[ComparisonSummary]:
    """Mean and sample sd of the AUC difference over seeds for each comparison, and significant seeds."""
    groups: dict[tuple[str, str, float, str, str], list[ComparisonRow]] = {}
    for row in rows:
        groups.setdefault((row.task, row.sampling, row.train_fraction, row.model_a, row.model_b), []).append(
            row
        )
    out = []
    for (task, sampling, fraction, model_a, model_b), members in groups.items():
        deltas = [r.delta for r in members]
        p_values = [r.bootstrap_p if math.isnan(r.delong_p) else r.delong_p for r in members]
        out.append(
            ComparisonSummary(
                task=task,
                sampling=sampling,
                train_fraction=fraction,
                model_a=model_a,
                model_b=model_b,
                n_seeds=len(members),
                delta_mean=float(np.mean(deltas)),
                delta_sd=_sd(deltas),
                n_significant=sum(1 for p in p_values if not math.isnan(p) and p < alpha),
                alpha=alpha,
            )
        )
    return sorted(out, key=comparison_sort_key)


# ----------------------------------------------------------------------------- CSV round trip

Row = TypeVar("Row", ResultRow, AggregateRow, ComparisonRow, ComparisonSummary)


def write_rows_csv(rows: Iterable[Any], path: str | Path, row_type: type) -> Path:
    """Write dataclass rows to ``path`` (header = field names; floats with full precision)."""
    path = Path(path)
    names = [f.name for f in dataclasses.fields(row_type)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(names)
        for row in rows:
            if not isinstance(row, row_type):
                raise TypeError(f"rows: expected {row_type.__name__}, got {type(row).__name__}")
            writer.writerow([_cell(getattr(row, name)) for name in names])
    return path


def _cell(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(str(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def read_rows_csv(path: str | Path, row_type: type[Row]) -> list[Row]:
    """Read rows written by :func:`write_rows_csv` back into ``row_type`` instances.

    Raises:
        ValueError: naming the file, line and column of a missing column or a malformed value.
    """
    path = Path(path)
    fields = {f.name: f for f in dataclasses.fields(row_type)}
    hints = {name: str(f.type) for name, f in fields.items()}
    parsers: dict[str, Callable[[str], Any]] = {}
    for name, hint in hints.items():
        if hint.startswith("tuple"):
            parsers[name] = lambda text: tuple(int(v) for v in text.split())
        elif hint == "float":
            parsers[name] = float
        elif hint == "int":
            parsers[name] = int
        else:
            parsers[name] = str
    out: list[Row] = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        absent = [
            name
            for name, f in fields.items()
            if name not in (reader.fieldnames or []) and f.default is dataclasses.MISSING
        ]
        if absent:
            raise ValueError(f"{path}: missing column(s) {', '.join(absent)}")
        for line, record in enumerate(reader, start=2):
            values = {}
            for name, text in record.items():
                if name not in parsers:
                    continue
                try:
                    values[name] = parsers[name](text)
                except ValueError as exc:
                    raise ValueError(f"{path}:{line}: column {name!r}: bad value {text!r} ({exc})") from exc
            out.append(row_type(**values))
    return out
