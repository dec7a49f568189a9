"""The low-data study of ``mtl-hf compare``: read the runs' test predictions, pool seeds, write the study.

For every classification task, sampling scheme, strategy and training fraction of the grid, the runs of
all seeds are pooled (:func:`mtl_hf.evaluation.low_data_study`): the seed-mean test ROC AUC with a
patient-bootstrap interval, and the paired differences between the compared strategies. Written into
the compare folder:

* ``low_data.csv`` (one row per strategy and fraction) and ``low_data_differences.csv`` (one row per
  pair and fraction);
* ``plots/low_data_<task>.png``: AUC against training fraction with intervals, and the paired
  differences;
* ``low_data.md``: the tables and what they show in words (also appended to ``results.md``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..evaluation.inputs import roc_inputs
from ..run_folder import RunFolder

if TYPE_CHECKING:
    from ..evaluation import CurveDifference, CurvePoint, RunScores
    from .task_results import Cell, CompareConfig

LOW_DATA_CSV = "low_data.csv"
LOW_DATA_DIFFERENCES_CSV = "low_data_differences.csv"
LOW_DATA_MD = "low_data.md"


@dataclass(frozen=True)
class LowDataStudy:
    """What :func:`low_data_section` wrote: the Markdown, the same tables and findings as terminal
    text, and the rows."""

    markdown: str
    text: str
    points: list[CurvePoint]
    differences: list[CurveDifference]


def collect_test_scores(
    config: CompareConfig, runs: Sequence[tuple[Cell, Path]]
) -> dict[tuple[str, str, str, float], list[RunScores]]:
    """``{(task, run label, sampling, fraction): [one RunScores per seed]}`` of the classification
    tasks (those with a ROC AUC in ``test_metrics.json``) of every finished run."""
    from ..evaluation import RunScores

    scores: dict[tuple[str, str, str, float], list[RunScores]] = defaultdict(list)
    for cell, folder in sorted(runs, key=lambda run: run[0].seed):
        run = RunFolder(folder)
        metrics = run.read_test_metrics() if run.test_predictions_file.exists() else None
        if metrics is None:
            continue
        for task, pred in run.read_test_predictions().items():
            if metrics.get(task, {}).get("roc_auc") is None or "kind" not in metrics[task]:
                continue
            if config.tasks is not None and task not in config.tasks:
                continue
            kind = metrics[task]["kind"]  # the ROC AUC metric's configuration
            references, probabilities = roc_inputs(pred["labels"], pred["probs"], kind)
            key = (task, cell.label, cell.sampling, cell.train_fraction)
            scores[key].append(RunScores(pred["ids"], pred["patients"], references, probabilities, kind))
    return dict(scores)


def train_patients(runs: Sequence[tuple[Cell, Path]]) -> dict[float, int]:
    """Training patients per fraction, from the runs' ``run_info.json`` (0 where not recorded)."""
    out: dict[float, int] = {}
    for cell, folder in runs:
        summary = RunFolder(folder).read_run_info().get("data_summary") or {}
        count = int((summary.get("patients") or {}).get("train", 0))
        if count:
            out[cell.train_fraction] = count
    return out


def low_data_section(
    config: CompareConfig, runs: Sequence[tuple[Cell, Path]], pairs: list[tuple[str, str]]
) -> LowDataStudy | None:
    """Compute and write the study (see module docstring).

    ``None`` when the grid has a single training fraction (there is no curve to draw).
    """
    from ..evaluation import (
        CurveDifference,
        CurvePoint,
        low_data_findings,
        low_data_markdown,
        low_data_study,
        low_data_tables,
        plot_low_data,
    )
    from ..evaluation.results import write_rows_csv
    from ..evaluation.tables import table_to_text

    if len(config.grid.train_fractions) < 2:
        return None
    scores = collect_test_scores(config, runs)
    if not scores:
        return None
    points, differences = low_data_study(
        scores,
        pairs,
        train_patients=train_patients(runs),
        n_resamples=config.bootstrap_resamples,
        confidence_level=config.confidence_level,
    )
    out = Path(config.output_dir)
    write_rows_csv(points, out / LOW_DATA_CSV, CurvePoint)
    write_rows_csv(differences, out / LOW_DATA_DIFFERENCES_CSV, CurveDifference)
    figures = []
    for task in sorted({p.task for p in points}):
        plot = plot_low_data(points, differences, out / "plots" / f"low_data_{task}.png", task=task)
        figures.append(plot.path.relative_to(out).as_posix())
    text = low_data_markdown(points, differences, figures=figures)
    (out / LOW_DATA_MD).write_text(text, encoding="utf-8")
    terminal = [table_to_text(t) for t in low_data_tables(points, differences)]
    terminal += low_data_findings(points, differences)
    return LowDataStudy(text, "\n\n".join(terminal), points, differences)
