"""From a head's logits to probabilities, and the names of the resulting output columns.

The head decides: :meth:`mtl_hf.heads.TaskHead.probabilities` applies the sigmoid for binary and
multi-label heads and the softmax over classes for multi-class heads (by the head's
``prediction_kind``); a head class of another kind (from a plugin, say) gives probabilities by
overriding that method. Heads that neither declare a ``prediction_kind`` nor override it (masked image
modeling) give no probabilities.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ..heads import TaskHead

ProbabilityFunction = Callable[[torch.Tensor], torch.Tensor]


def probability_function(model: Any, task: str) -> ProbabilityFunction | None:
    """The function turning task ``task``'s logits into probabilities, or ``None`` if it has none."""
    tasks = model.config.tasks or {}
    if task not in tasks:
        raise ValueError(f"no task named {task!r}; the model's tasks are {', '.join(tasks)}")
    head = model.heads[task]
    overridden = getattr(type(head), "probabilities", None) is not TaskHead.probabilities
    if getattr(head, "prediction_kind", None) is not None or overridden:
        return head.probabilities
    return None


def classification_tasks(model: Any, tasks: Sequence[str] | None = None) -> list[str]:
    """The tasks of ``model`` that give probabilities (all of them, or those named in ``tasks``).

    Raises ``ValueError`` for a named task that is unknown or has no probabilities (e.g. ``mim``).
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
            raise ValueError(f"task {t!r} ({kind}) gives no class probabilities")
        chosen.append(t)
    return chosen


def task_probabilities(
    model: Any, logits: Mapping[str, torch.Tensor], tasks: Sequence[str]
) -> dict[str, torch.Tensor]:
    """``{task: (B, K) float32 probabilities}`` from a model output's ``logits`` dict.

    Binary heads give ``(B,)`` logits; their probabilities come out as ``(B, 1)`` so every task has
    one column per output (see :func:`output_names`).
    """
    out = {}
    for task in tasks:
        if task not in logits:
            raise ValueError(f"the model output has no logits for task {task!r}")
        fn = probability_function(model, task)
        assert fn is not None
        p = fn(logits[task].float())
        out[task] = p[:, None] if p.dim() == 1 else p
    return out


def output_names(model: Any, task: str) -> list[str]:
    """Names of task ``task``'s outputs: class or label names when configured, else their indices.

    A binary task has one output named after the task itself (the positive class).
    """
    spec = (model.config.tasks or {})[task]
    kind = spec["type"]
    if kind == "binary_classification":
        return [task]
    if kind == "multiclass_classification":
        names = spec.get("class_names") or [str(i) for i in range(spec["num_classes"])]
        return [str(n) for n in names]
    if kind == "multilabel_classification":
        names = spec.get("label_names") or [str(i) for i in range(spec["num_labels"])]
        return [str(n) for n in names]
    count = spec.get("num_classes") or spec.get("num_labels") or spec.get("num_outputs") or 1
    return [task] if count == 1 else [str(i) for i in range(int(count))]


def column_names(model: Any, task: str) -> list[str]:
    """CSV column names of task ``task``: ``task`` for a single output, else ``task/<output name>``."""
    names = output_names(model, task)
    if len(names) == 1 and names[0] == task:
        return [task]
    return [f"{task}/{n}" for n in names]
