"""The run folder and the command line: every override applied, runs never mixed, damaged or planted
files never trusted or written through."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch.utils.data import Dataset

from mtl_hf.cli import main
from mtl_hf.data.errors import DataError
from mtl_hf.options import OptionsError, from_dict
from mtl_hf.run_folder import RunFolder, RunFolderError
from mtl_hf.train import parse_command_line, train
from mtl_hf.training.config import RunConfig
from mtl_hf.training.faults import DataFaultError
from tests.training.synthetic import base_config, make_data


class FailsAfter(Dataset):
    """Training data whose ``calls``-th load and every later one fail with a :class:`DataError`."""

    def __init__(self, dataset: Any, calls: int) -> None:
        self.dataset, self.calls, self.seen = dataset, calls, 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Any:
        self.seen += 1
        if self.seen >= self.calls:
            raise DataError(f"sample-{i}.png", "unreadable (planted)")
        return self.dataset[i]


def _config(tmp_path: Path, name: str = "run", **training: Any) -> RunConfig:
    return from_dict(RunConfig, base_config(str(tmp_path / name), strategy="stl", **training))


def _failing_data(calls: int) -> Any:
    data = make_data()
    data.train = FailsAfter(data.train, calls)
    return data


def test_every_form_of_the_command_line_applies_every_override(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(base_config(str(tmp_path / "from-file"))))
    out = str(tmp_path / "from-command-line")
    forms = [
        [str(cfg), f"output_dir={out}", "training.seed=1"],
        ["--config", str(cfg), f"output_dir={out}", "training.seed=1"],
        ["--config", str(cfg), "--output_dir", out, "--training.seed", "1"],
        [str(cfg), f"--output_dir={out}", "--training.seed=1"],
        ["--config", str(cfg), "--resume", f"output_dir={out}", "training.seed=1"],
        ["--overwrite", str(cfg), "--training.seed", "1", f"output_dir={out}"],
    ]
    for argv in forms:
        command = parse_command_line(argv)
        assert (command.config.output_dir, command.config.training.seed) == (out, 1), argv
    assert parse_command_line(forms[4]).resume is True and parse_command_line(forms[5]).overwrite
    with pytest.raises(OptionsError, match="'other.yaml': not an override"):
        parse_command_line([str(cfg), "other.yaml"])
    with pytest.raises(OptionsError, match="'stray': not an override"):
        parse_command_line(["--config", str(cfg), "training.seed=1", "stray"])
    # the first override after --config is applied: an invalid one stops the run before anything starts
    assert main(["train", "--config", str(cfg), "training.batch_size=0"]) == 2
    assert "batch_size must be at least 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "from-file").exists()


def test_overwrite_starts_from_an_empty_checkpoint_set_and_resume_never_crosses_runs(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    run = RunFolder(tmp_path / "run")
    train(_config(tmp_path, epochs=3, keep_checkpoints=10), make_data())  # run A: 9 steps
    first_id = run.run_id()
    assert [p.name for p in run.list_checkpoints()][-1] == "checkpoint-00000009" and run.is_finished()

    # run B over it, 2 epochs (6 steps), stopped by a data fault inside its second epoch
    with pytest.raises(DataFaultError):
        train(_config(tmp_path, epochs=2, keep_checkpoints=10), _failing_data(calls=33), overwrite=True)
    assert not run.is_finished() and run.run_id() != first_id
    assert max(int(p.name.split("-")[1]) for p in run.list_checkpoints()) <= 4  # none of run A's

    result = train(_config(tmp_path, epochs=2, keep_checkpoints=10), make_data(), resume=True, overwrite=True)
    assert result.state.finished and result.state.global_step == 6  # run B's length, not run A's 9
    steps = [json.loads(line)["step"] for line in run.metrics_file.read_text().splitlines()]
    assert max(steps) == 6

    # a checkpoint of another run planted in the folder is refused, not resumed
    other = RunFolder(tmp_path / "other")
    with pytest.raises(DataFaultError):
        train(_config(tmp_path, "other", epochs=2), _failing_data(calls=33))
    shutil.copytree(run.list_checkpoints()[-1], other.checkpoint(50))
    with pytest.raises(RunFolderError, match=f"belongs to run {run.run_id()}, not to the run of"):
        train(_config(tmp_path, "other", epochs=2), make_data(), resume=True)


def test_resume_passes_over_a_truncated_newest_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    torch.set_num_threads(1)
    config = _config(tmp_path, epochs=2, save_every_steps=1)
    with pytest.raises(DataFaultError):
        train(config, _failing_data(calls=40))
    run = RunFolder(config.output_dir)
    previous, newest = run.list_checkpoints()[-2:]
    weights = newest / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    capsys.readouterr()

    result = train(config, make_data(), resume=True)
    printed = capsys.readouterr().out
    assert f"{weights}: incomplete or damaged" in printed
    assert f"resuming from {previous} instead" in printed
    assert f"Resumed from {previous}" in printed
    assert result.state.finished and result.state.global_step == 6


def test_leftovers_of_interrupted_best_model_writes_are_removed_at_start(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    config = _config(tmp_path, epochs=1)
    run = RunFolder(config.output_dir)
    for leftover in (run.path / ".tmp-best_model-99999", run.path / ".old-best_model-99999"):
        leftover.mkdir(parents=True)
        (leftover / "model.safetensors").write_bytes(b"half")
    train(config, make_data())
    assert sorted(p.name for p in run.path.iterdir() if p.name.startswith(".")) == []
    assert run.has_best_model()


def test_links_planted_in_a_run_folder_are_never_written_through(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    config = _config(tmp_path, epochs=1)
    run = RunFolder(config.output_dir)
    run.path.mkdir()
    planted = [run.config_file, run.run_info_file, run.test_metrics_file, run.test_predictions_file]
    for path in planted:
        path.symlink_to(victim)
    train(config, make_data())
    assert victim.read_text() == "precious"
    assert all(path.is_file() and not path.is_symlink() for path in planted)
    assert yaml.safe_load(run.config_file.read_text())["output_dir"] == config.output_dir

    # the lock is refused rather than opened through a link (its target would be truncated)
    run.lock_file.symlink_to(victim)
    with pytest.raises(RunFolderError, match=r"\.lock is a symbolic link .*remove it"):
        train(config, make_data(), overwrite=True)
    assert victim.read_text() == "precious"
