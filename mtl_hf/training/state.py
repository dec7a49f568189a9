"""The trainer's own progress, saved as JSON in every checkpoint beside Accelerate's state."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class TrainerState:
    """Where a run stands; enough, with Accelerate's state, to resume it exactly.

    Attributes:
        global_step: Optimizer steps taken (skipped non-finite steps included).
        phase_index: Index of the current phase in the strategy's plan.
        epoch_in_phase: Epoch index within the phase.
        batches_in_epoch: Micro-batches of the current epoch already consumed.
        best_metric: Best validation ROC AUC of the monitored task so far.
        best_step: Step at which it was reached.
        evals_without_improvement: For early stopping.
        nonfinite_streak: Consecutive steps skipped for a NaN / inf loss.
        nonfinite_total: All steps skipped for a NaN / inf loss.
        stopped_early: Early stopping ended training.
        finished: The run completed (test set evaluated, outputs written).
    """

    global_step: int = 0
    phase_index: int = 0
    epoch_in_phase: int = 0
    batches_in_epoch: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0
    nonfinite_streak: int = 0
    nonfinite_total: int = 0
    stopped_early: bool = False
    finished: bool = False

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainerState:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self, path: Path) -> None:
        path.write_text(self.to_json())
