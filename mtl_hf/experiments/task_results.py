"""Every task's test results in ``mtl-hf compare``, in one format, and paired differences of any metric.

Each run writes its test results as rows of (task, metric, value, lower, upper) (``test_metrics.json``,
``test_results.csv``; :mod:`mtl_hf.evaluation.task_metrics`), whatever the task's head: ROC AUC of a
classifier, Dice of a segmentation plugin's head, R² / MAE / RMSE / Pearson of a regression. From them:

* ``metrics.csv``: one row per run, task and metric (value, interval, whether higher is better);
* ``paired_differences.csv``: for each pair of strategies (the comparisons of the ROC AUC tables) and
  every metric, the difference on the same test samples with its paired patient-bootstrap interval and
  p-value: for ROC AUC the paired bootstrap of :func:`mtl_hf.evaluation.compare_scores` (DeLong's test
  is in ``comparisons.csv``), for metrics of additive statistics the paired bootstrap of
  :func:`mtl_hf.evaluation.paired_bootstrap_additive_metrics` on each run's
  ``test_statistics_<task>.csv``, with the metric function of the task's head built from the saved
  config (no weights loaded).

Both are also rendered as Markdown for ``results.md`` and the terminal.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from itertools import product
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..data.errors import DataError
from ..run_folder import RunFolder


class Cell(Protocol):
    """What this module reads of one run of the comparison grid (``compare.Cell``)."""

    @property
    def label(self) -> str: ...
    @property
    def sampling(self) -> str: ...
    @property
    def train_fraction(self) -> float: ...
    @property
    def seed(self) -> int: ...


class Grid(Protocol):
    """What this module reads of the comparison grid (``compare.GridSection``)."""

    @property
    def sampling(self) -> Sequence[str]: ...
    @property
    def train_fractions(self) -> Sequence[float]: ...
    @property
    def seeds(self) -> Sequence[int]: ...


class CompareConfig(Protocol):
    """What this module reads of a comparison's configuration (``compare.CompareConfig``); described
    here so that ``compare`` imports this module and not the other way round."""

    @property
    def output_dir(self) -> str: ...
    @property
    def grid(self) -> Grid: ...
    @property
    def tasks(self) -> Sequence[str] | None: ...
    @property
    def bootstrap_resamples(self) -> int: ...
    @property
    def confidence_level(self) -> float: ...


METRICS_CSV = "metrics.csv"
DIFFERENCES_CSV = "paired_differences.csv"


def metric_rows(config: CompareConfig, runs: Sequence[tuple[Cell, Path]]) -> list[dict[str, Any]]:
    """One row per run, task and metric of the runs' test results."""
    from ..evaluation.task_metrics import results_of

    rows = []
    for cell, folder in runs:
        for r in results_of(RunFolder(folder).read_test_metrics() or {}):
            if config.tasks is not None and r.task not in config.tasks:
                continue
            rows.append(
                {
                    "strategy": cell.label, "sampling": cell.sampling, "train_fraction": cell.train_fraction,
                    "seed": cell.seed, "task": r.task, "metric": r.metric, "value": r.value, "lower": r.lower,
                    "upper": r.upper, "higher_is_better": r.higher_is_better, "n_test": r.n_samples,
                    "run_dir": str(folder),
                }
            )  # fmt: skip
    return rows


def paired_differences(
    config: CompareConfig,
    runs: Sequence[tuple[Cell, Path]],
    pairs: Iterable[tuple[str, str]],
    roc_auc_comparisons: Sequence[Any] = (),
) -> list[dict[str, Any]]:
    """Paired differences of every metric between the runs of each pair of strategies that share
    sampling, training fraction and seed: the ROC AUC ``comparisons`` already drawn (their bootstrap
    part), and every metric of additive statistics."""
    from ..evaluation import align_by_sample_id, paired_bootstrap_additive_metrics

    rows = [
        {
            "task": c.task, "metric": "roc_auc", "sampling": c.sampling, "train_fraction": c.train_fraction,
            "seed": c.seed, "model_a": c.model_a, "model_b": c.model_b, "value_a": c.auc_a, "value_b": c.auc_b,
            "difference": c.delta, "low": c.bootstrap_low, "high": c.bootstrap_high, "p_value": c.bootstrap_p,
            "higher_is_better": True, "n_test": c.n_test,
        }
        for c in roc_auc_comparisons
    ]  # fmt: skip
    folders = {(c.label, c.sampling, c.train_fraction, c.seed): f for c, f in runs}
    grid = config.grid
    heads: dict[tuple[Path, str], Any] = {}
    for (a, b), sampling, fraction, seed in product(pairs, grid.sampling, grid.train_fractions, grid.seeds):
        folder_a, folder_b = (
            folders.get((a, sampling, fraction, seed)),
            folders.get((b, sampling, fraction, seed)),
        )
        if folder_a is None or folder_b is None:
            continue
        for task, path_a in RunFolder(folder_a).test_statistics_files().items():
            path_b = RunFolder(folder_b).test_statistics_file(task)
            if not path_b.exists() or (config.tasks is not None and task not in config.tasks):
                continue
            ids_a, patients, stats_a = read_statistics(path_a)
            ids_b, _, stats_b = read_statistics(path_b)
            order = align_by_sample_id(ids_a, ids_b, name_a=a, name_b=b)
            if (folder_a, task) not in heads:
                heads[(folder_a, task)] = saved_head(folder_a, task)
            head = heads[(folder_a, task)]
            better = {s.name: s.higher_is_better for s in head.metric_specs()}
            results = paired_bootstrap_additive_metrics(
                stats_a,
                stats_b[order],
                head.metrics_from_sums,
                patients if any(patients) else None,
                n_resamples=config.bootstrap_resamples,
                confidence_level=config.confidence_level,
                seed=seed,
            )
            for metric, r in results.items():
                rows.append(
                    {
                        "task": task, "metric": metric, "sampling": sampling, "train_fraction": fraction,
                        "seed": seed, "model_a": a, "model_b": b, "value_a": r.value_a, "value_b": r.value_b,
                        "difference": r.difference, "low": r.low, "high": r.high, "p_value": r.p_value,
                        "higher_is_better": better.get(metric, True), "n_test": r.n_samples,
                    }
                )  # fmt: skip
    return rows


