"""plot_weights draws the train rows' task weights and losses from a run's metrics.jsonl."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib.image import imread

from mtl_hf.weighting import plot_weights


def write_metrics(path, rows) -> None:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")


def test_plot_weights_draws_every_task_weight_and_loss(tmp_path) -> None:
    metrics = tmp_path / "run" / "metrics.jsonl"
    metrics.parent.mkdir()
    rows = []
    for step in (20, 10, 30):  # out of order on purpose
        rows.append(
            {
                "step": step, "epoch": 0, "split": "train", "loss": 1.0,
                "loss/tumour": 1.0 / step, "loss/mim": 2.0 / step,
                "weight/tumour": 0.5 + step / 100, "weight/mim": 1.5 - step / 100, "lr": 1e-4,
            }
        )  # fmt: skip
    rows.append({"step": 30, "epoch": 0, "split": "val", "loss/tumour": 9.0, "roc_auc/tumour": 0.8})
    write_metrics(metrics, rows)
    out = tmp_path / "plots" / "weights.png"
    figure = plot_weights(metrics, out)

    image = imread(out)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    weights_ax, losses_ax = figure.axes
    lines = {line.get_label(): line.get_xydata() for line in weights_ax.lines}
    np.testing.assert_allclose(lines["tumour"], [[10, 0.6], [20, 0.7], [30, 0.8]])
    np.testing.assert_allclose(lines["mim"], [[10, 1.4], [20, 1.3], [30, 1.2]])
    losses = {line.get_label(): line.get_xydata() for line in losses_ax.lines}
    np.testing.assert_allclose(losses["tumour"], [[10, 0.1], [20, 0.05], [30, 1 / 30]])  # no val row
    assert set(losses) == {"tumour", "mim"}
    assert losses_ax.get_yscale() == "log"


def test_plot_weights_errors_name_the_file(tmp_path) -> None:
    metrics = tmp_path / "metrics.jsonl"
    write_metrics(metrics, [{"step": 1, "epoch": 0, "split": "val", "loss/a": 1.0}])
    with pytest.raises(ValueError, match="metrics.jsonl: no train rows"):
        plot_weights(metrics, tmp_path / "out.png")
    metrics.write_text('{"step": 1, "split": "train"}\nnot json\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: not a JSON object"):
        plot_weights(metrics, tmp_path / "out.png")
