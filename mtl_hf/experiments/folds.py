"""Patient-level k-fold cross-validation in ``mtl-hf compare`` (``grid.folds: K``).

Small medical data sets are evaluated this way when a held-out test split would be tiny: every
patient is tested once, by the model of the fold that did not train on it, and the K folds' test
predictions are pooled into one test set as large as the data.

* :func:`write_fold_manifests` cuts the patients into K stratified folds
  (:func:`mtl_hf.data.splits.fold_splits`) and writes one split manifest per fold; fold ``j``'s runs
  read theirs (``data.split.manifest``), so they test fold ``j``, validate on fold ``j + 1`` and train
  on the rest (nested training fractions are taken inside that rest).
* :func:`pool_folds` turns the K runs of each grid cell into one *pooled run* folder under
  ``output_dir/pooled/``: ``test_predictions.csv`` is the union of the folds' test predictions (no
  patient may appear twice), ``test_metrics.json`` the ROC AUC of every classification task computed on
  it with its patient-bootstrap and DeLong intervals. The rest of ``compare`` reads pooled runs as it
  reads ordinary ones, so results, paired tests (on the pooled predictions, patient by patient) and the
  low-data study come out of the same code.

Tasks with additive metrics (segmentation, regression) are pooled through their per-sample
statistics (:func:`pooled_statistics`): the folds' ``test_statistics_<task>.csv`` rows are
concatenated and the task's metrics recomputed on them with patient-bootstrap intervals. Operating-point
metrics (chosen on each fold's own validation split) are not pooled.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..atomic import write_text
from ..errors import MtlHfError
from ..run_folder import RunFolder, read_test_predictions

if TYPE_CHECKING:
    from ..training.config import RunConfig

FOLDS_DIR = "folds"
POOLED_DIR = "pooled"


class FoldError(MtlHfError, ValueError):
    """The folds of a cross-validated grid cannot be pooled (a patient tested twice, a missing fold)."""


def write_fold_manifests(run: RunConfig, k: int, out: Path) -> list[Path]:
    """Build (or reuse) the data cache of ``run``, cut its patients into ``k`` folds and write one split
    manifest per fold under ``out/folds/``; return their paths (fold 0 first)."""
    from ..data import DataConfig, prepare_datasets
    from ..data.splits import SplitManifest, fold_splits
    from ..options import from_dict

    # The patients and their strata come from the data's cache (and an ordinary split, not the folds').
    config = from_dict(
        DataConfig, {**run.data, "split": {**run.data.get("split", {}), "manifest": None}}, "data"
    )
    prepared = prepare_datasets(config, cache_dir=run.cache_dir)
    strata = prepared.split_manifest.strata
    paths = []
    for j, splits in enumerate(fold_splits(strata, k, config.seed)):
        manifest = SplitManifest(
            splits=splits,
            strata=dict(sorted(strata.items())),
            seed=config.seed,
            fractions=fold_fractions(k),
            stratify_by=prepared.split_manifest.stratify_by,
        )
        path = fold_manifest_path(out, j, k)
        manifest.save(path)
        paths.append(path)
    return paths


def fold_manifest_path(out: Path, fold: int, k: int) -> Path:
    """Where :func:`write_fold_manifests` puts fold ``fold``'s split manifest."""
    return out / FOLDS_DIR / f"fold-{fold}-of-{k}.json"


def fold_fractions(k: int) -> dict[str, float]:
    """The shares of patients of a fold's split: ``k - 2`` folds train, one validates, one tests."""
    return {"train": (k - 2) / k, "validation": 1 / k, "test": 1 / k}


def pool_folds(
    groups: Mapping[str, Sequence[Path]], out: Path, *, n_resamples: int, confidence_level: float
) -> dict[str, Path]:
    """Pool each named group of fold runs (``{cell folder name: its folds' run folders}``) into the
    pooled run ``out/pooled/<name>`` (see module docstring); return those folders by name.

    Raises:
        FoldError: a fold has no test predictions, or a patient is tested by two folds.
    """
    return {
        name: pool_predictions(
            folders, out / POOLED_DIR / name, n_resamples=n_resamples, confidence_level=confidence_level
        )
        for name, folders in groups.items()
    }


