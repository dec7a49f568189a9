"""Choosing the best model on the validation split, and stopping early when it stops improving."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..options import OptionsError
from .strategies import supervised_tasks

if TYPE_CHECKING:
    from ..modeling_mtl import MTLModel
    from .state import TrainerState
    from .strategies import Phase


@dataclass(frozen=True)
class ModelSelection:
    """Which validation score selects the best model: ``<metric>/<monitor>``, the higher (or, for a metric
    whose spec says so, the lower) the better.

    Attributes:
        monitor: The task (``training.monitor``, default the first supervised task).
        metric: Its head's selection metric (ROC AUC for classifiers, e.g. mean Dice for segmentation,
            RMSE for regression).
        higher_is_better: From the metric's :class:`~mtl_hf.heads.MetricSpec`.
        patience: Evaluations without improvement before stopping early; ``None`` never stops.
        seed: Seeds the validation pass's masks, so every evaluation of a run hides the same patches.
        scored: Every task's own selection metric, ``{task: {"metric", "higher_is_better", "display"}}``
            (``display``: the spec's ``model_index`` name, else its name), recorded in ``selection.json``
            so that the model card can say each task's best validation value by its head's metric.
    """

    monitor: str
    metric: str
    patience: int | None = None
    seed: int = 0
    higher_is_better: bool = True
    scored: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def for_model(
        cls, model: MTLModel, monitor: str | None, patience: int | None = None, seed: int = 0
    ) -> ModelSelection:
        """The selection for ``model``; errors name ``training.monitor`` and the tasks that could serve."""
        task = monitor or supervised_tasks(model.config)[0]
        if task not in model.config.task_names:
            raise OptionsError(
                f"training.monitor: no task named {task!r}; tasks are {', '.join(model.config.task_names)}"
            )
        specs = {t: model.head(t).selection_metric() for t in model.config.task_names}
        scored = {
            t: {"metric": s.name, "higher_is_better": s.higher_is_better, "display": s.model_index or s.name}
            for t, s in specs.items()
            if s is not None
        }
        spec = specs[task]
        if spec is None:
            raise OptionsError(
                f"training.monitor: task {task!r} has no validation metric to select the best model by; "
                f"tasks with one: {', '.join(scored) or 'none'}"
            )
        return cls(task, spec.name, patience, seed, spec.higher_is_better, scored)

    def improved(self, metrics: Mapping[str, float], phase: Phase, state: TrainerState) -> float | None:
        """The score of a validation pass if it beats the best so far (``None`` otherwise, and when the
        phase may not select or the score is not finite). Counts evaluations without improvement and sets
        ``state.stopped_early`` once they reach the patience."""
        score = metrics.get(f"{self.metric}/{self.monitor}")
        if not phase.selects_model or score is None or not math.isfinite(score):
            return None
        best = state.best_metric
        if best is None or (score > best if self.higher_is_better else score < best):
            state.evals_without_improvement = 0
            return score
        state.evals_without_improvement += 1
        if self.patience is not None and state.evals_without_improvement >= self.patience:
            state.stopped_early = True
        return None

    def record(self, score: float, step: int) -> dict[str, Any]:
        """``selection.json`` of a best model chosen at ``step`` with ``score``."""
        return {
            "monitor": self.monitor,
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "value": score,
            "step": step,
            "tasks": {t: dict(m) for t, m in self.scored.items()},
        }
