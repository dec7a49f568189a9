"""Validation and test passes under Accelerate: every sample counted exactly once across processes."""

from __future__ import annotations

import csv
import functools
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from accelerate import Accelerator

from ..atomic import replacing, write_text
from ..heads.reconstruction import ReconstructionHead
from ..run_folder import RunFolder

if TYPE_CHECKING:
    from ..modeling_mtl import MTLModel
    from .config import TrainingSection


TEST_STATISTICS = RunFolder.TEST_STATISTICS
"""Per-sample metric statistics of the test split, for tasks whose heads compute them (not classifiers)."""


@torch.no_grad()
def collect_predictions(
    model: torch.nn.Module, loader: Any, accelerator: Accelerator, tasks: Sequence[str], seed: int
) -> dict[str, Any]:
    """Run ``tasks`` over ``loader``; gather probabilities and labels of classification tasks, the
    per-sample metric statistics of other heads with metrics (segmentation, regression), per-sample losses
    and patient ids.

    Masked-view tasks use masks drawn from a generator seeded with ``seed``, so every evaluation of a
    run hides the same patches and their reconstruction errors are comparable across epochs.
    """
    model.eval()
    unwrapped: MTLModel = accelerator.unwrap_model(model)
    heads = {t: unwrapped.head(t) for t in tasks}
    scored = [t for t, h in heads.items() if h.prediction_kind is not None]
    measured = [t for t, h in heads.items() if h.prediction_kind is None and h.metric_specs()]
    masked = [t for t, h in heads.items() if h.view in ("masked", "visible")]
    generator = torch.Generator().manual_seed(seed)
    probs: dict[str, list[torch.Tensor]] = {t: [] for t in scored}
    labels: dict[str, list[torch.Tensor]] = {t: [] for t in scored}
    losses: dict[str, list[torch.Tensor]] = {}
    # reconstruction heads read a masked or visible view, so ``mask`` below is set when they run
    reconstructing = {t: h for t in masked if isinstance(h := heads[t], ReconstructionHead)}
    mse: dict[str, list[torch.Tensor]] = {t: [] for t in reconstructing}
    statistics: dict[str, list[torch.Tensor]] = {t: [] for t in measured}
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
        for t in scored:
            if t in batch_labels:
                probs[t].append(accelerator.gather_for_metrics(heads[t].probabilities(out.logits[t])).cpu())
                labels[t].append(accelerator.gather_for_metrics(batch_labels[t]).cpu())
        for t in measured:
            if t in batch_labels:
                rows = heads[t].metric_statistics(out.logits[t], batch_labels[t])
                statistics[t].append(accelerator.gather_for_metrics(rows).cpu())
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
    return {
        "probs": {t: torch.cat(v).numpy() for t, v in probs.items() if v},
        "labels": {t: torch.cat(v).numpy() for t, v in labels.items() if v},
        "losses": {t: float(torch.cat(v).mean()) for t, v in losses.items()},
        "mse": {t: float(torch.cat(v).mean()) for t, v in mse.items() if v},
        "statistics": {t: torch.cat(v) for t, v in statistics.items() if v},
        "first_batch": first,
        "patients": patients,
        "samples": samples,
        "kinds": {t: heads[t].prediction_kind for t in scored},
    }


@functools.cache
def _metric(kind: str) -> Any:
    from ..evaluation import load_metric

    return load_metric(kind)


def roc_auc(probs: np.ndarray, labels: np.ndarray, kind: str | None) -> float:
    """ROC AUC through the package's evaluate metric (binary; one-vs-rest macro for multi-class; macro
    over labels for multi-label); NaN when the split holds a single class."""
    if kind is None:
        raise ValueError("roc_auc needs a classification task")
    labels = np.asarray(labels)
    flat = labels if kind != "multilabel" else labels.reshape(-1)
    if len(np.unique(flat)) < 2:
        return float("nan")
    result = _metric(kind).compute(
        predictions=probs.tolist(), references=labels.astype(int).tolist(), n_resamples=0, delong=False
    )
    return float(result["roc_auc"])


