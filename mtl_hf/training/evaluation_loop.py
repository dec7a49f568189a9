"""Validation and test passes under Accelerate: every sample counted exactly once across processes."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from accelerate import Accelerator

from ..atomic import replacing, write_text
from ..heads import TaskHead
from ..heads.reconstruction import ReconstructionHead
from ..run_folder import RunFolder

if TYPE_CHECKING:
    from ..modeling_mtl import MTLModel
    from .config import TrainingSection


TEST_STATISTICS = RunFolder.TEST_STATISTICS
"""Per-sample metric statistics of the test split, for tasks with additive metrics (not classifiers)."""


@torch.no_grad()
def collect_predictions(
    model: torch.nn.Module, loader: Any, accelerator: Accelerator, tasks: Sequence[str], seed: int
) -> dict[str, Any]:
    """Run ``tasks`` over ``loader`` and gather, per task with metrics, the evaluation rows
    (:class:`~mtl_hf.evaluation.task_metrics.TaskEvaluator`), predictions and label columns, sample and
    patient ids of the samples labelled for it (:meth:`~mtl_hf.heads.TaskHead.labelled`); and the
    per-sample losses and reconstruction errors.

    Masked-view tasks use masks drawn from a generator seeded with ``seed``, so every evaluation of a
    run hides the same patches and their reconstruction errors are comparable across epochs.
    """
    from ..evaluation.task_metrics import evaluator_for

    model.eval()
    unwrapped: MTLModel = accelerator.unwrap_model(model)
    heads = {t: unwrapped.head(t) for t in tasks}
    evaluators = {t: e for t, h in heads.items() if (e := evaluator_for(h)) is not None}
    masked = [t for t, h in heads.items() if h.view in ("masked", "visible")]
    generator = torch.Generator().manual_seed(seed)
    parts: dict[str, dict[str, list[torch.Tensor]]] = {
        t: {"rows": [], "predictions": [], "labels": [], "keep": []} for t in evaluators
    }
    losses: dict[str, list[torch.Tensor]] = {}
    # reconstruction heads read a masked or visible view, so ``mask`` below is set when they run
    reconstructing = {t: h for t in masked if isinstance(h := heads[t], ReconstructionHead)}
    mse: dict[str, list[torch.Tensor]] = {t: [] for t in reconstructing}
    patients: list[Any] = []
    samples: list[Any] = []
    first: dict[str, Any] = {}
    for batch in loader:
        pixel_values = batch["pixel_values"]
        b = pixel_values.shape[0]
        batch_labels = {k: v for k, v in batch["labels"].items() if k in heads}
        mask = None
        if masked:
            grid = unwrapped.grid_size(pixel_values)
            mask = heads[masked[0]].sample_mask(b, grid, torch.device("cpu"), generator=generator)
            mask = mask.to(pixel_values.device)
        out = model(pixel_values=pixel_values, labels=batch_labels, tasks=list(tasks), bool_masked_pos=mask)
        if not first:  # this process's first batch, for figures of example predictions
            first = {"pixel_values": pixel_values.cpu(), "logits": out.logits, "labels": batch_labels}
        for t, evaluator in evaluators.items():
            if t in batch_labels:
                task_parts = _task_rows(heads[t], evaluator, out.logits[t], batch_labels[t])
                for key, value in task_parts.items():
                    parts[t][key].append(accelerator.gather_for_metrics(value).cpu())
        for t, loss in (out.task_losses or {}).items():
            losses.setdefault(t, []).append(
                accelerator.gather_for_metrics(loss.detach().float().expand(b)).cpu()
            )
        for t, head in reconstructing.items():
            errors = head.reconstruction_error(out.reconstructions[t], pixel_values, mask)  # type: ignore[arg-type]
            mse[t].append(accelerator.gather_for_metrics(errors).cpu())
        if "patient_id" in batch:
            patients.extend(accelerator.gather_for_metrics(list(batch["patient_id"]), use_gather_object=True))
        if "sample_id" in batch:
            samples.extend(accelerator.gather_for_metrics(list(batch["sample_id"]), use_gather_object=True))
    collected = {}
    for t, gathered in parts.items():
        if not gathered["keep"]:
            continue
        keep = torch.cat(gathered["keep"]).bool()
        index = keep.nonzero()[:, 0].tolist()
        collected[t] = {
            "rows": torch.cat(gathered["rows"])[keep],
            "predictions": _cat_or_none(gathered["predictions"], keep),
            "labels": torch.cat(gathered["labels"])[keep].numpy(),
            "output_names": heads[t].output_names(),
            "patients": [patients[i] for i in index] if patients else [],
            "samples": [samples[i] if samples else str(i) for i in index],
        }
    return {
        "tasks": collected,
        "evaluators": evaluators,
        "losses": {t: float(torch.cat(v).mean()) for t, v in losses.items()},
        "mse": {t: float(torch.cat(v).mean()) for t, v in mse.items() if v},
        "first_batch": first,
    }


def _cat_or_none(parts: list[torch.Tensor], keep: torch.Tensor) -> np.ndarray | None:
    """The kept rows of gathered per-batch predictions; ``None`` for a head without predictions."""
    values = torch.cat(parts)
    return values[keep].numpy() if values.shape[1] else None


def _task_rows(
    head: TaskHead, evaluator: Any, logits: torch.Tensor, labels: torch.Tensor
) -> dict[str, torch.Tensor]:
    """One batch of one task, at full batch size so that every process gathers alike: evaluation rows,
    predictions and label columns of the labelled samples (NaN rows for the others), and which are labelled."""
    keep = head.labelled(labels)
    chosen = keep.nonzero()[:, 0]
    b = labels.shape[0]

    def full(values: torch.Tensor | None) -> torch.Tensor:
        if values is None:
            return torch.zeros(b, 0, device=labels.device)
        values = values.detach().reshape(len(chosen), -1)
        values = values if values.is_floating_point() else values.float()  # float64 statistics stay so
        out = values.new_full((b, values.shape[1]), float("nan"))
        out[chosen] = values
        return out

    picked_logits, picked_labels = logits[chosen], labels[chosen]  # maybe none: heads take empty batches
    return {
        "rows": full(evaluator.rows(picked_logits, picked_labels)),
        "predictions": full(head.predictions(picked_logits)),
        "labels": full(head.label_columns(picked_labels)),
        "keep": keep.to(torch.uint8),
    }


def roc_auc(probs: np.ndarray, labels: np.ndarray, kind: str | None) -> float:
    """ROC AUC through the package's evaluate metric (see :func:`mtl_hf.evaluation.task_metrics.roc_auc`)."""
    from ..evaluation.task_metrics import roc_auc as compute

    if kind is None:
        raise ValueError("roc_auc needs a classification task")
    return compute(probs, labels, kind)


