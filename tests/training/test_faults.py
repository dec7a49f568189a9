"""Non-finite losses: skipped, counted and logged; too many in a row stop the run with a checkpoint kept."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from mtl_hf.heads import HEADS, BackboneFeatures, HeadOptions, HeadOutput, TaskHead
from mtl_hf.options import from_dict
from mtl_hf.train import TrainingError, train
from mtl_hf.training.checkpointing import list_checkpoints
from mtl_hf.training.config import RunConfig
from mtl_hf.training.metrics_log import read_metrics
from mtl_hf.training.step import StepResult, describe_culprit
from tests.training.synthetic import base_config, make_data


@dataclass
class NanOptions(HeadOptions):
    nan_from: int = 0
    nan_count: int = 0


@HEADS.register("test_nan_burst")
class NanBurstHead(TaskHead):
    """A self-supervised toy head whose loss is NaN on training calls nan_from .. nan_from + nan_count - 1."""

    Options = NanOptions
    requires_labels = False

    def __init__(self, task_name, options, backbone):
        super().__init__(task_name, options, backbone)
        self.proj = torch.nn.Linear(backbone.hidden_size, 1)
        self.calls = 0

    def forward(self, features: BackboneFeatures, labels=None) -> HeadOutput:
        loss = self.proj(features.cls_token).pow(2).mean()
        if self.training:
            if self.options.nan_from <= self.calls < self.options.nan_from + self.options.nan_count:
                loss = loss * float("nan")
            self.calls += 1
        return HeadOutput(loss=loss)


def config_with_nans(tmp_path: Path, nan_from: int, nan_count: int, **training) -> RunConfig:
    raw = base_config(str(tmp_path / "run"), **training)
    raw["model"]["tasks"]["burst"] = {"type": "test_nan_burst", "nan_from": nan_from, "nan_count": nan_count}
    return from_dict(RunConfig, raw)


def test_nan_burst_is_skipped_counted_and_logged(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    torch.set_num_threads(1)
    result = train(config_with_nans(tmp_path, nan_from=1, nan_count=2, max_nonfinite_steps=3), make_data())
    assert result.state.nonfinite_total == 2 and result.state.finished
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
    out = capsys.readouterr().out
    # only the task whose loss went NaN is named; the classification task's loss stayed finite
    assert "non-finite loss of task 'burst', step skipped (2 in a row, 2 in all)" in out
    assert "task 'tumour'" not in out
    rows = [r for r in read_metrics(result.output_dir / "metrics.jsonl") if r["split"] == "train"]
    assert [r["loss"] for r in rows[1:3]] == ["nan", "nan"]  # logged as such, not hidden


def test_too_many_nans_stop_with_a_clear_error_and_a_checkpoint(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    with pytest.raises(
        TrainingError,
        match=r"3 consecutive steps had a NaN or inf loss \(task 'burst' in 3 of them; limit "
        r"training.max_nonfinite_steps=2\)",
    ) as info:
        train(config_with_nans(tmp_path, nan_from=1, nan_count=100, max_nonfinite_steps=2), make_data())
    assert "tumour" not in str(info.value)
    assert list_checkpoints(tmp_path / "run")
    # skipped steps never touched the weights: whatever was saved as best is finite
    from transformers import AutoModel

    best = AutoModel.from_pretrained(tmp_path / "run" / "best_model")
    assert all(torch.isfinite(p).all() for p in best.parameters())


def test_a_step_with_finite_task_losses_blames_the_weighted_total() -> None:
    nan = float("nan")
    both = StepResult(nan, {"a": nan, "b": 1.0, "c": float("inf")}, {}, 0.1, applied=False)
    assert both.nonfinite_culprits() == ["a", "c"]
    assert [describe_culprit(c) for c in both.nonfinite_culprits()] == ["task 'a'", "task 'c'"]
    total = StepResult(nan, {"a": 0.5, "b": 1.0}, {}, 0.1, applied=False)
    assert [describe_culprit(c) for c in total.nonfinite_culprits()] == [
        "the weighted total (every task loss finite)"
    ]
