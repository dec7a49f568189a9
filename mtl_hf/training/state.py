"""The trainer's own progress, saved as JSON in every checkpoint beside Accelerate's state."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import write_text


@dataclass
class TrainerState:
    """Where a run stands; enough, with Accelerate's state, to resume it exactly.

    Attributes:
        global_step: Optimizer steps taken (skipped non-finite steps included).
        phase_index: Index of the current phase in the strategy's plan.
        epoch_in_phase: Epoch index within the phase.
        batches_in_epoch: Micro-batches of the current epoch already consumed.
        best_metric: Best validation score of the monitored task so far (its selection metric).
        best_step: Step at which it was reached.
        evals_without_improvement: For early stopping.
        nonfinite_streak: Consecutive steps skipped for a NaN / inf loss.
        nonfinite_total: All steps skipped for a NaN / inf loss.
        nonfinite_culprits: For the current streak of skipped steps, how many of them each task made
            non-finite (``"(weighted total)"``: a step whose task losses were all finite), so that the
            stop can say which task went wrong.
        skipped_samples: Training samples left out as unreadable (``training.on_data_error: skip``).
        stopped_early: Early stopping ended training.
        finished: The run completed (test set evaluated, outputs written).
        run_id: The identity of the run (recorded in ``run_info.json`` at its start): a checkpoint is
            resumed only into the run that wrote it.
        epoch_loss_sums, epoch_loss_counts, epoch_steps: Training losses of the current epoch so far
            (for the weighter), and how many steps had each (a task may be absent from a step).
        log_sums, log_counts, log_steps: Values accumulated since the last ``metrics.jsonl`` row.
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
    nonfinite_culprits: dict[str, int] = dataclasses.field(default_factory=dict)
    skipped_samples: int = 0
    stopped_early: bool = False
    finished: bool = False
    run_id: str | None = None
    epoch_loss_sums: dict[str, float] = dataclasses.field(default_factory=dict)
    epoch_loss_counts: dict[str, int] = dataclasses.field(default_factory=dict)
    epoch_steps: int = 0
    log_sums: dict[str, float] = dataclasses.field(default_factory=dict)
    log_counts: dict[str, int] = dataclasses.field(default_factory=dict)
    log_steps: int = 0

    def add_epoch_losses(self, losses: dict[str, float]) -> None:
        """Accumulate a step's task losses for the weighter's end-of-epoch hook (kept across resume)."""
        _accumulate(self.epoch_loss_sums, self.epoch_loss_counts, losses)
        self.epoch_steps += 1

    def pop_epoch_means(self) -> dict[str, float]:
        """Each task's mean over the epoch's steps that had its loss."""
        means = _means(self.epoch_loss_sums, self.epoch_loss_counts, self.epoch_steps)
        self.epoch_loss_sums, self.epoch_loss_counts, self.epoch_steps = {}, {}, 0
        return means

    def end_epoch(self, phase_epochs: int) -> None:
        """Move to the next epoch, and to the next phase after the last of the current phase's ``phase_epochs``."""
        self.epoch_in_phase += 1
        self.batches_in_epoch = 0
        if self.epoch_in_phase == phase_epochs:
            self.phase_index += 1
            self.epoch_in_phase = 0

    def add_log_values(self, values: dict[str, float]) -> None:
        """Accumulate a step's logged values until the next log row (kept across resume)."""
        _accumulate(self.log_sums, self.log_counts, values)
        self.log_steps += 1

    def pop_log_means(self) -> dict[str, float]:
        """Each value's mean over the steps since the last row that had it."""
        means = _means(self.log_sums, self.log_counts, self.log_steps)
        self.log_sums, self.log_counts, self.log_steps = {}, {}, 0
        return means

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainerState:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self, path: Path) -> None:
        write_text(path, self.to_json())


def _accumulate(sums: dict[str, float], counts: dict[str, int], values: dict[str, float]) -> None:
    for name, value in values.items():
        sums[name] = sums.get(name, 0.0) + value
        counts[name] = counts.get(name, 0) + 1


def _means(sums: dict[str, float], counts: dict[str, int], steps: int) -> dict[str, float]:
    # A state saved before counts were kept holds none: every value was in every step then.
    return {k: v / max(1, counts.get(k, steps)) for k, v in sums.items()}
