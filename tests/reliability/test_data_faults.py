"""Data that fails while an epoch runs: a data-loader worker killed, an image in the cache damaged.

``training.on_data_error: stop`` must stop at once with a resumable checkpoint and an error naming
the sample; ``skip`` must leave the sample out (never substitute it), count it and log it. Nothing is
ever trained on a sample that did not decode.
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import Dataset, get_worker_info

from mtl_hf.data import DataConfig, prepare_datasets
from mtl_hf.options import OptionsError, from_dict
from mtl_hf.train import train
from mtl_hf.training import faults
from mtl_hf.training.checkpointing import latest_checkpoint, list_checkpoints
from mtl_hf.training.config import RunConfig
from mtl_hf.training.faults import DATA_ERRORS_FILE, DataFaultError
from mtl_hf.training.metrics_log import read_metrics
from tests.conftest import TwoProcessRuns
from tests.training.synthetic import base_config, image_manifest_run, make_data


class KillsItsWorkerOnce(Dataset):
    """Training data whose loader worker is killed (``SIGKILL``) when it loads ``index`` in ``epoch``,
    once: a marker file records that it happened."""

    def __init__(self, dataset: Any, index: int, epoch: int, marker: Path) -> None:
        self.dataset, self.index, self.kill_epoch, self.marker = dataset, index, epoch, marker
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Any:
        if i == self.index and self.epoch == self.kill_epoch and not self.marker.exists():
            assert get_worker_info() is not None, "expected to run in a worker process"
            self.marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return self.dataset[i]


def test_killed_loader_worker_stops_the_run_with_a_resumable_checkpoint(
    tmp_path: Path, figures: Counter[str]
) -> None:
    torch.set_num_threads(1)
    raw = base_config(str(tmp_path / "run"), epochs=2, strategy="stl", num_workers=1)
    config = from_dict(RunConfig, raw)
    data = make_data()
    data.train = KillsItsWorkerOnce(data.train, index=5, epoch=1, marker=tmp_path / "killed")
    with pytest.raises(DataFaultError) as info:
        train(config, data)
    message = str(info.value)
    assert "a data-loader worker died (DataLoader worker (pid" in message
    assert "killed by signal" in message or "exited unexpectedly" in message  # PyTorch says either
    newest = latest_checkpoint(tmp_path / "run")
    assert newest is not None and f"checkpoint {newest} holds the last completed step" in message
    state = json.loads((newest / "trainer_state.json").read_text())
    assert state["epoch_in_phase"] == 1 and not state["finished"]  # stopped inside the second epoch

    result = train(config, data, resume=True)  # the worker survives this time
    assert result.state.finished and (tmp_path / "killed").exists()
    steps = [r["step"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if r["split"] == "train"]
    assert steps == list(range(1, 7))
    figures["data-loader worker deaths stopped cleanly and resumed"] += 1


# -- a damaged image in the Arrow cache ------------------------------------------------------------------
def image_run(tmp_path: Path, name: str, **training: Any) -> RunConfig:
    """A run on 40 real PNG files (32 px grey, 2 per patient) through the data layer and its cache."""
    return image_manifest_run(tmp_path, name, epochs=2, strategy="stl", save_every_steps=2, **training)


def damage_cached_image(config: RunConfig) -> tuple[str, Path, bytes]:
    """Flip a byte inside one training image's PNG data in the cache file; returns the image's name,
    the cache file and its original bytes (to repair it)."""
    prepared = prepare_datasets(from_dict(DataConfig, config.data), cache_dir=config.cache_dir)
    victim = sorted(prepared.datasets["train"]["source"])[3]
    (arrow,) = {Path(p) for p in prepared.summary.cache_files}
    original = arrow.read_bytes()
    png = (Path(config.data["root"]) / victim).read_bytes()
    at = original.find(png)
    assert at > 0 and original.count(png) == 1
    damaged = bytearray(original)
    damaged[at + png.find(b"IDAT") + 40] ^= 0xFF
    arrow.write_bytes(bytes(damaged))
    return victim, arrow, original


def test_damaged_cached_image_stops_the_run_and_resumes_exactly_once_repaired(
    tmp_path: Path, figures: Counter[str]
) -> None:
    torch.set_num_threads(1)
    reference = train(image_run(tmp_path, "reference"), None).output_dir
    config = image_run(tmp_path, "run")
    victim, arrow, original = damage_cached_image(config)

    with pytest.raises(DataFaultError) as info:
        train(config, None)
    message = str(info.value)
    assert f"cannot be used: {victim}: cannot decode the stored image" in message
    assert "the cache is damaged: delete the cache folder to rebuild it" in message
    assert "training.on_data_error is 'stop'" in message and "continue with --resume" in message
    assert latest_checkpoint(config.output_dir) is not None

    arrow.write_bytes(original)  # repaired (what a rebuild of the cache writes)
    train(config, None, resume=True)
    out = Path(config.output_dir)
    losses = [(r["step"], r["loss"]) for r in read_metrics(out / "metrics.jsonl") if r["split"] == "train"]
    expected = [
        (r["step"], r["loss"]) for r in read_metrics(reference / "metrics.jsonl") if r["split"] == "train"
    ]
    assert losses == expected
    a = load_file(list_checkpoints(out)[-1] / "model.safetensors")
    b = load_file(list_checkpoints(reference)[-1] / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    figures["damaged samples found mid-epoch: stopped, repaired, resumed exactly"] += 1


def test_damaged_cached_image_is_skipped_counted_and_logged_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], figures: Counter[str]
) -> None:
    torch.set_num_threads(1)
    config = image_run(tmp_path, "run", on_data_error="skip", max_skipped_samples=5)
    victim, _, _ = damage_cached_image(config)
    trained_on: list[str] = []
    collate = faults.GuardedCollate.__call__

    def spy(self: faults.GuardedCollate, samples: list[Any]) -> dict[str, Any]:
        batch = collate(self, samples)
        trained_on.extend(batch.get("sample_id", []))
        return batch

    monkeypatch.setattr(faults.GuardedCollate, "__call__", spy)
    result = train(config, None)
    assert result.state.finished and result.state.skipped_samples == 2  # once per epoch
    assert victim not in trained_on and len(trained_on) == 2 * (24 - 1)
    events = [json.loads(line) for line in (result.output_dir / DATA_ERRORS_FILE).read_text().splitlines()]
    assert [e["epoch"] for e in events] == [0, 1]
    assert all(e["error"].startswith(f"{victim}: cannot decode the stored image") for e in events)
    assert f"skipped training sample {events[0]['index']} ({victim}: cannot decode" in capsys.readouterr().out
    figures["damaged samples skipped, counted and logged"] += 1


def test_too_many_skipped_samples_stop_the_run(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    config = image_run(tmp_path, "run", on_data_error="skip", max_skipped_samples=1)
    damage_cached_image(config)
    with pytest.raises(
        DataFaultError, match=r"2 training samples unreadable, more than training.max_skipped_samples=1"
    ):
        train(config, None)
    assert latest_checkpoint(config.output_dir) is not None


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"on_data_error": "ignore"}, "training.on_data_error: must be one of 'stop', 'skip'; got 'ignore'"),
        ({"on_data_error": True}, "training.on_data_error: must be one of 'stop', 'skip'; got True"),
        ({"max_skipped_samples": -1}, "max_skipped_samples must be >= 0, got -1"),
        ({"max_skipped_samples": 2.5}, "training.max_skipped_samples: expected an integer, got float 2.5"),
        ({"max_nonfinite_steps": -2}, "max_nonfinite_steps must be >= 0, got -2"),
    ],
)
def test_fault_settings_are_validated(tmp_path: Path, override: dict[str, Any], message: str) -> None:
    with pytest.raises(OptionsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        from_dict(RunConfig, base_config(str(tmp_path), **override))


def test_fault_settings_default_to_stopping() -> None:
    section = from_dict(RunConfig, base_config("x")).training
    assert section.on_data_error == "stop" and section.max_skipped_samples == 100
    assert section.max_nonfinite_steps == 5


@pytest.mark.two_processes("data_fault_skip")
@pytest.mark.two_processes("data_fault_stop")  # tests/reliability/ddp_data_fault.py, two policies
def test_two_processes_count_log_and_stop_on_each_others_bad_samples(
    two_process_runs: TwoProcessRuns,
) -> None:
    """Bad samples land on either process; the skips of both are counted and logged alike, and under
    ``stop`` both processes stop naming the sample, whichever one read it."""
    skip = two_process_runs.folder("data_fault_skip")  # samples 3, 10 and 17 unreadable
    assert [json.loads((skip / f"rank{i}.json").read_text())["skipped"] for i in range(2)] == [3, 3]
    logged = [json.loads(line) for line in (skip / "data_errors.jsonl").read_text().splitlines()]
    assert sorted(row["index"] for row in logged) == [3, 10, 17]
    assert json.loads((skip / "trainer_state.json").read_text())["skipped_samples"] == 3

    stop = two_process_runs.out / "data_fault_stop"  # sample 17 unreadable; the launch's last scenario
    assert two_process_runs.failed("data_fault_stop") == [True, True]
    named = "training sample 17 cannot be used: slices/sample17.png: cannot decode image"
    assert all(named in log for log in two_process_runs.logs("data_fault_stop"))  # in both processes' errors
    assert not list(stop.glob("rank*.done"))
    assert list_checkpoints(stop)  # the last completed step, to resume from