def evaluate(
    model: torch.nn.Module, loader: Any, accelerator: Accelerator, tasks: Sequence[str], seed: int
) -> dict[str, float]:
    """Validation metrics: ``loss/<task>``, ``<metric>/<task>`` for each metric a head reports
    (``roc_auc/<task>``, ``dice/<task>``, ``rmse/<task>``), ``n/<task>`` labelled samples, and
    ``mse/<task>`` for MIM."""
    pred = collect_predictions(model, loader, accelerator, tasks, seed)
    metrics: dict[str, float] = {f"loss/{t}": v for t, v in pred["losses"].items()}
    for t, task in pred["tasks"].items():
        metrics |= {f"{k}/{t}": v for k, v in pred["evaluators"][t].validation_metrics(task["rows"]).items()}
        metrics[f"n/{t}"] = len(task["rows"])
    metrics |= {f"mse/{t}": v for t, v in pred["mse"].items()}
    model.train()
    return metrics


def write_test_outputs(
    model: torch.nn.Module,
    test_loader: Any,
    val_loader: Any,
    accelerator: Accelerator,
    out: Path,
    monitor: str,
    cfg: TrainingSection,
) -> dict[str, Any]:
    """Evaluate the best model once on the test split: ``test_metrics.json``, ``test_results.csv`` and
    ``test_predictions.csv``.

    Every task with metrics gets rows of (task, metric, value, lower, upper) with patient-level
    bootstrap intervals (patients resampled, not slices), as its head's evaluator computes them
    (:mod:`mtl_hf.evaluation.task_metrics`): for a classifier also DeLong's interval, PR AUC and, where
    the metric allows, accuracy, sensitivity and specificity at the threshold chosen on the validation
    split (Youden's J) - the test split chooses nothing.
    """
    from ..evaluation.task_metrics import TestSettings, results_csv

    unwrapped: MTLModel = accelerator.unwrap_model(model)
    tasks = [t for t in unwrapped.config.task_names if unwrapped.head(t).selection_metric() is not None]
    pred = collect_predictions(model, test_loader, accelerator, tasks, cfg.seed)
    # The validation split only chooses operating points (thresholds), for the tasks that have one.
    chosen = [t for t, e in pred["evaluators"].items() if e.needs_validation]
    val = collect_predictions(model, val_loader, accelerator, chosen, cfg.seed)["tasks"] if chosen else {}
    settings = TestSettings(cfg.bootstrap_resamples, cfg.confidence_level, cfg.seed)
    results: dict[str, Any] = {}
    rows = []
    for t, task in pred["tasks"].items():
        validation = val[t]["rows"] if t in val else None
        entry, task_rows = pred["evaluators"][t].test_results(
            task["rows"], task["patients"], settings, validation
        )
        head = unwrapped.head(t).registered_name
        results[t] = {
            "kind": head,  # a classifier's entry replaces it with its ROC AUC metric's configuration
            "head": head,
            **entry,
            "metrics": [_row(r) for r in task_rows],
        }
        rows += task_rows
    if accelerator.is_main_process:
        run = RunFolder(out)
        run.write_test_metrics(results, default=_json_default)
        write_text(run.test_results_file, results_csv(rows))
        run.write_test_predictions(pred["tasks"])
        _write_statistics(run, pred, unwrapped)
        _plot_examples(unwrapped, pred["first_batch"], run.plots)
    return results


