"""Training strategies: which tasks a model carries and trains, in which phases, with which weighting.

The paper compares three strategies on one backbone. Each is a :class:`Strategy` object in the
:data:`STRATEGIES` registry, and everything that depends on the strategy asks it rather than testing
its name: :func:`~mtl_hf.training.setup.build_model` (the model's tasks and weighting), the training
loop (the phases it runs in order) and ``mtl-hf compare`` (whether the grid's weightings apply, the
order of the default comparisons):

* ``stl``: one phase, the supervised tasks alone, summed (self-supervised heads are dropped);
* ``pretrain``: a self-supervised phase (e.g. MIM) for ``pretrain_epochs``, then a supervised phase
  from those weights, with the optimizer state and the learning-rate schedule restarted;
* ``mtl``: one phase, every task jointly through the model's weighter.

Supervised tasks are those whose head needs labels; self-supervised ones (MIM) need none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..heads import HEADS
from ..registry import Registry

if TYPE_CHECKING:
    from ..configuration_mtl import MTLConfig
    from .config import TrainingSection


@dataclass(frozen=True)
class Phase:
    """One stretch of training.

    Attributes:
        name: ``"pretrain"``, ``"finetune"`` or ``"joint"`` (used in logs).
        tasks: Tasks the model runs in this phase.
        epochs: Its length.
        selects_model: Whether validation in this phase may choose the best model (phases without a
            supervised task cannot).
    """

    name: str
    tasks: tuple[str, ...]
    epochs: int
    selects_model: bool


def supervised_tasks(config: MTLConfig) -> list[str]:
    """Tasks of ``config`` whose heads learn from labels, in config order."""
    return _tasks_needing_labels(config.tasks or {}, True)


def self_supervised_tasks(config: MTLConfig) -> list[str]:
    """Tasks of ``config`` whose heads learn without labels (MIM, MAE), in config order."""
    return _tasks_needing_labels(config.tasks or {}, False)


def _tasks_needing_labels(tasks: Mapping[str, Mapping[str, Any]], labels: bool) -> list[str]:
    return [n for n, spec in tasks.items() if HEADS.get(spec["type"]).requires_labels == labels]


class Strategy:
    """How one strategy trains (subclass, set the class attributes, implement :meth:`phases`).

    Attributes:
        name: The registered name (``training.strategy``).
        uses_weighter: Whether the configured weighting chooses how tasks are combined in this
            strategy's training, so that ``mtl-hf compare`` runs it once per grid weighting and labels
            its runs ``<name>:<weighting>``; other strategies run once with their own weighting.
        comparison_order: Place in the default comparisons of ``mtl-hf compare``: a strategy is compared
            as ``a - b`` against every strategy with a higher order.
    """

    name: ClassVar[str]
    uses_weighter: ClassVar[bool] = False
    comparison_order: ClassVar[int] = 0

    def model_tasks(self, tasks: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The tasks the model carries (default: every configured task)."""
        return dict(tasks)

    def model_weighting(self, weighting: dict[str, Any] | None) -> dict[str, Any] | None:
        """The weighting the model is built with (default: the configured one)."""
        return weighting

    def phases(self, config: MTLConfig, training: TrainingSection) -> list[Phase]:
        """The phases of this strategy for a model configured as ``config``."""
        raise NotImplementedError

    def plan(self, config: MTLConfig, training: TrainingSection) -> list[Phase]:
        """:meth:`phases`, without phases of zero epochs; a model with no supervised task is an error
        (nothing could select the best model)."""
        if not supervised_tasks(config):
            raise ValueError(
                "model.tasks has no supervised task (e.g. type: binary_classification) to train or select on"
            )
        return [p for p in self.phases(config, training) if p.epochs > 0]


STRATEGIES: Registry[type[Strategy]] = Registry("strategy", "mtl_hf.strategies")
"""Registry of training strategies, extensible through the ``mtl_hf.strategies`` entry-point group."""


def get_strategy(name: str) -> Strategy:
    """The strategy registered as ``name``; an unknown name raises an error listing the known ones."""
    return STRATEGIES.get(name)()


@STRATEGIES.register("stl")
class SingleTask(Strategy):
    """The supervised tasks alone: self-supervised heads are dropped (they would never train), and the
    loss is the plain sum (a weighting's options could name the dropped tasks)."""

    name = "stl"
    comparison_order = 2

    def model_tasks(self, tasks: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {n: dict(tasks[n]) for n in _tasks_needing_labels(tasks, True)}

    def model_weighting(self, weighting: dict[str, Any] | None) -> dict[str, Any] | None:
        return {"type": "fixed"}

    def phases(self, config: MTLConfig, training: TrainingSection) -> list[Phase]:
        return [Phase("finetune", tuple(supervised_tasks(config)), training.epochs, True)]


@STRATEGIES.register("pretrain")
class PretrainThenFinetune(Strategy):
    """Self-supervised tasks first, then the supervised ones from those weights (fresh optimizer state and
    schedule). Each phase trains one kind of task, so the grid's weightings do not apply."""

    name = "pretrain"
    comparison_order = 1

    def phases(self, config: MTLConfig, training: TrainingSection) -> list[Phase]:
        ssl = self_supervised_tasks(config)
        if not ssl:
            raise ValueError(
                "training.strategy 'pretrain' needs a self-supervised task (e.g. type: mim) in model.tasks"
            )
        return [
            Phase("pretrain", tuple(ssl), training.pretrain_epochs, False),
            Phase("finetune", tuple(supervised_tasks(config)), training.epochs, True),
        ]


@STRATEGIES.register("mtl")
class MultiTask(Strategy):
    """Every task jointly, combined by the model's weighter."""

    name = "mtl"
    uses_weighter = True
    comparison_order = 0

    def phases(self, config: MTLConfig, training: TrainingSection) -> list[Phase]:
        return [Phase("joint", tuple(config.task_names), training.epochs, True)]
