"""Every task's metrics through what its head declares, and one results format for all of them.

A head says which metrics it reports (:meth:`~mtl_hf.heads.TaskHead.metric_specs`: name, higher or
lower is better, which one selects the model, which go into the model card). How they are computed
follows from what the head gives:

* a head with class probabilities (``prediction_kind``, :meth:`~mtl_hf.heads.TaskHead.predictions`)
  is scored by ROC AUC through the ``mtl_roc_auc`` evaluate module, with the patient bootstrap, DeLong's
  interval and, where the metric module allows one, an operating point chosen on the validation split
  (:class:`ScoreEvaluator`);
* any other head with metrics gives additive per-sample statistics
  (:meth:`~mtl_hf.heads.TaskHead.metric_statistics`), whose sums give its metrics, exact across
  processes and with patient-bootstrap intervals (:class:`AdditiveEvaluator`).

Either way a task's test results are rows of (task, metric, value, lower, upper)
(:class:`MetricResult`), the format ``test_metrics.json``, ``test_results.csv``, ``mtl-hf compare`` and
the model card share. The heads are reached through the small protocol :class:`EvaluatedHead`; this
module imports no model code.
"""

from __future__ import annotations

import csv
import functools
import io
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import torch

from .additive import bootstrap_additive_metrics
from .inputs import roc_inputs
from .report import evaluate_scores
from .score_layouts import score_layout


class Spec(Protocol):
    """What this module reads of a head's :class:`~mtl_hf.heads.MetricSpec`."""

    @property
    def name(self) -> str: ...
    @property
    def higher_is_better(self) -> bool: ...
    @property
    def model_index(self) -> str | None: ...


class EvaluatedHead(Protocol):
    """What this module reads of a task head (:class:`~mtl_hf.heads.TaskHead`)."""

    @property
    def task_name(self) -> str: ...
    @property
    def prediction_kind(self) -> str | None: ...

    def metric_specs(self) -> Sequence[Spec]: ...
    def predictions(self, logits: torch.Tensor) -> torch.Tensor | None: ...
    def label_columns(self, labels: torch.Tensor) -> torch.Tensor: ...
    def metric_statistics(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor: ...
    def metrics_from_sums(self, sums: torch.Tensor) -> Mapping[str, torch.Tensor]: ...


@dataclass(frozen=True)
class MetricResult:
    """One test metric of one task: the row every task's results are written as.

    Attributes:
        task: The task.
        metric: The metric's name (``roc_auc``, ``dice``, ``rmse``, ...).
        value: Its value on the test split (NaN when undefined, e.g. a single class).
        lower, upper: Its patient-bootstrap percentile interval (NaN when not drawn).
        higher_is_better: From the head's metric spec.
        model_index: The name it has in the model card's ``model-index``, or ``None`` to leave it out.
        n_samples, n_groups: Test samples labelled for the task, and patients among them.
        confidence_level: Level of the interval.
    """

    task: str
    metric: str
    value: float
    lower: float
    upper: float
    higher_is_better: bool = True
    model_index: str | None = None
    n_samples: int = 0
    n_groups: int = 0
    confidence_level: float = 0.95

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> MetricResult:
        """A row of ``test_metrics.json`` (its ``metrics`` lists) or ``test_results.csv`` back."""

        def number(key: str) -> float:
            value = row.get(key)
            return math.nan if value in (None, "") else float(value)

        flag = row.get("higher_is_better", True)
        return cls(
            task=str(row["task"]),
            metric=str(row["metric"]),
            value=number("value"),
            lower=number("lower"),
            upper=number("upper"),
            higher_is_better=flag if isinstance(flag, bool) else str(flag).lower() == "true",
            model_index=row.get("model_index") or None,
            n_samples=int(float(row.get("n_samples") or 0)),
            n_groups=int(float(row.get("n_groups") or 0)),
            confidence_level=number("confidence_level") if row.get("confidence_level") else 0.95,
        )


RESULT_COLUMNS = tuple(MetricResult.__dataclass_fields__)
"""Columns of ``test_results.csv``."""


def results_csv(rows: Sequence[MetricResult]) -> str:
    """``test_results.csv``'s text: a header of :data:`RESULT_COLUMNS` and one line per row."""
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=RESULT_COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.to_dict().items()})
    return buffer.getvalue()


