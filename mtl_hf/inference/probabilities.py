"""From a head's logits to its per-sample predictions, and what the head says they are.

The head decides (:class:`~mtl_hf.heads.TaskHead`): :meth:`~mtl_hf.heads.TaskHead.predictions` gives a
classifier's probabilities (sigmoid for binary and multi-label heads, softmax over classes for
multi-class ones) or a regression's values in the target's units, and
:meth:`~mtl_hf.heads.TaskHead.prediction_spec` says which of the two they are (its ``key``), names
their outputs and CSV columns, and how a volume's slices combine. A head of another kind (from a
plugin, say) gives predictions by overriding those methods; heads that give none (masked image
modeling; a segmentation head gives masks, :mod:`mtl_hf.inference.masks`) are left out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..heads import PredictionSpec
from .errors import PredictionError


def prediction_spec(model: Any, task: str) -> PredictionSpec | None:
    """Task ``task``'s :class:`~mtl_hf.heads.PredictionSpec`, or ``None`` if its head gives no
    per-sample predictions; a :class:`~mtl_hf.inference.errors.PredictionError` (a ``ValueError``) for
    an unknown task names the model's tasks."""
    tasks = model.config.tasks or {}
    if task not in tasks:
        raise PredictionError(f"no task named {task!r}; the model's tasks are {', '.join(tasks)}")
    spec: PredictionSpec | None = model.heads[task].prediction_spec()
    return spec


def prediction_tasks(model: Any, tasks: Sequence[str] | None = None, key: str | None = None) -> list[str]:
    """The tasks of ``model`` (all of them, or those named in ``tasks``) that give per-sample
    predictions, of the spec key ``key`` (``"probabilities"``, ``"values"``) when it is given.

    Raises :class:`~mtl_hf.inference.errors.PredictionError` (a ``ValueError``) for a named task that is
    unknown or gives no such predictions (e.g. ``mim``).
    """
    what = "per-sample predictions" if key is None else key.replace("probabilities", "class probabilities")

    def gives(task: str) -> bool:
        spec = prediction_spec(model, task)
        return spec is not None and (key is None or spec.key == key)

    if tasks is None:
        return [t for t in (model.config.tasks or {}) if gives(t)]
    if isinstance(tasks, str):
        tasks = [tasks]
    for t in tasks:
        if not gives(t):
            kind = (model.config.tasks or {})[t]["type"]
            raise PredictionError(f"task {t!r} ({kind}) gives no {what}")
    return list(tasks)


def classification_tasks(model: Any, tasks: Sequence[str] | None = None) -> list[str]:
    """The tasks of ``model`` (all, or those named) whose predictions are class probabilities."""
    return prediction_tasks(model, tasks, key="probabilities")


def task_predictions(
    model: Any, logits: Mapping[str, torch.Tensor], tasks: Sequence[str]
) -> dict[str, torch.Tensor]:
    """``{task: (B, K) float32 predictions}`` (probabilities of a classifier, values of a regression) from
    a model output's ``logits`` dict, one column per output (see :func:`output_names`)."""
    out = {}
    for task in tasks:
        if task not in logits:
            raise ValueError(f"the model output has no logits for task {task!r}")
        if prediction_spec(model, task) is None:
            raise ValueError(f"task {task!r} gives no per-sample predictions")
        p = model.heads[task].predictions(logits[task].float()).float()
        out[task] = p[:, None] if p.dim() == 1 else p
    return out


def output_names(model: Any, task: str) -> list[str]:
    """Names of task ``task``'s outputs, as its head gives them (:meth:`~mtl_hf.heads.TaskHead.output_names`):
    class or label names when configured, else their indices; a single output is named after the task."""
    return [str(n) for n in model.heads[task].output_names()]


def column_names(model: Any, task: str) -> list[str]:
    """CSV column names of task ``task`` (its spec's ``columns``): ``task`` for a single output, else
    ``task/<output name>``."""
    spec = prediction_spec(model, task)
    if spec is None:
        raise ValueError(f"task {task!r} gives no per-sample predictions")
    return list(spec.columns)
