"""Load the metrics shipped inside mtl-hf as 🤗 evaluate modules, by absolute path (works offline).

``evaluate.load("roc_auc")`` fetches its script from the Hub. Ours are package data, so they are loaded
from the installed package's own folder, from a source checkout and from a wheel alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .score_layouts import DEFAULT_LAYOUT, SCORE_LAYOUTS

METRICS_DIR = Path(__file__).resolve().parent / "metrics"
METRIC_NAMES: tuple[str, ...] = ("mtl_roc_auc",)
METRIC_CONFIGS: tuple[str, ...] = tuple(SCORE_LAYOUTS)
"""Configurations of the shipped metrics: the score layouts (:mod:`mtl_hf.evaluation.score_layouts`)."""


def metric_path(name: str = "mtl_roc_auc") -> Path:
    """Absolute folder of a shipped metric (holding ``<name>/<name>.py``), as ``evaluate.load`` wants it."""
    if name not in METRIC_NAMES:
        raise ValueError(f"name: unknown metric {name!r}; shipped metrics: {', '.join(METRIC_NAMES)}")
    folder = METRICS_DIR / name
    if not (folder / f"{name}.py").is_file():
        raise FileNotFoundError(
            f"{folder / (name + '.py')}: metric script missing from the installation (package data not installed)"
        )
    return folder


def load_metric(task: str = DEFAULT_LAYOUT, name: str = "mtl_roc_auc", **kwargs: Any) -> Any:
    """Load a shipped metric with ``evaluate.load`` by absolute path.

    Args:
        task: configuration, a score layout: ``"binary"`` (default), ``"multilabel"`` or ``"multiclass"``.
        name: the metric; ``"mtl_roc_auc"``.
        **kwargs: passed to ``evaluate.load`` (e.g. ``num_process``, ``process_id``, ``experiment_id``,
            ``keep_in_memory``).

    Returns:
        The ``evaluate.EvaluationModule``; see its ``inputs_description`` for ``compute`` arguments.

    Example:
        >>> metric = load_metric("binary")
        >>> metric.compute(references=[0, 1, 1, 0], predictions=[0.2, 0.9, 0.6, 0.4], n_resamples=100)["roc_auc"]
        1.0
    """
    if task not in METRIC_CONFIGS:
        raise ValueError(f"task: unknown task {task!r}; expected one of {', '.join(METRIC_CONFIGS)}")
    import evaluate

    return evaluate.load(str(metric_path(name)), task, **kwargs)
