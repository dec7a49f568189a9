"""The data-fault policy on a real DataLoader (worker processes included), without a training run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from mtl_hf.data import DataError
from mtl_hf.training.faults import (
    DataFaultError,
    DataFaultMonitor,
    GuardedCollate,
    GuardedDataset,
    worker_death,
)
from mtl_hf.training.state import TrainerState


class Numbers(Dataset):
    """Sample ``i`` is the tensor ``[i]``; the ``bad`` ones raise a DataError as a damaged file would."""

    def __init__(self, n: int, bad: set[int]) -> None:
        self.n, self.bad = n, bad

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        if i in self.bad:
            raise DataError(f"file{i}.png", "cannot decode image (broken data stream)")
        return {"x": torch.tensor([i])}


def collate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"x": torch.cat([r["x"] for r in rows])}


def loader(bad: set[int], workers: int = 0, n: int = 12) -> DataLoader:
    return DataLoader(
        GuardedDataset(Numbers(n, bad)), batch_size=4, collate_fn=GuardedCollate(collate), num_workers=workers
    )


def consume(monitor: DataFaultMonitor, data: DataLoader, state: TrainerState) -> list[list[int]]:
    seen = []
    for batch in monitor.batches(data, state, epoch=0):
        seen.append(batch["x"].tolist())
        state.batches_in_epoch += 1  # as the training loop does
    return seen


@pytest.mark.parametrize("workers", [0, 1])
def test_skip_leaves_bad_samples_out_and_logs_them(tmp_path: Path, workers: int) -> None:
    lines: list[str] = []
    monitor = DataFaultMonitor("skip", 10, log_path=tmp_path / "errors.jsonl", echo=lines.append)
    state = TrainerState()
    seen = consume(monitor, loader({1, 6}, workers), state)
    assert seen == [[0, 2, 3], [4, 5, 7], [8, 9, 10, 11]]  # nothing substituted, nothing shifted
    assert state.skipped_samples == 2 and state.batches_in_epoch == 3
    events = [json.loads(line) for line in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert [e["index"] for e in events] == [1, 6]
    assert events[0]["error"] == "file1.png: cannot decode image (broken data stream)"
    assert lines[0].startswith("step 0: skipped training sample 1 (file1.png: cannot decode image")


def test_a_batch_with_no_readable_sample_is_left_out_and_counted_as_consumed() -> None:
    state = TrainerState()
    seen = consume(DataFaultMonitor("skip", 10, echo=lambda _: None), loader({4, 5, 6, 7}), state)
    assert seen == [[0, 1, 2, 3], [8, 9, 10, 11]]
    assert state.batches_in_epoch == 3  # a resumed run skips the empty batch too
    assert state.skipped_samples == 4


def test_stop_names_the_sample_and_saves_before_raising() -> None:
    state = TrainerState()
    saved: list[int] = []

    def checkpoint() -> Path:
        saved.append(state.batches_in_epoch)
        return Path("checkpoint-x")

    monitor = DataFaultMonitor("stop", 10, echo=lambda _: None)
    seen = []
    with pytest.raises(DataFaultError) as info:
        for batch in monitor.batches(loader({9}), state, 0, checkpoint=checkpoint):
            seen.append(batch["x"].tolist())
            state.batches_in_epoch += 1
    assert seen == [[0, 1, 2, 3], [4, 5, 6, 7]] and saved == [2]  # never trained on the bad batch
    assert str(info.value).startswith(
        "training sample 9 cannot be used: file9.png: cannot decode image (broken data stream) "
        "(training.on_data_error is 'stop'"
    )
    assert "checkpoint checkpoint-x holds the last completed step" in str(info.value)


def test_too_many_skips_stop_without_counting_the_batch_twice() -> None:
    state = TrainerState()
    with pytest.raises(
        DataFaultError, match="3 training samples unreadable, more than training.max_skipped_samples=2"
    ):
        consume(DataFaultMonitor("skip", 2, echo=lambda _: None), loader({0, 5, 9}), state)
    assert state.skipped_samples == 2  # the batch that went over the limit is not consumed


def test_every_process_stops_when_another_one_faults() -> None:
    monitor = DataFaultMonitor(
        "skip", 10, echo=lambda _: None, sync=lambda code, skipped: (max(code, 2), skipped)
    )
    with pytest.raises(DataFaultError, match="another process of this run hit a data fault"):
        consume(monitor, loader(set()), TrainerState())


def test_worker_death_messages_are_recognised() -> None:
    killed = RuntimeError("DataLoader worker (pid 4242) is killed by signal: Killed. ")
    exited = RuntimeError("DataLoader worker (pid(s) 17, 18) exited unexpectedly")
    assert worker_death(killed) == "DataLoader worker (pid 4242) is killed by signal: Killed."
    assert worker_death(exited) == "DataLoader worker (pid(s) 17, 18) exited unexpectedly"
    assert worker_death(RuntimeError("CUDA out of memory")) is None
    assert worker_death(ValueError("DataLoader worker (pid 1) is killed by signal")) is None


def test_other_errors_are_not_taken_for_data_faults() -> None:
    class Buggy(Numbers):
        def __getitem__(self, i: int) -> dict[str, Any]:
            raise KeyError("a bug, not bad data")

    data = DataLoader(GuardedDataset(Buggy(4, set())), batch_size=2, collate_fn=GuardedCollate(collate))
    with pytest.raises(KeyError, match="a bug"):
        consume(DataFaultMonitor("skip", 10), data, TrainerState())