def pool_predictions(
    folders: Sequence[Path], out: Path, *, n_resamples: int, confidence_level: float
) -> Path:
    """Write the pooled run ``out`` from the fold runs ``folders``; return ``out``."""
    header: list[str] | None = None
    rows: list[dict[str, str]] = []
    tested_by: dict[str, Path] = {}
    kinds: dict[str, str] = {}
    train_patients = []
    for folder in folders:
        run = RunFolder(folder)
        predictions = run.test_predictions_file
        if not predictions.exists():
            raise FoldError(f"{predictions}: missing (the fold's run has no best model?)")
        with predictions.open(newline="") as handle:
            reader = csv.DictReader(handle)
            header = header or list(reader.fieldnames or [])
            mine = list(reader)
        for patient in {r["patient_id"] for r in mine}:
            if patient in tested_by:
                raise FoldError(
                    f"patient {patient!r} is tested by two folds: {tested_by[patient]} and {folder}"
                )
            tested_by[patient] = folder
        rows += mine
        metrics = run.read_test_metrics() or {}
        kinds.update(
            {
                t: v["kind"]
                for t, v in metrics.items()
                if isinstance(v, dict) and "roc_auc" in v and "kind" in v
            }
        )
        info = run.read_run_info()
        train_patients.append(int(((info.get("data_summary") or {}).get("patients") or {}).get("train", 0)))
    pooled = RunFolder(out)
    out.mkdir(parents=True, exist_ok=True)
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=header or [], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(pooled.test_predictions_file, table.getvalue())
    metrics = pooled_metrics(
        pooled.test_predictions_file, kinds, n_resamples=n_resamples, confidence_level=confidence_level
    )
    metrics |= pooled_statistics(folders, out, n_resamples=n_resamples, confidence_level=confidence_level)
    pooled.write_test_metrics(metrics)
    pooled.write_run_info(
        {
            "folds": [str(f) for f in folders],
            "data_summary": {
                "patients": {"train": round(float(np.mean(train_patients))), "test": len(tested_by)}
            },
        }
    )
    return out


def pooled_metrics(
    predictions: Path, kinds: dict[str, str], *, n_resamples: int, confidence_level: float
) -> dict[str, Any]:
    """``test_metrics.json`` of a pooled run: per classification task, ROC AUC on the pooled
    predictions with patient-bootstrap and DeLong intervals (:func:`mtl_hf.evaluation.evaluate_scores`)."""
    from ..evaluation import evaluate_scores
    from ..evaluation.inputs import roc_inputs

    metrics: dict[str, Any] = {}
    for task, pred in read_test_predictions(predictions).items():
        kind = kinds.get(task)
        if kind is None:
            continue
        references, scores = roc_inputs(pred["labels"], pred["probs"], kind)
        report = evaluate_scores(
            references,
            scores,
            kind,
            groups=pred["patients"],
            n_resamples=n_resamples,
            confidence_level=confidence_level,
        )
        metrics[task] = {
            "kind": kind,
            **report.to_dict(),
            "metrics": [
                {"metric": "roc_auc", "value": report.roc_auc, "lower": report.low, "upper": report.high,
                 "higher_is_better": True, "model_index": "ROC AUC", "n_samples": len(references),
                 "confidence_level": confidence_level}
            ],
        }  # fmt: skip
    return metrics


def pooled_statistics(
    folders: Sequence[Path], out: Path, *, n_resamples: int, confidence_level: float
) -> dict[str, Any]:
    """``test_metrics.json`` entries of the pooled run ``out`` for the tasks with additive metrics
    that every fold has: their ``test_statistics_<task>.csv`` rows concatenated into ``out``'s, and the
    metrics of the task's head (as the first fold's best model's config describes it) on them, with
    patient-bootstrap intervals and the result rows every task has."""
    import torch

    from ..evaluation.task_metrics import AdditiveEvaluator, TestSettings
    from ..run_folder import RunFolder
    from .task_results import read_statistics, saved_head

    runs = [RunFolder(f) for f in folders]
    tasks = set.intersection(*(set(r.test_statistics_files()) for r in runs)) if runs else set()
    metrics: dict[str, Any] = {}
    for task in sorted(tasks):
        texts = [r.test_statistics_file(task).read_text().splitlines() for r in runs]
        pooled = RunFolder(out).test_statistics_file(task)
        pooled.write_text("\n".join([texts[0][0], *(line for text in texts for line in text[1:])]) + "\n")
        _, patients, stats = read_statistics(pooled)
        head = saved_head(folders[0], task)
        entry, rows = AdditiveEvaluator(head).test_results(
            torch.from_numpy(stats),
            patients if any(patients) else None,
            TestSettings(n_resamples, confidence_level),
        )
        rows_out = [{k: v for k, v in r.to_dict().items() if k != "task"} for r in rows]
        metrics[task] = {"kind": head.registered_name, **entry, "metrics": rows_out}
    return metrics
