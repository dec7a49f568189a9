"""Plot how a training run weighed its tasks: weights and losses per task over the training steps."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from os import PathLike
from pathlib import Path
from typing import Any


def read_train_series(
    metrics_jsonl_path: str | PathLike[str],
) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """``{"weight": {task: [(step, value), ...]}, "loss": {...}}`` from the ``split == "train"`` rows of a
    training run's ``metrics.jsonl`` (keys ``weight/<task>`` and ``loss/<task>``), sorted by step."""
    path = Path(metrics_jsonl_path)
    series: dict[str, dict[str, list[tuple[int, float]]]] = {
        "weight": defaultdict(list),
        "loss": defaultdict(list),
    }
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{line_number}: not a JSON object ({exc.msg})") from None
            if not isinstance(row, dict) or row.get("split") != "train":
                continue
            if "step" not in row:
                raise ValueError(f"{path}:{line_number}: train row without a 'step' key")
            for key, value in row.items():
                kind, _, task = key.partition("/")
                if (
                    kind in series
                    and task
                    and isinstance(value, (int, float))
                    and not isinstance(value, bool)
                ):
                    series[kind][task].append((int(row["step"]), float(value)))
    return {kind: {task: sorted(points) for task, points in tasks.items()} for kind, tasks in series.items()}


def plot_weights(metrics_jsonl_path: str | PathLike[str], out_png: str | PathLike[str]) -> Any:
    """Draw each task's weight (top) and loss (bottom) over the training steps and save a PNG.

    Args:
        metrics_jsonl_path: A training run's ``metrics.jsonl``.
        out_png: Where to write the figure (parent folders are created).

    Returns:
        The ``matplotlib.figure.Figure`` (one line per task in each of its two axes).

    Raises:
        ValueError: if the file has no train row with ``weight/<task>`` or ``loss/<task>`` values.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    series = read_train_series(metrics_jsonl_path)
    if not series["weight"] and not series["loss"]:
        raise ValueError(f"{metrics_jsonl_path}: no train rows with 'weight/<task>' or 'loss/<task>' values")
    figure = Figure(figsize=(8, 6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, 1, sharex=True)
    for ax, kind, label in ((axes[0], "weight", "task weight"), (axes[1], "loss", "task loss")):
        for task, points in series[kind].items():
            steps, values = zip(*points, strict=True)
            ax.plot(steps, values, label=task)
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        if series[kind]:
            ax.legend(loc="best", fontsize="small")
    losses = [v for points in series["loss"].values() for _, v in points]
    if losses and all(v > 0 and math.isfinite(v) for v in losses):
        axes[1].set_yscale("log")
    axes[1].set_xlabel("training step")
    axes[0].set_title("Task weights and losses during training")
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)
    return figure
