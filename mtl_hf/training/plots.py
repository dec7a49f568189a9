"""``plots/training_curves.png``: per-task training losses and validation metrics over a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .metrics_log import read_metrics

NOT_METRICS = ("loss", "mse/", "n/", "weight/", "lr")
"""Logged keys that are not a ``<metric>/<task>`` score (ROC AUC, Dice, a plugin head's metric)."""


def curves(metrics_path: str | Path) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """``{"train": {key: (steps, values)}, "val": {...}}`` for the losses, reconstruction errors and
    ``<metric>/<task>`` scores of ``metrics.jsonl`` (non-finite values logged as strings are left out)."""
    out: dict[str, dict[str, tuple[list[float], list[float]]]] = {"train": {}, "val": {}}
    for row in read_metrics(metrics_path):
        split = row.get("split")
        if split not in out:
            continue
        for key, value in row.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            if key.startswith(("loss", "mse/")) or ("/" in key and not key.startswith(NOT_METRICS)):
                steps, values = out[split].setdefault(key, ([], []))
                steps.append(float(row["step"]))
                values.append(float(value))
    return out


def plot_training_curves(metrics_path: str | Path, path: str | Path) -> dict[str, Any]:
    """Three panels: training losses, validation losses, validation scores (ROC AUC, Dice...); returns
    the plotted data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = curves(metrics_path)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    panels = [
        (axes[0], data["train"], lambda key: key.startswith("loss"), "training loss"),
        (axes[1], data["val"], lambda key: key.startswith("loss/"), "validation loss"),
        (axes[2], data["val"], lambda key: not key.startswith(("loss", "mse/")), "validation scores"),
    ]
    for ax, series, shown, title in panels:
        for key, (steps, values) in sorted(series.items()):
            if shown(key):
                ax.plot(steps, values, marker="." if len(steps) < 30 else None, label=key)
        ax.set_title(title)
        ax.set_xlabel("optimizer step")
        if ax.lines:
            ax.legend(fontsize=8)
    scores = [v for line in axes[2].lines for v in line.get_ydata()]
    if scores and min(scores) >= 0.0 and max(scores) <= 1.0:
        axes[2].set_ylim(0.0, 1.0)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return data