def read_statistics(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """Sample ids, patient ids and the ``(N, S)`` statistics of a ``test_statistics_<task>.csv``."""
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if len(rows) < 2 or rows[0][:2] != ["sample_id", "patient_id"]:
        raise DataError(str(path), "expected a header 'sample_id,patient_id,...' and at least one row")
    body = rows[1:]
    try:
        values = np.array([[float(v) for v in r[2:]] for r in body], dtype=np.float64)
    except ValueError as exc:
        raise DataError(str(path), str(exc)) from exc
    return [r[0] for r in body], [r[1] for r in body], values


def saved_head(folder: Path, task: str) -> Any:
    """Task ``task``'s head as the run's best model's config describes it (freshly initialised: its
    metric functions need its options, not its weights); for a pooled run of cross-validation folds,
    the first fold's."""
    from transformers import AutoConfig

    from ..backbone import image_size_of, patch_size_of
    from ..heads import HEADS, BackboneSpec

    source = RunFolder(folder).best_model
    if not source.is_dir():  # a pooled run of cross-validation folds: its first fold's model
        first = (RunFolder(folder).read_run_info().get("folds") or [None])[0]
        source = RunFolder(first).best_model if first else source
    config: Any = AutoConfig.from_pretrained(source)
    backbone = config.backbone_config
    spec = BackboneSpec(
        hidden_size=backbone.hidden_size,
        patch_size=patch_size_of(backbone),
        num_channels=backbone.num_channels,
        num_hidden_layers=backbone.num_hidden_layers,
        image_size=image_size_of(backbone),
    )
    return HEADS.get(config.tasks[task]["type"])(task, config.task_options(task), spec)


def task_results_section(
    config: CompareConfig,
    runs: Sequence[tuple[Cell, Path]],
    pairs: Iterable[tuple[str, str]],
    roc_auc_comparisons: Sequence[Any] = (),
) -> str | None:
    """Write ``metrics.csv`` and ``paired_differences.csv``; return their Markdown tables, or ``None``
    when no run has test results."""
    rows = metric_rows(config, runs)
    if not rows:
        return None
    out = Path(config.output_dir)
    _write_csv(out / METRICS_CSV, rows)
    lines = [
        "| strategy | sampling | fraction | seed | task | metric | value | interval |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {r['strategy']} | {r['sampling']} | {r['train_fraction']:g} | {r['seed']} | {r['task']} | "
            f"{r['metric']} {'↑' if r['higher_is_better'] else '↓'} | {r['value']:.3f} | {r['lower']:.3f}–{r['upper']:.3f} |"
            for r in rows
        ),
    ]
    differences = paired_differences(config, runs, pairs, roc_auc_comparisons)
    if differences:
        _write_csv(out / DIFFERENCES_CSV, differences)
        lines += [
            "",
            "| comparison | sampling | fraction | seed | task | metric | difference | paired bootstrap CI | p |",
            "|---|---|---|---|---|---|---|---|---|",
            *(
                f"| {c['model_a']} vs {c['model_b']} | {c['sampling']} | {c['train_fraction']:g} | {c['seed']} | "
                f"{c['task']} | {c['metric']} {'↑' if c['higher_is_better'] else '↓'} | {c['difference']:+.3f} | "
                f"[{c['low']:+.3f}, {c['high']:+.3f}] | {c['p_value']:.3f} |"
                for c in differences
            ),
        ]
    return "\n".join(lines)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