def _row(result: Any) -> dict[str, Any]:
    """A result row as ``test_metrics.json`` lists it under its task (the task is the key above it)."""
    return {k: v for k, v in result.to_dict().items() if k != "task"}


def _write_statistics(run: RunFolder, pred: dict[str, Any], model: MTLModel) -> None:
    """``test_statistics_<task>.csv`` per task with additive metrics: each labelled test sample's metric
    statistics, so that ``mtl-hf compare`` can test two runs' metrics against each other, paired."""
    from ..evaluation.task_metrics import AdditiveEvaluator

    for t, task in pred["tasks"].items():
        if not isinstance(pred["evaluators"][t], AdditiveEvaluator):
            continue
        rows = task["rows"]
        names = model.head(t).statistic_names() or tuple(f"s{j}" for j in range(rows.shape[1]))
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer)
        writer.writerow(["sample_id", "patient_id", *names])
        for sample, patient, values in zip(
            task["samples"], task["patients"] or [""] * len(rows), rows.tolist(), strict=True
        ):
            writer.writerow([sample, patient, *(repr(float(v)) for v in values)])
        write_text(run.test_statistics_file(t), buffer.getvalue())


def _plot_examples(model: MTLModel, batch: dict[str, Any], folder: Path) -> None:
    """``<folder>/<task>_test_examples.png`` for every head that draws its predictions, from the
    samples of the batch that are labelled for the task."""
    for task, labels in batch.get("labels", {}).items():
        logits = batch["logits"].get(task)
        if logits is None:
            continue
        head = model.head(task)
        keep = head.labelled(labels).cpu()
        if not keep.any():
            continue
        with replacing(folder / f"{task}_test_examples.png") as path:
            head.plot_examples(
                batch["pixel_values"][keep], logits.float().cpu()[keep], labels.cpu()[keep], path
            )


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
