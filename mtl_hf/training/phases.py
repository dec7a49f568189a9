"""Training strategies as sequences of phases: which tasks run, for how many epochs.

The paper compares three strategies on one backbone; each is a plan, and the training loop simply
runs the phases of the plan in order (it never branches on the strategy's name):

* ``stl``: one phase, the supervised tasks alone;
* ``pretrain``: a self-supervised phase (e.g. MIM) for ``pretrain_epochs``, then a supervised phase
  from those weights, with the optimizer state and the learning-rate schedule restarted;
* ``mtl``: one phase, every task jointly through the model's weighter.

Supervised tasks are those whose head needs labels; self-supervised ones (MIM) need none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..configuration_mtl import MTLConfig
from ..heads import HEADS
from .config import TrainingSection


@dataclass(frozen=True)
class Phase:
    """One stretch of training.

    Attributes:
        name: ``"pretrain"``, ``"finetune"`` or ``"joint"`` (used in logs and checkpoints).
        tasks: Tasks the model runs in this phase.
        epochs: Its length.
        selects_model: Whether validation ROC AUC in this phase may choose the best model (phases
            without a supervised task cannot).
    """

    name: str
    tasks: tuple[str, ...]
    epochs: int
    selects_model: bool


def supervised_tasks(config: MTLConfig) -> list[str]:
    return [n for n, spec in (config.tasks or {}).items() if HEADS.get(spec["type"]).requires_labels]


def self_supervised_tasks(config: MTLConfig) -> list[str]:
    return [n for n, spec in (config.tasks or {}).items() if not HEADS.get(spec["type"]).requires_labels]


def _stl(config: MTLConfig, training: TrainingSection) -> list[Phase]:
    return [Phase("finetune", tuple(supervised_tasks(config)), training.epochs, True)]


def _pretrain(config: MTLConfig, training: TrainingSection) -> list[Phase]:
    ssl = self_supervised_tasks(config)
    if not ssl:
        raise ValueError(
            "training.strategy 'pretrain' needs a self-supervised task (e.g. type: mim) in model.tasks"
        )
    return [
        Phase("pretrain", tuple(ssl), training.pretrain_epochs, False),
        Phase("finetune", tuple(supervised_tasks(config)), training.epochs, True),
    ]


def _mtl(config: MTLConfig, training: TrainingSection) -> list[Phase]:
    return [Phase("joint", tuple(config.task_names), training.epochs, True)]


STRATEGIES: dict[str, Callable[[MTLConfig, TrainingSection], list[Phase]]] = {
    "stl": _stl,
    "pretrain": _pretrain,
    "mtl": _mtl,
}


def plan_phases(config: MTLConfig, training: TrainingSection) -> list[Phase]:
    """The phases of ``training.strategy`` for a model configured as ``config``."""
    if not supervised_tasks(config):
        raise ValueError(
            "model.tasks has no supervised task (e.g. type: binary_classification) to train or select on"
        )
    phases = [p for p in STRATEGIES[training.strategy](config, training) if p.epochs > 0]
    return phases


def tasks_for_strategy(tasks: dict[str, dict], strategy: str) -> dict[str, dict]:
    """The tasks a strategy's model carries: STL drops self-supervised heads (they would never train)."""
    if strategy != "stl":
        return tasks
    return {n: spec for n, spec in tasks.items() if HEADS.get(spec["type"]).requires_labels}
