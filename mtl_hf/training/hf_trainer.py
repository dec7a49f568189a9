"""Training :class:`~mtl_hf.MTLModel` with ``transformers.Trainer``: the glue, and nothing else.

``mtl-hf train`` (Accelerate) is the full loop: strategies, every weighter, patient-level intervals,
exact resume. Users who already work with ``transformers.Trainer`` can train the same model on the
same data with it::

    from transformers import Trainer
    from mtl_hf.training.hf_trainer import TrainerCollator, compute_metrics_for, trainer_arguments

    args = trainer_arguments("runs/hf", max_steps=500, per_device_train_batch_size=32, eval_strategy="epoch")
    trainer = Trainer(
        model=model, args=args,
        train_dataset=splits["train"], eval_dataset=splits["validation"],   # mtl_hf.data.apply_transforms
        data_collator=TrainerCollator(collator),                             # an MTLDataCollator
        compute_metrics=compute_metrics_for(model),
    )
    trainer.train()

How the pieces fit the Trainer's conventions:

* **Inputs.** :class:`TrainerCollator` keeps what ``MTLModel.forward`` takes from an
  :class:`~mtl_hf.data.MTLDataCollator` batch: ``pixel_values`` and ``labels`` (``{task: tensor}``).
* **Loss.** The model's output carries ``loss``, the weighter's total over the tasks that ran (in
  training mode the masked-image-modeling tasks too); the Trainer back-propagates it.
* **Labels.** ``label_names=["labels"]`` (set by :func:`trainer_arguments`) tells the Trainer that
  batches carry labels, so evaluation computes the loss and hands the labels to ``compute_metrics``;
  ``remove_unused_columns=False`` keeps the data set's columns for mtl-hf's on-the-fly transforms.
* **Predictions.** :class:`~mtl_hf.MTLConfig` lists every output but ``logits`` in
  ``keys_to_ignore_at_inference``, so an ``EvalPrediction`` holds ``predictions = {task: logits}`` and
  ``label_ids = {task: labels}``; :func:`compute_metrics_for` scores them as mtl-hf's validation does.
* **Checkpoints** are ``save_pretrained`` folders (safetensors): ``AutoModel.from_pretrained`` loads
  them after ``import mtl_hf``.

The Trainer calls ``loss.backward()`` itself, so only weighters whose update is the gradient of their
``forward`` total and that keep no per-step state work here (``fixed``, ``uncertainty``, ``rlw``):
:func:`check_trainer_support` refuses the others (gradient-based methods, DWA, FAMO...) by what they
override, and :func:`compute_metrics_for` calls it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..modeling_mtl import MTLModel
from ..options import OptionsError
from ..weighting import LossWeighter

MODEL_INPUTS = ("pixel_values", "labels")
LABEL_NAMES = ["labels"]
_TRAINING_LOOP_HOOKS = ("backward", "forward_context", "on_step_end", "on_losses_after_step", "on_epoch_end")


class TrainerCollator:
    """Wrap an :class:`~mtl_hf.data.MTLDataCollator` (or any collate function of the same batch format)
    so that batches hold only the model's inputs: ``pixel_values`` and ``labels``."""

    def __init__(self, collator: Callable[[Sequence[Mapping[str, Any]]], Mapping[str, Any]]) -> None:
        self.collator = collator

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        batch = self.collator(rows)
        return {key: batch[key] for key in MODEL_INPUTS if key in batch}


def trainer_arguments(output_dir: str, **kwargs: Any) -> Any:
    """``transformers.TrainingArguments`` with what an mtl-hf model and data set need:
    ``label_names=["labels"]`` and ``remove_unused_columns=False`` (other arguments as given)."""
    from transformers import TrainingArguments

    kwargs.setdefault("label_names", list(LABEL_NAMES))
    kwargs.setdefault("remove_unused_columns", False)
    return TrainingArguments(output_dir=output_dir, **kwargs)


def check_trainer_support(model: MTLModel) -> None:
    """Raise :class:`~mtl_hf.options.OptionsError` (a ``ValueError``) if ``model``'s weighter needs
    mtl-hf's training loop (see module docstring)."""
    weighter = model.weighter
    overridden = [
        hook
        for hook in _TRAINING_LOOP_HOOKS
        if getattr(type(weighter), hook) is not getattr(LossWeighter, hook)
    ]
    if overridden or getattr(weighter, "needs_losses_after_step", False):
        name = getattr(type(weighter), "registered_name", type(weighter).__name__)
        raise OptionsError(
            f"weighting {name!r} hooks into the training loop ({', '.join(overridden) or 'losses after step'}), "
            "which transformers.Trainer does not call; train it with `mtl-hf train`, or use a weighter "
            "whose update is the gradient of its loss (fixed, uncertainty, rlw)"
        )


def compute_metrics_for(model: MTLModel) -> Callable[[Any], dict[str, float]]:
    """A ``compute_metrics`` for ``transformers.Trainer``: ``<metric>/<task>`` for every metric a head
    reports (``roc_auc/<task>`` for classification tasks, NaN when the evaluation set holds one class;
    ``dice/<task>`` for segmentation, ``rmse/<task>`` for regression), over the samples labelled for the
    task, computed as ``mtl-hf train``'s validation computes them (:mod:`mtl_hf.evaluation.task_metrics`).
    The Trainer prefixes them with ``eval_``.

    Raises:
        mtl_hf.options.OptionsError: if the model's weighter does not train under the Trainer
            (:func:`check_trainer_support`).
    """
    from ..evaluation.task_metrics import evaluator_for

    check_trainer_support(model)

    def compute_metrics(prediction: Any) -> dict[str, float]:
        logits, labels = prediction.predictions, prediction.label_ids
        if not isinstance(logits, Mapping) or not isinstance(labels, Mapping):
            raise ValueError(
                "compute_metrics expects predictions and label_ids as {task: array}: pass "
                "label_names=['labels'] (trainer_arguments does) and keep the model's "
                "keys_to_ignore_at_inference"
            )
        metrics: dict[str, float] = {}
        for task, task_logits in logits.items():
            if task not in labels:
                continue
            head = model.head(task)
            evaluator = evaluator_for(head)
            if evaluator is None:
                continue
            scores = torch.as_tensor(np.asarray(task_logits))
            targets = torch.as_tensor(np.asarray(labels[task]))
            keep = head.labelled(targets)
            rows = evaluator.rows(scores[keep], targets[keep])
            metrics |= {f"{k}/{task}": v for k, v in evaluator.validation_metrics(rows).items()}
        return metrics

    return compute_metrics
