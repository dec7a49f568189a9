"""Results of the tasks that are not classifiers (a segmentation plugin's Dice) in ``mtl-hf compare``.

Each run writes, for such a task, its test metrics with patient-bootstrap intervals
(``test_metrics.json``) and every test sample's metric statistics (``test_statistics_<task>.csv``, see
:meth:`mtl_hf.heads.TaskHead.metric_statistics`). From them:

* ``other_metrics.csv``: one row per run, task and metric (value, interval);
* ``other_comparisons.csv``: for each pair of strategies (the comparisons of the ROC AUC tables),
  the difference of each metric on the same test samples, with a paired patient bootstrap
  (:func:`mtl_hf.evaluation.paired_bootstrap_additive_metrics`): interval and p-value.

Both are also rendered as Markdown for ``results.md`` and the terminal.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Sequence
from itertools import product
from pathlib import Path
from typing import Any, Protocol

import numpy as np

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


OTHER_METRICS = "other_metrics.csv"
OTHER_COMPARISONS = "other_comparisons.csv"


def other_task_rows(config: CompareConfig, runs: Sequence[tuple[Cell, Path]]) -> list[dict[str, Any]]:
    """One row per run, non-classification task and metric of ``test_metrics.json``."""
    rows = []
    for cell, folder in runs:
        for task, values in (RunFolder(folder).read_test_metrics() or {}).items():
            if "roc_auc" in values or (config.tasks is not None and task not in config.tasks):
                continue
            for metric in [k for k in values if f"{k}_low" in values and f"{k}_high" in values]:
                rows.append(
                    {
                        "strategy": cell.label, "sampling": cell.sampling, "train_fraction": cell.train_fraction,
                        "seed": cell.seed, "task": task, "metric": metric, "value": values[metric],
                        "low": values[f"{metric}_low"], "high": values[f"{metric}_high"], "run_dir": str(folder),
                    }
                )  # fmt: skip
    return rows


def other_task_comparisons(
    config: CompareConfig, runs: Sequence[tuple[Cell, Path]], pairs: Iterable[tuple[str, str]]
) -> list[dict[str, Any]]:
    """Paired differences of every non-classification metric between the runs of each pair of
    strategies that share sampling, training fraction and seed."""
    from ..evaluation import align_by_sample_id, paired_bootstrap_additive_metrics

    folders = {(c.label, c.sampling, c.train_fraction, c.seed): f for c, f in runs}
    grid = config.grid
    functions: dict[tuple[Path, str], Callable[..., Any]] = {}
    rows = []
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
            if (folder_a, task) not in functions:
                functions[(folder_a, task)] = _metrics_function(folder_a, task)
            results = paired_bootstrap_additive_metrics(
                stats_a,
                stats_b[order],
                functions[(folder_a, task)],
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
                        "n_test": r.n_samples,
                    }
                )  # fmt: skip
    return rows


def read_statistics(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """Sample ids, patient ids and the ``(N, S)`` statistics of a ``test_statistics_<task>.csv``."""
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if len(rows) < 2 or rows[0][:2] != ["sample_id", "patient_id"]:
        raise ValueError(f"{path}: expected a header 'sample_id,patient_id,...' and at least one row")
    body = rows[1:]
    try:
        values = np.array([[float(v) for v in r[2:]] for r in body], dtype=np.float64)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    return [r[0] for r in body], [r[1] for r in body], values


def _metrics_function(folder: Path, task: str) -> Callable[..., Any]:
    """The ``metrics_from_sums`` of ``task``'s head in the run's best model."""
    from transformers import AutoModel

    return AutoModel.from_pretrained(RunFolder(folder).best_model).head(task).metrics_from_sums


def other_tasks_section(
    config: CompareConfig, runs: Sequence[tuple[Cell, Path]], pairs: Iterable[tuple[str, str]]
) -> str | None:
    """Write ``other_metrics.csv`` and ``other_comparisons.csv``; return their Markdown tables, or
    ``None`` when no run has a task that is not a classifier."""
    rows = other_task_rows(config, runs)
    if not rows:
        return None
    out = Path(config.output_dir)
    _write_csv(out / OTHER_METRICS, rows)
    lines = [
        "| strategy | sampling | fraction | seed | task | metric | value | interval |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {r['strategy']} | {r['sampling']} | {r['train_fraction']:g} | {r['seed']} | {r['task']} | "
            f"{r['metric']} | {r['value']:.3f} | {r['low']:.3f}–{r['high']:.3f} |"
            for r in rows
        ),
    ]
    comparisons = other_task_comparisons(config, runs, pairs)
    if comparisons:
        _write_csv(out / OTHER_COMPARISONS, comparisons)
        lines += [
            "",
            "| comparison | sampling | fraction | seed | task | metric | difference | paired bootstrap CI | p |",
            "|---|---|---|---|---|---|---|---|---|",
            *(
                f"| {c['model_a']} vs {c['model_b']} | {c['sampling']} | {c['train_fraction']:g} | {c['seed']} | "
                f"{c['task']} | {c['metric']} | {c['difference']:+.3f} | [{c['low']:+.3f}, {c['high']:+.3f}] | "
                f"{c['p_value']:.3f} |"
                for c in comparisons
            ),
        ]
    return "\n".join(lines)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
