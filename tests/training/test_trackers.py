"""Experiment trackers through Accelerate: a real run's TensorBoard events, read back with tensorboard's
own reader, hold exactly the rows of its ``metrics.jsonl`` and its figures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mtl_hf.cli import run_command
from mtl_hf.options import from_dict
from mtl_hf.train import main as train_main
from mtl_hf.train import train
from mtl_hf.training.checkpointing import list_checkpoints
from mtl_hf.training.config import RunConfig, load_config
from mtl_hf.training.metrics_log import read_metrics
from mtl_hf.training.trackers import TrackerError, tracker_names
from tests.training.synthetic import base_config, make_data

NOT_LOGGED = {"step", "epoch", "split", "phase"}


def expected_scalars(metrics_file: Path) -> dict[str, dict[int, float]]:
    """``{tag: {step: value}}`` as the loop logs ``metrics.jsonl``'s rows: training rows as they are,
    validation rows under ``val/``."""
    out: dict[str, dict[int, float]] = {}
    for row in read_metrics(metrics_file):
        prefix = "val/" if row["split"] == "val" else ""
        for key, value in row.items():
            if key not in NOT_LOGGED and isinstance(value, (int, float)):
                out.setdefault(prefix + key, {})[row["step"]] = float(value)
    return out


def event_folder(out: Path) -> Path:
    (folder,) = [p for p in (out / "logs").iterdir() if p.is_dir()]
    return folder


def test_tensorboard_events_equal_the_metrics_log(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    config = from_dict(
        RunConfig, base_config(str(tmp_path / "run"), strategy="mtl", report_to=["tensorboard"])
    )
    out = train(config, make_data()).output_dir
    folder = event_folder(out)
    assert folder.name == "run" and len(list(folder.glob("events.out.tfevents.*"))) == 1
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0}).Reload()

    expected = expected_scalars(out / "metrics.jsonl")
    assert {"loss", "loss/tumour", "loss/mim", "weight/tumour", "lr", "val/roc_auc/tumour"} <= set(expected)
    assert set(events.Tags()["scalars"]) == set(expected)
    for tag, values in expected.items():
        logged = {e.step: e.value for e in events.Scalars(tag)}
        assert logged.keys() == values.keys(), tag
        for step, value in values.items():
            assert logged[step] == pytest.approx(value, rel=1e-6, abs=1e-7), (tag, step)  # float32 in events

    plots = sorted((out / "plots").glob("*.png"))
    assert {p.stem for p in plots} >= {"training_curves", "task_weights"}
    assert set(events.Tags()["images"]) == {f"figures/{p.stem}" for p in plots}
    for plot in plots:
        (image,) = events.Images(f"figures/{plot.stem}")
        with Image.open(plot) as png:
            assert (image.width, image.height) == png.size
        assert image.step == max(max(v) for v in expected.values())


def test_a_resumed_run_keeps_one_event_per_step(tmp_path: Path) -> None:
    """Resumed from its first checkpoint, a run logs into the same event folder, and the events read
    back hold one value per step, equal to the resumed run's ``metrics.jsonl``."""
    torch.set_num_threads(1)
    config = from_dict(RunConfig, base_config(str(tmp_path / "run"), strategy="stl", report_to="tensorboard"))
    out = train(config, make_data()).output_dir
    first = list_checkpoints(out)[0]  # the end of epoch 1 (step 3) of 2
    (out / "trainer_state.json").unlink()
    train(config, make_data(), resume=str(first))
    events = EventAccumulator(str(event_folder(out)), size_guidance={"scalars": 0}).Reload()
    expected = expected_scalars(out / "metrics.jsonl")["loss"]
    assert [e.step for e in events.Scalars("loss")] == sorted(expected) == list(range(1, 7))
    assert [e.value for e in events.Scalars("loss")] == pytest.approx(
        [expected[s] for s in range(1, 7)], rel=1e-6
    )


def test_report_to_from_the_command_line_and_its_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(base_config(str(tmp_path / "run"))))
    assert load_config(path, ["--training.report_to", "tensorboard, mlflow"]).training.report_to == [
        "tensorboard",
        "mlflow",
    ]
    assert load_config(path, ["training.report_to=[tensorboard]"]).training.report_to == ["tensorboard"]
    assert tracker_names(["none"]) == [] and tracker_names(["tensorboard"]) == ["tensorboard"]

    with pytest.raises(TrackerError, match=r"unknown tracker 'tensorbord'; Accelerate knows .*tensorboard"):
        tracker_names(["tensorbord"])
    assert run_command("train", train_main, [str(path), "--training.report_to", "tensorbord"]) == 2
    assert "unknown tracker 'tensorbord'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # stopped before the run folder was made

    from accelerate.tracking import get_available_trackers
    from accelerate.utils import LoggerType

    installed = {str(t.value) for t in get_available_trackers()}
    missing = [n for n in LoggerType.list() if n not in installed | {"all"}]
    if not missing:
        pytest.skip("every tracker Accelerate knows is installed")
    with pytest.raises(TrackerError, match=f"tracker '{missing[0]}' needs the {missing[0]} package"):
        tracker_names(["tensorboard", missing[0]])
