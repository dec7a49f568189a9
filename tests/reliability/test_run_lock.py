"""One output folder, one run: real processes racing for the lock, and the lock of a killed run."""

from __future__ import annotations

import json
import multiprocessing
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from mtl_hf.training.checkpointing import RunFolderError, RunLock
from tests.training.synthetic import base_config

from .launchers import Launcher, alive, kill, output


def _contend(folder: str, start: Any, done: Any, results: Any) -> None:
    lock = RunLock(folder)
    start.wait()
    try:
        lock.acquire()
        results.put("won")
    except RunFolderError:
        results.put("refused")
    done.wait()  # hold the lock until every contender has tried
    lock.release()


def test_processes_starting_at_the_same_instant_get_one_lock(tmp_path: Path, figures: Counter[str]) -> None:
    context = multiprocessing.get_context("fork")
    contenders, rounds = 6, 15
    for round_ in range(rounds):
        folder = tmp_path / f"run{round_}"
        start, done, results = context.Barrier(contenders), context.Barrier(contenders), context.Queue()
        procs = [
            context.Process(target=_contend, args=(str(folder), start, done, results))
            for _ in range(contenders)
        ]
        for proc in procs:
            proc.start()
        outcome = Counter(results.get(timeout=60) for _ in procs)
        for proc in procs:
            proc.join(timeout=60)
            assert proc.exitcode == 0
        assert outcome == {"won": 1, "refused": contenders - 1}, f"round {round_}: {outcome}"
        assert not (folder / ".lock").exists()
    figures["lock races (6 processes at once) with exactly one winner"] += rounds


def test_second_training_run_on_a_folder_is_refused_and_a_killed_runs_lock_is_taken_over(
    fork_launcher: Launcher, tmp_path: Path, figures: Counter[str]
) -> None:
    out = tmp_path / "run"
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(base_config(str(out), epochs=50, strategy="stl")))
    first = fork_launcher.start("tests.reliability.chaos_run", [str(config)], tmp_path / "first.log")
    deadline = time.monotonic() + 120
    while alive(first) and _lock_pid(out) != first.pid and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _lock_pid(out) == first.pid, output(first)[-3000:]

    second = fork_launcher.start("tests.reliability.chaos_run", [str(config)], tmp_path / "second.log")
    assert fork_launcher.finish(second, 120) == 1
    message = output(second)
    assert f"{out} is in use by another run (host {socket.gethostname()}, pid {first.pid})" in message
    assert "Traceback" not in message
    assert alive(first) and _lock_pid(out) == first.pid  # the refused run touched nothing

    kill(first)
    assert fork_launcher.finish(first, 60) < 0
    assert _lock_pid(out) == first.pid  # a killed run cannot clean up
    lock = RunLock(out).acquire()
    try:
        assert lock.stale_owner == {"host": socket.gethostname(), "pid": first.pid}
    finally:
        lock.release()
    figures["second runs refused by the lock"] += 1
    figures["stale locks of killed runs taken over"] += 1


def _lock_pid(out: Path) -> int | None:
    try:
        return json.loads((out / ".lock").read_text()).get("pid")
    except (OSError, ValueError):
        return None
