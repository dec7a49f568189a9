"""A disk that fills up or a write that fails part-way, while saving a checkpoint or building the cache.

The failures are real where the kernel can make them so: ``RLIMIT_FSIZE`` makes the kernel refuse to
let a file grow past a size (``EFBIG``, the same path as ``ENOSPC`` through ``write(2)``), part-way
through the real ``safetensors`` / ``torch.save`` / Arrow writes. ``ENOSPC`` itself needs a full file
system, which a test cannot make without privileges; it is raised from inside the real writers instead.
Every time the previous checkpoint or cache must stay intact and loadable, the error must say what
failed and where, and the run must resume once the disk has room again.
"""

from __future__ import annotations

import contextlib
import errno
import resource
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import load_file

from mtl_hf.data import CacheWriteError, DataConfig, build_cache
from mtl_hf.options import from_dict
from mtl_hf.security import check_training_checkpoint
from mtl_hf.train import train
from mtl_hf.training.checkpointing import checkpoint_dir, latest_checkpoint, list_checkpoints
from mtl_hf.training.config import RunConfig
from mtl_hf.training.faults import CheckpointWriteError
from mtl_hf.training.metrics_log import read_metrics
from mtl_hf.training.state import TrainerState
from tests.conftest import TwoProcessRuns
from tests.data.files import write_csv, write_png
from tests.training.synthetic import base_config, make_data


@contextlib.contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Files of this process may not grow past ``limit`` bytes: writes beyond fail with ``EFBIG``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an error, not a killed process
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous_handler)


def run_config(out: Path) -> RunConfig:
    return from_dict(RunConfig, base_config(str(out), epochs=1, strategy="stl", save_every_steps=1))


def fail_second_save(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """Make the second checkpoint save fail part-way, in ``model.safetensors``, in ``optimizer.bin`` or
    in ``trainer_state.json``."""
    original = Accelerator.save_state
    calls = {"n": 0}

    def save_state(self: Accelerator, output_dir: str, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] != 2:
            return original(self, output_dir, **kwargs)
        first = list_checkpoints(Path(output_dir).parents[1])[0]
        model_size = (first / "model.safetensors").stat().st_size
        optimizer_size = (first / "optimizer.bin").stat().st_size
        if how == "model":
            limit = model_size // 2
        elif how == "optimizer":
            assert optimizer_size > model_size
            limit = (model_size + optimizer_size) // 2
        else:
            return original(self, output_dir, **kwargs)
        with file_size_limit(limit):
            return original(self, output_dir, **kwargs)

    monkeypatch.setattr(Accelerator, "save_state", save_state)
    if how == "trainer_state":
        state_save = TrainerState.save

        def save(self: TrainerState, path: Path) -> None:
            if calls["n"] == 2:
                path.write_text(self.to_json()[:10])
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
            state_save(self, path)

        monkeypatch.setattr(TrainerState, "save", save)


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("model", "File too large"),
        ("optimizer", "unexpected pos"),
        ("trainer_state", "No space left on device"),
    ],
)
def test_failed_checkpoint_write_keeps_the_previous_one_and_says_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, figures: Counter[str], how: str, reason: str
) -> None:
    torch.set_num_threads(1)
    out = tmp_path / "run"
    config = run_config(out)
    fail_second_save(monkeypatch, how)
    with pytest.raises(CheckpointWriteError) as info:
        train(config, make_data())
    message = str(info.value)
    first, second = checkpoint_dir(out, 1), checkpoint_dir(out, 2)
    assert f"writing {second} failed" in message and reason in message
    assert f"{first} is intact" in message and "MiB are free" in message
    if how != "model":
        assert "model.safetensors (" in message  # what had been written before the failure
    assert list_checkpoints(out) == [first]
    assert not any(p.name.startswith(".tmp-") for p in (out / "checkpoints").iterdir())
    check_training_checkpoint(first)
    assert load_file(first / "model.safetensors")
    assert not (out / ".lock").exists()

    if how == "trainer_state":  # a full disk also cuts the metrics line being appended
        with (out / "metrics.jsonl").open("a") as log:
            log.write('{"step": 3, "epoch": 0, "split": "tr')
    monkeypatch.undo()  # the disk has room again
    result = train(config, make_data(), resume=True)
    assert result.state.finished and latest_checkpoint(out) == checkpoint_dir(out, 3)
    steps = [r["step"] for r in read_metrics(out / "metrics.jsonl") if r["split"] == "train"]
    assert steps == [1, 2, 3]
    figures["checkpoint writes failed part-way, previous kept and resumed"] += 1


