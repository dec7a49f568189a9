"""From a head's logits to probabilities, and the names of the resulting output columns.

Which function turns logits into probabilities is a property of the head type, so it lives in one
place here:

* ``binary_classification``: ``sigmoid`` of the single logit, the probability of the positive class;
* ``multilabel_classification``: ``sigmoid`` per label (labels are independent);
* ``multiclass_classification``: ``softmax`` over the classes (they are exclusive).

A head class (for example from a plugin) may define ``probabilities(logits) -> Tensor`` itself; that
method is used first, so new head types need no change here. Heads that produce no logits (masked
image modeling) have no probabilities.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

ProbabilityFunction = Callable[[torch.Tensor], torch.Tensor]

PROBABILITY_FUNCTIONS: dict[str, ProbabilityFunction] = {
    "binary_classification": torch.sigmoid,
    "multilabel_classification": torch.sigmoid,
    "multiclass_classification": lambda logits: torch.softmax(logits, dim=-1),
}
"""Head type -> logits-to-probabilities function, for the built-in classification heads."""


def probability_function(model: Any, task: str) -> ProbabilityFunction | None:
    """The function turning task ``task``'s logits into probabilities, or ``None`` if it has none.

    Looks first for a ``probabilities`` method on the task's head, then at the head type in
    ``model.config.tasks[task]["type"]``.
    """
    tasks = model.config.tasks or {}
    if task not in tasks:
        raise ValueError(f"no task named {task!r}; the model's tasks are {', '.join(tasks)}")
    head = model.heads[task] if hasattr(model, "heads") and task in model.heads else None
    method = getattr(head, "probabilities", None)
    if callable(method):
        return method
    return PROBABILITY_FUNCTIONS.get(tasks[task]["type"])


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
