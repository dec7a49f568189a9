"""The low-data study: test ROC AUC against the training fraction, seeds pooled, with patient intervals.

A grid trains every strategy at several training fractions with several seeds, and every run is
scored on the same test samples. Per strategy and fraction, :func:`seed_mean_auc` reports the mean
over seeds of the test ROC AUC, with a patient-level percentile bootstrap interval of that mean: each
resample draws test patients with replacement and recomputes every seed's AUC on them. Per pair of
strategies, :func:`seed_mean_difference` gives the difference of the two seed means on the same
resamples (a paired bootstrap) with its interval and a two-sided p-value.

What the intervals cover: the chance of which test patients were drawn, for these trained models.
The spread over training seeds is reported beside them (``seed_sd``), not folded in: with three
seeds it could not be estimated well enough to resample. The p-values are not corrected for the
number of fractions and pairs tested.

Mechanically, the seeds' scores become the columns of one :class:`~mtl_hf.evaluation.BinaryColumns`
(the labels of every column are the same test labels), so the macro AUC of
:func:`~mtl_hf.evaluation.bootstrap.bootstrap_columns` is the seed mean; for a difference, both
strategies' seeds are columns of one block, so every resample scores them on the same patients.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .bootstrap import DEFAULT_RESAMPLES, bootstrap_columns, bootstrap_p_value, percentile_interval
from .inputs import BinaryColumns, group_codes, to_binary_columns
from .point_estimates import roc_auc_per_column
from .report import align_by_sample_id
from .results import SAMPLING_ORDER, STRATEGY_ORDER, rank_in, strategy_label
from .score_layouts import DEFAULT_LAYOUT


@dataclass(frozen=True)
class RunScores:
    """One trained model's scores on the test samples.

    Attributes:
        ids: ``(n,)`` sample ids (used to line up runs).
        patients: ``(n,)`` patient id per sample (the bootstrap's resampling unit).
        references: ground truth as :func:`~mtl_hf.evaluation.to_binary_columns` takes it for ``task``.
        scores: ``(n,)`` or ``(n, K)`` probabilities.
        task: the scores' layout (:mod:`~mtl_hf.evaluation.score_layouts`): ``"binary"``,
            ``"multilabel"`` or ``"multiclass"``.
    """

    ids: Sequence[Any]
    patients: Sequence[Any]
    references: Any
    scores: Any
    task: str = DEFAULT_LAYOUT


@dataclass(frozen=True)
class CurvePoint:
    """One strategy at one training fraction: the seed-mean test ROC AUC and its patient interval.

    Attributes:
        task, sampling, train_fraction, model: Which results (``model``: the run label, e.g. ``mtl``).
        n_seeds: Seeds pooled.
        roc_auc: Mean over seeds of the test ROC AUC (macro over labels for multi-output tasks).
        low, high: Patient-bootstrap percentile interval of that mean.
        seed_sd: Sample standard deviation of the per-seed AUCs (NaN for one seed).
        n_test, n_patients: Test samples and test patients.
        n_train_patients: Training patients at this fraction (0 when unknown).
        confidence_level: Level of the interval.
    """

    task: str
    sampling: str
    train_fraction: float
    model: str
    n_seeds: int
    roc_auc: float
    low: float
    high: float
    seed_sd: float
    n_test: int
    n_patients: int
    n_train_patients: int = 0
    confidence_level: float = 0.95

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2.0


@dataclass(frozen=True)
class CurveDifference:
    """Two strategies at one training fraction: the paired difference of their seed-mean AUCs.

    Attributes:
        task, sampling, train_fraction: Which results.
        model_a, model_b: The run labels; ``delta`` is A minus B.
        n_seeds: Seeds pooled per strategy.
        delta: ``roc_auc(A) - roc_auc(B)`` (seed means).
        low, high: Paired patient-bootstrap percentile interval of ``delta``.
        p_value: Two-sided bootstrap p-value of ``delta == 0``.
        confidence_level: Level of the interval.
    """

    task: str
    sampling: str
    train_fraction: float
    model_a: str
    model_b: str
    n_seeds: int
    delta: float
    low: float
    high: float
    p_value: float
    confidence_level: float = 0.95


def model_label(model: str) -> str:
    """Display name of a run label: ``"mtl"`` -> ``"MTL"``, ``"mtl:uncertainty"`` -> ``"MTL (uncertainty)"``."""
    strategy, _, weighting = model.partition(":")
    return f"{strategy_label(strategy)} ({weighting})" if weighting else strategy_label(strategy)


def pooled_columns(runs: Sequence[RunScores]) -> tuple[BinaryColumns, np.ndarray]:
    """The runs' scores stacked as binary columns over the first run's sample order, and patient codes.

    Raises:
        ValueError: no run, runs scored on different samples, or with different references.
    """
    if not runs:
        raise ValueError("runs: no test scores to pool")
    first = runs[0]
    base = to_binary_columns(first.references, first.scores, first.task)
    labels, scores = [base.labels], [base.scores]
    for index, run in enumerate(runs[1:], start=1):
        order = align_by_sample_id(first.ids, run.ids, name_a="runs[0].ids", name_b=f"runs[{index}].ids")
        columns = to_binary_columns(
            np.asarray(run.references)[order], np.asarray(run.scores)[order], run.task
        )
        if not np.array_equal(columns.labels, base.labels):
            raise ValueError(f"runs[{index}]: its test labels differ from runs[0]'s on the same samples")
        labels.append(columns.labels)
        scores.append(columns.scores)
    stacked = BinaryColumns(first.task, np.concatenate(labels), np.concatenate(scores))
    return stacked, group_codes(first.patients, base.num_samples)


def seed_mean_auc(
    runs: Sequence[RunScores],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence_level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float, float]:
    """``(mean AUC over runs, low, high, sd over runs)`` with a patient-bootstrap interval of the mean."""
    columns, codes = pooled_columns(runs)
    result = bootstrap_columns(
        columns, codes, n_resamples=n_resamples, confidence_level=confidence_level, seed=seed
    )
    per_run = roc_auc_per_column(columns).reshape(len(runs), -1).mean(axis=1)
    sd = float(np.std(per_run, ddof=1)) if len(runs) > 1 else math.nan
    return result.estimate, result.low, result.high, sd


def seed_mean_difference(
    runs_a: Sequence[RunScores],
    runs_b: Sequence[RunScores],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence_level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float, float]:
    """``(delta, low, high, p)``: seed-mean AUC of A minus that of B, with a paired patient bootstrap
    (both sides scored on the same resamples; each side's mean is over its own runs)."""
    if not runs_a or not runs_b:
        raise ValueError("runs_a, runs_b: each needs at least one run")
    columns, codes = pooled_columns([*runs_a, *runs_b])
    split = columns.num_columns * len(runs_a) // (len(runs_a) + len(runs_b))
    result = bootstrap_columns(
        columns, codes, n_resamples=n_resamples, confidence_level=confidence_level, seed=seed
    )
    differences = result.distribution[:, :split].mean(axis=1) - result.distribution[:, split:].mean(axis=1)
    low, high = percentile_interval(differences, confidence_level)
    estimate = result.per_column_estimate[:split].mean() - result.per_column_estimate[split:].mean()
    return float(estimate), float(low), float(high), bootstrap_p_value(differences)


StudyKey = tuple[str, str, str, float]
"""``(task, model, sampling, train_fraction)``."""


def low_data_study(
    scores: Mapping[StudyKey, Sequence[RunScores]],
    pairs: Sequence[tuple[str, str]],
    *,
    train_patients: Mapping[float, int] | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence_level: float = 0.95,
    seed: int = 0,
) -> tuple[list[CurvePoint], list[CurveDifference]]:
    """Every curve point and every paired difference of a grid's test scores.

    Args:
        scores: the runs (one per seed) of each ``(task, model, sampling, train_fraction)``.
        pairs: ``(model_a, model_b)`` pairs to compare (A minus B) wherever both have runs.
        train_patients: training patients per fraction, for the tables.
        n_resamples, confidence_level, seed: of the patient bootstrap.

    Returns:
        Points and differences sorted by task, sampling, fraction and model (paper order).
    """
    points = []
    for (task, model, sampling, fraction), runs in scores.items():
        auc, low, high, sd = seed_mean_auc(
            runs, n_resamples=n_resamples, confidence_level=confidence_level, seed=seed
        )
        points.append(
            CurvePoint(
                task=task,
                sampling=sampling,
                train_fraction=float(fraction),
                model=model,
                n_seeds=len(runs),
                roc_auc=auc,
                low=low,
                high=high,
                seed_sd=sd,
                n_test=len(runs[0].ids),
                n_patients=len(set(runs[0].patients)),
                n_train_patients=(train_patients or {}).get(fraction, 0),
                confidence_level=confidence_level,
            )
        )
    differences = []
    for task, model, sampling, fraction in scores:
        for a, b in pairs:
            if model != a or (task, b, sampling, fraction) not in scores:
                continue
            runs_a, runs_b = scores[(task, a, sampling, fraction)], scores[(task, b, sampling, fraction)]
            delta, low, high, p = seed_mean_difference(
                runs_a, runs_b, n_resamples=n_resamples, confidence_level=confidence_level, seed=seed
            )
            differences.append(
                CurveDifference(
                    task=task,
                    sampling=sampling,
                    train_fraction=float(fraction),
                    model_a=a,
                    model_b=b,
                    n_seeds=min(len(runs_a), len(runs_b)),
                    delta=delta,
                    low=low,
                    high=high,
                    p_value=p,
                    confidence_level=confidence_level,
                )
            )
    points.sort(
        key=lambda p: (p.task, rank_in(SAMPLING_ORDER, p.sampling), p.train_fraction, _model_rank(p.model))
    )
    differences.sort(
        key=lambda d: (
            d.task,
            rank_in(SAMPLING_ORDER, d.sampling),
            d.train_fraction,
            _model_rank(d.model_a),
            _model_rank(d.model_b),
        )
    )
    return points, differences


def _model_rank(model: str) -> tuple[tuple[int, str], str]:
    strategy, _, weighting = model.partition(":")
    return rank_in(STRATEGY_ORDER, strategy), weighting