def image_set(root: Path, count: int) -> DataConfig:
    rng = np.random.default_rng(count)
    rows = []
    for i in range(count):
        path = write_png(root / f"img{i:03d}.png", rng.integers(0, 255, (32, 32), dtype=np.uint8))
        rows.append({"path": path.name, "patient_id": f"p{i // 2}", "label": i % 2})
    write_csv(root / "manifest.csv", rows)
    targets = {"label": {"kind": "binary", "columns": ["label"]}}
    return from_dict(
        DataConfig,
        {"kind": "images", "root": str(root), "images": {"manifest": "manifest.csv", "targets": targets}},
    )


@contextlib.contextmanager
def arrow_writes_fail_with_enospc(after_batches: int) -> Iterator[None]:
    """The Arrow writer of ``datasets`` raises ``ENOSPC`` after ``after_batches`` batches were written."""
    import datasets.arrow_writer as arrow_writer

    original = arrow_writer.ArrowWriter.write_examples_on_file
    calls = {"n": 0}

    def write(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] > after_batches:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, *args, **kwargs)

    arrow_writer.ArrowWriter.write_examples_on_file = write
    try:
        yield
    finally:
        arrow_writer.ArrowWriter.write_examples_on_file = original


@pytest.mark.parametrize("how", ["file size limit", "ENOSPC"])
def test_failed_cache_build_leaves_earlier_caches_intact_and_says_where(
    tmp_path: Path, figures: Counter[str], how: str
) -> None:
    cache = tmp_path / "cache"
    first = image_set(tmp_path / "first", 20)
    built, _ = build_cache(first, cache)
    rows = built.to_dict()
    second = image_set(tmp_path / "second", 300)  # another source: a new fingerprint, a bigger cache

    fault = file_size_limit(64 * 1024) if how == "file size limit" else arrow_writes_fail_with_enospc(1)
    with fault, pytest.raises(CacheWriteError) as info:
        build_cache(second, cache, num_proc=None)
    message = str(info.value)
    assert str(cache) in message and "writing the data cache failed" in message
    assert ("File too large" if how == "file size limit" else "No space left on device") in message
    assert info.value.errno == (errno.EFBIG if how == "file size limit" else errno.ENOSPC)
    assert not list(cache.rglob("*.incomplete")), "a half-written cache was left behind"

    again, summary = build_cache(first, cache)  # the earlier cache: found, whole, unchanged
    assert summary.cache_hit and again.to_dict() == rows
    retried, summary = build_cache(second, cache)  # room again: the failed build completes
    assert not summary.cache_hit and len(retried) == 300
    figures["cache builds failed part-way, earlier cache kept"] += 1


@pytest.mark.two_processes("write_failure")  # tests/reliability/ddp_write_failure.py
def test_a_write_failing_on_one_process_stops_every_process(two_process_runs: TwoProcessRuns) -> None:
    """Rank 1 cannot write its part of the second checkpoint: both ranks stop (no hang), each with an
    error saying where, and the first checkpoint stays complete."""
    out = two_process_runs.out / "write_failure"
    assert two_process_runs.failed("write_failure") == [True, True]
    rank0, rank1 = two_process_runs.logs("write_failure")
    assert "No space left on device" in rank1  # rank 1's own error
    assert "failed on another process (its error says why)" in rank0  # rank 0 stopped too
    assert list_checkpoints(out) == [checkpoint_dir(out, 1)]
    check_training_checkpoint(list_checkpoints(out)[0])
