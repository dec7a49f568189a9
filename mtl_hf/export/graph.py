"""The inference graph that is exported: normalised ``pixel_values`` in, logits and predictions per task out.

:class:`~mtl_hf.MTLModel` returns a typed output with dictionaries, which exporters and runtimes do not
carry; :class:`InferenceGraph` wraps a model in eval mode and returns a flat tuple in a fixed order:
the logits of each chosen task (``(B,)`` for a binary task, ``(B, K)`` for a multi-class or
multi-label task, ``(B, H, W)`` for a segmentation task), then the ``(B, K)`` per-sample predictions of
the tasks asked for (each head's :meth:`~mtl_hf.heads.TaskHead.predictions`: probabilities, values),
then, when asked, the attention maps of every backbone layer stacked as
``(B, layers, heads, tokens, tokens)`` (what :func:`mtl_hf.explain.attention_maps` reads: CLS-to-patch
maps, rollout).

The graph runs one clean backbone pass, exactly what ``model(pixel_values, tasks=tasks)`` runs in eval
mode; masked-image-modeling heads are not part of it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..modeling_mtl import MTLModel


class InferenceGraph(nn.Module):
    """``pixel_values -> (logits of tasks[0], ..., predictions of predicting[0], ..., [attentions])`` of
    ``model`` (see the module docstring).

    Args:
        model: The model; it is put in eval mode.
        tasks: Clean-view tasks whose logits are returned, in this order.
        attentions: Also return the stacked attention maps of every layer.
        predicting: Tasks among ``tasks`` whose per-sample predictions are returned too, in this order.

    Raises:
        ValueError: for an unknown task, a task not on the clean view, or no output at all.
    """

    def __init__(
        self,
        model: MTLModel,
        tasks: Sequence[str],
        *,
        attentions: bool = False,
        predicting: Sequence[str] = (),
    ) -> None:
        super().__init__()
        for task in tasks:
            if task not in model.heads:
                raise ValueError(f"no task named {task!r}; the model's tasks are {', '.join(model.heads)}")
            if model.head(task).view != "clean":
                raise ValueError(
                    f"task {task!r} reads the {model.head(task).view} view (masked image modeling); "
                    "only clean-view tasks are part of the inference graph"
                )
        if not tasks and not attentions:
            raise ValueError("the inference graph needs at least one task or the attentions")
        stray = [t for t in predicting if t not in tasks]
        if stray:
            raise ValueError(f"task {stray[0]!r} is predicted but not among the graph's tasks")
        self.model = model.eval()
        self.tasks = list(tasks)
        self.attentions = attentions
        self.predicting = list(predicting)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(pixel_values, tasks=self.tasks, output_attentions=self.attentions)
        logits = out.logits or {}
        missing = [t for t in self.tasks if t not in logits]
        if missing:
            raise ValueError(f"task {missing[0]!r} returned no logits")
        result = tuple(logits[t] for t in self.tasks)
        for t in self.predicting:
            predictions = self.model.head(t).predictions(logits[t])
            if predictions is None:
                raise ValueError(f"task {t!r} gives no per-sample predictions")
            result += (predictions.reshape(predictions.shape[0], -1),)
        if self.attentions:
            if not out.attentions:
                raise ValueError("the backbone returned no attention maps")
            result += (torch.stack(tuple(out.attentions), dim=1),)
        return result
