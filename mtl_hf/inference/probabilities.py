"""From a head's logits to its per-sample predictions, and the names of the resulting output columns.

The head decides (:class:`~mtl_hf.heads.TaskHead`): :meth:`~mtl_hf.heads.TaskHead.predictions` gives a
classifier's probabilities (sigmoid for binary and multi-label heads, softmax over classes for
multi-class ones) or a regression's values in the target's units, and
:meth:`~mtl_hf.heads.TaskHead.output_names` names their columns. A head of another kind (from a plugin,
say) gives predictions by overriding those methods; heads that give none (masked image modeling; a
segmentation head gives masks, :mod:`mtl_hf.inference.masks`) are left out. The functions keep the
names they had when every prediction was a probability.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import torch

from ..heads import TaskHead

ProbabilityFunction = Callable[[torch.Tensor], torch.Tensor]


def probability_function(model: Any, task: str) -> ProbabilityFunction | None:
    """The function turning task ``task``'s logits into its ``(B, K)`` predictions (probabilities of a
    classifier), or ``None`` if its head gives none."""
    tasks = model.config.tasks or {}
    if task not in tasks:
        raise ValueError(f"no task named {task!r}; the model's tasks are {', '.join(tasks)}")
    head = model.heads[task]
    overridden = any(
        getattr(type(head), name, None) is not getattr(TaskHead, name)
        for name in ("predictions", "probabilities")
    )
    if getattr(head, "prediction_kind", None) is not None or overridden:
        return cast(ProbabilityFunction, head.predictions)
    return None


def classification_tasks(model: Any, tasks: Sequence[str] | None = None) -> list[str]:
    """The tasks of ``model`` that give per-sample predictions, probabilities or values (all of them, or
    those named in ``tasks``).

    Raises ``ValueError`` for a named task that is unknown or has no predictions (e.g. ``mim``).
    """
    names = list(model.config.tasks or {})
    if tasks is None:
        return [t for t in names if probability_function(model, t) is not None]
    if isinstance(tasks, str):
        tasks = [tasks]
    chosen = []
    for t in tasks:
        if probability_function(model, t) is None:
            kind = (model.config.tasks or {})[t]["type"]
            raise ValueError(
                f"task {t!r} ({kind}) gives no class probabilities (nor other per-sample values)"
            )
        chosen.append(t)
    return chosen


def task_probabilities(
    model: Any, logits: Mapping[str, torch.Tensor], tasks: Sequence[str]
) -> dict[str, torch.Tensor]:
    """``{task: (B, K) float32 predictions}`` (probabilities of a classifier, values of a regression) from
    a model output's ``logits`` dict, one column per output (see :func:`output_names`)."""
    out = {}
    for task in tasks:
        if task not in logits:
            raise ValueError(f"the model output has no logits for task {task!r}")
        fn = probability_function(model, task)
        assert fn is not None
        p = fn(logits[task].float()).float()
        out[task] = p[:, None] if p.dim() == 1 else p
    return out


def output_names(model: Any, task: str) -> list[str]:
    """Names of task ``task``'s outputs, as its head gives them (:meth:`~mtl_hf.heads.TaskHead.output_names`):
    class or label names when configured, else their indices; a single output is named after the task."""
    return [str(n) for n in model.heads[task].output_names()]


def column_names(model: Any, task: str) -> list[str]:
    """CSV column names of task ``task``: ``task`` for a single output, else ``task/<output name>``."""
    names = output_names(model, task)
    if len(names) == 1 and names[0] == task:
        return [task]
    return [f"{task}/{n}" for n in names]