def results_of(test_metrics: Mapping[str, Any]) -> list[MetricResult]:
    """Every row of a run's ``test_metrics.json`` (each task's ``metrics`` list), in task order."""
    rows = []
    for task, values in test_metrics.items():
        if isinstance(values, Mapping):
            rows += [MetricResult.from_dict({"task": task, **r}) for r in values.get("metrics") or []]
    return rows


@dataclass(frozen=True)
class TestSettings:
    """How test intervals are drawn: resamples, level and seed of the patient bootstrap."""

    n_resamples: int = 2000
    confidence_level: float = 0.95
    seed: int = 0


class TaskEvaluator(ABC):
    """Computes one task's metrics from per-sample rows that its head gives.

    :meth:`rows` runs per batch (each process on its shard); the rows of every labelled test sample are
    gathered, then :meth:`validation_metrics` or :meth:`test_results` reduce them.
    """

    needs_validation: bool = False
    """Whether :meth:`test_results` uses the validation split's rows (to choose an operating point)."""

    def __init__(self, head: EvaluatedHead) -> None:
        self.head = head
        self.specs = {s.name: s for s in head.metric_specs()}

    @abstractmethod
    def rows(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``(B, S)`` float per-sample rows of labelled samples."""

    @abstractmethod
    def validation_metrics(self, rows: torch.Tensor) -> dict[str, float]:
        """``{metric: value}`` over every row."""

    @abstractmethod
    def test_results(
        self,
        rows: torch.Tensor,
        patients: Sequence[Any] | None,
        settings: TestSettings,
        validation: torch.Tensor | None = None,
    ) -> tuple[dict[str, Any], list[MetricResult]]:
        """The task's entry of ``test_metrics.json`` (every number computed) and its result rows."""

    def result(self, metric: str, value: float, lower: float, upper: float, **counts: Any) -> MetricResult:
        spec = self.specs.get(metric)
        return MetricResult(
            task=self.head.task_name,
            metric=metric,
            value=float(value),
            lower=float(lower),
            upper=float(upper),
            higher_is_better=spec.higher_is_better if spec is not None else True,
            model_index=spec.model_index if spec is not None else None,
            **counts,
        )


class AdditiveEvaluator(TaskEvaluator):
    """Metrics from summed per-sample statistics; patient-bootstrap intervals on the test split."""

    def rows(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.head.metric_statistics(logits, labels)

    def validation_metrics(self, rows: torch.Tensor) -> dict[str, float]:
        return {k: float(v) for k, v in self.head.metrics_from_sums(rows.sum(0)).items()}

    def test_results(
        self,
        rows: torch.Tensor,
        patients: Sequence[Any] | None,
        settings: TestSettings,
        validation: torch.Tensor | None = None,
    ) -> tuple[dict[str, Any], list[MetricResult]]:
        intervals = bootstrap_additive_metrics(
            rows.numpy(),
            self.head.metrics_from_sums,
            patients or None,
            n_resamples=settings.n_resamples,
            confidence_level=settings.confidence_level,
            seed=settings.seed,
        )
        first = next(iter(intervals.values()))
        counts = {
            "n_samples": first.n_samples,
            "n_groups": first.n_groups,
            "confidence_level": settings.confidence_level,
        }
        entry = {
            "n_samples": first.n_samples,
            "n_groups": first.n_groups,
            **{name: i.estimate for name, i in intervals.items()},
            **{f"{name}_low": i.low for name, i in intervals.items()},
            **{f"{name}_high": i.high for name, i in intervals.items()},
            "confidence_level": settings.confidence_level,
            "n_resamples": settings.n_resamples,
        }
        rows_out = [self.result(name, i.estimate, i.low, i.high, **counts) for name, i in intervals.items()]
        return entry, rows_out


class ScoreEvaluator(TaskEvaluator):
    """ROC AUC of class probabilities (the ``mtl_roc_auc`` metric's configuration is the head's
    ``prediction_kind``); rows are the probabilities followed by the label columns."""

    def __init__(self, head: EvaluatedHead) -> None:
        super().__init__(head)
        self.config = str(head.prediction_kind)
        self.needs_validation = supports_operating_point(self.config)

    def rows(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        probabilities = self.head.predictions(logits)
        assert probabilities is not None
        return torch.cat([probabilities.float(), self.head.label_columns(labels).float()], dim=1)

    def split(self, rows: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, references)`` as the ``mtl_roc_auc`` metric takes them."""
        values = np.asarray(rows, dtype=np.float64)
        k = values.shape[1] // 2
        references, scores = roc_inputs(values[:, k:], values[:, :k], self.config)
        return scores, references

    def validation_metrics(self, rows: torch.Tensor) -> dict[str, float]:
        scores, references = self.split(rows)
        return {"roc_auc": roc_auc(scores, references, self.config)}

    def test_results(
        self,
        rows: torch.Tensor,
        patients: Sequence[Any] | None,
        settings: TestSettings,
        validation: torch.Tensor | None = None,
    ) -> tuple[dict[str, Any], list[MetricResult]]:
        scores, references = self.split(rows)
        threshold: dict[str, Any] = {}
        if validation is not None and len(validation):
            val_scores, val_references = self.split(validation)
            if len(np.unique(val_references)) == 2:
                threshold = {"validation_references": val_references, "validation_predictions": val_scores}
        try:
            report = evaluate_scores(
                references,
                scores,
                task=self.config,
                groups=patients or None,
                confidence_level=settings.confidence_level,
                n_resamples=settings.n_resamples,
                seed=settings.seed,
                **threshold,
            )
        except ValueError as exc:  # e.g. a single class in a tiny test split
            return {"roc_auc": None, "error": str(exc), "n_samples": len(scores)}, []
        entry = {"kind": self.config, **report.to_dict()}
        counts = {
            "n_samples": int(entry.get("n_samples") or len(scores)),
            "n_groups": int(entry.get("n_groups") or 0),
            "confidence_level": settings.confidence_level,
        }
        return entry, [self.result("roc_auc", report.roc_auc, report.low, report.high, **counts)]


def evaluator_for(head: EvaluatedHead) -> TaskEvaluator | None:
    """The evaluator of ``head``'s metrics, or ``None`` for a head that reports none (masked image
    modeling)."""
    if not head.metric_specs():
        return None
    return ScoreEvaluator(head) if head.prediction_kind is not None else AdditiveEvaluator(head)


@functools.cache
def _metric(config: str) -> Any:
    from .loading import load_metric

    return load_metric(config)


def roc_auc(scores: np.ndarray, references: np.ndarray, config: str) -> float:
    """ROC AUC through the package's evaluate metric in configuration ``config`` (the head's
    ``prediction_kind``); NaN when the references hold a single class."""
    references = np.asarray(references)
    if len(np.unique(references.reshape(-1))) < 2:
        return float("nan")
    result = _metric(config).compute(
        predictions=np.asarray(scores).tolist(),
        references=references.astype(int).tolist(),
        n_resamples=0,
        delong=False,
    )
    return float(result["roc_auc"])


def supports_operating_point(config: str) -> bool:
    """Whether the ``mtl_roc_auc`` configuration ``config`` reports accuracy, sensitivity and
    specificity at a threshold chosen on the validation split."""
    return score_layout(config).single_score