def evaluate(
    model: torch.nn.Module, loader: Any, accelerator: Accelerator, tasks: Sequence[str], seed: int
) -> dict[str, float]:
    """Validation metrics: ``loss/<task>``, ``roc_auc/<task>`` for classifiers, ``<metric>/<task>`` for
    each metric of other heads' ``metric_specs`` (``dice/<task>``), ``mse/<task>`` for MIM."""
    pred = collect_predictions(model, loader, accelerator, tasks, seed)
    metrics: dict[str, float] = {f"loss/{t}": v for t, v in pred["losses"].items()}
    for t, p in pred["probs"].items():
        metrics[f"roc_auc/{t}"] = roc_auc(p, pred["labels"][t], pred["kinds"][t])
        metrics[f"n/{t}"] = len(p)
    head = accelerator.unwrap_model(model).head
    for t, rows in pred["statistics"].items():
        metrics |= {f"{k}/{t}": float(v) for k, v in head(t).metrics_from_sums(rows.sum(0)).items()}
        metrics[f"n/{t}"] = len(rows)
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
    """Evaluate the best model once on the test split: ``test_metrics.json`` and ``test_predictions.csv``.

    Per classification task: ROC AUC with a patient-level bootstrap interval (patients resampled, not
    slices) and DeLong's interval, PR AUC, and accuracy, sensitivity and specificity at the threshold
    chosen on the validation split (Youden's J) - the test split chooses nothing. Per task with
    other metrics (segmentation, regression): each metric with a patient-level bootstrap interval.
    """
    from ..evaluation import bootstrap_additive_metrics, evaluate_scores

    unwrapped: MTLModel = accelerator.unwrap_model(model)
    tasks = [t for t in unwrapped.config.task_names if unwrapped.head(t).selection_metric() is not None]
    pred = collect_predictions(model, test_loader, accelerator, tasks, cfg.seed)
    # The validation split only chooses the operating thresholds of binary tasks.
    binary = [t for t in tasks if unwrapped.head(t).prediction_kind == "binary"]
    val = (
        collect_predictions(model, val_loader, accelerator, binary, cfg.seed)
        if binary
        else {"probs": {}, "labels": {}}
    )
    results: dict[str, Any] = {}
    for t, rows in pred["statistics"].items():
        intervals = bootstrap_additive_metrics(
            rows.numpy(),
            unwrapped.head(t).metrics_from_sums,
            pred["patients"] or None,
            n_resamples=cfg.bootstrap_resamples,
            confidence_level=cfg.confidence_level,
            seed=cfg.seed,
        )
        results[t] = {
            "kind": unwrapped.head(t).registered_name,
            "n_samples": len(rows),
            "n_groups": next(iter(intervals.values())).n_groups,
            **{name: i.estimate for name, i in intervals.items()},
            **{f"{name}_low": i.low for name, i in intervals.items()},
            **{f"{name}_high": i.high for name, i in intervals.items()},
            "confidence_level": cfg.confidence_level,
            "n_resamples": cfg.bootstrap_resamples,
        }
    for t, p in pred["probs"].items():
        kind = pred["kinds"][t]
        threshold_args: dict[str, Any] = {}
        if kind == "binary" and t in val["probs"] and len(np.unique(val["labels"][t])) == 2:
            threshold_args = {
                "validation_references": val["labels"][t],
                "validation_predictions": val["probs"][t],
            }
        try:
            report = evaluate_scores(
                pred["labels"][t],
                p,
                task=kind,
                groups=pred["patients"] or None,
                confidence_level=cfg.confidence_level,
                n_resamples=cfg.bootstrap_resamples,
                seed=cfg.seed,
                **threshold_args,
            )
            results[t] = {"kind": kind, **report.to_dict()}
        except ValueError as exc:  # e.g. a single class in a tiny test split
            results[t] = {"roc_auc": None, "error": str(exc), "n_samples": len(p)}
    if accelerator.is_main_process:
        run = RunFolder(out)
        run.write_test_metrics(results, default=_json_default)
        run.write_test_predictions(pred)
        _write_statistics(run, pred, unwrapped)
        _plot_examples(unwrapped, pred["first_batch"], run.plots)
    return results


def _write_statistics(run: RunFolder, pred: dict[str, Any], model: MTLModel) -> None:
    """``test_statistics_<task>.csv`` per task with additive metrics: each test sample's metric
    statistics, so that ``mtl-hf compare`` can test two runs' metrics against each other, paired."""
    for t, rows in pred["statistics"].items():
        names = model.head(t).statistic_names() or tuple(f"s{j}" for j in range(rows.shape[1]))
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer)
        writer.writerow(["sample_id", "patient_id", *names])
        for i, values in enumerate(rows.tolist()):
            sample = pred["samples"][i] if pred["samples"] else str(i)
            patient = pred["patients"][i] if pred["patients"] else ""
            writer.writerow([sample, patient, *(repr(float(v)) for v in values)])
        write_text(run.test_statistics_file(t), buffer.getvalue())


def _plot_examples(model: MTLModel, batch: dict[str, Any], folder: Path) -> None:
    """``<folder>/<task>_test_examples.png`` for every head that draws its predictions."""
    for task, labels in batch.get("labels", {}).items():
        logits = batch["logits"].get(task)
        if logits is not None:
            with replacing(folder / f"{task}_test_examples.png") as path:
                model.head(task).plot_examples(
                    batch["pixel_values"], logits.float().cpu(), labels.cpu(), path
                )


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
