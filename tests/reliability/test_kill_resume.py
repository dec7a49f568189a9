"""SIGKILL a training run again and again, at random moments and inside checkpoint writes.

After every kill the newest complete checkpoint must load, every folder named ``checkpoint-*`` must be
complete, and the next ``--resume`` must take over the dead run's lock. Once the run is let finish,
its train losses, final checkpoint weights (bit for bit) and test metrics must equal those of a run
that was never interrupted.

CI runs a short chain (3 kills); ``-m slow`` runs 20.
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from mtl_hf.security import check_training_checkpoint
from mtl_hf.training.checkpointing import PREFIX, latest_checkpoint, list_checkpoints
from mtl_hf.training.metrics_log import read_metrics
from tests.training.synthetic import base_config

from .chaos_run import POINTS
from .launchers import FreshLauncher, Launcher, Run, alive, kill, output

RUN_TIMEOUT = 240
WINDOW = 6
"""Steps a randomly timed kill may let a resumed run progress (three checkpoints at most)."""
STEPS_PER_EPOCH = 3  # 24 synthetic training images, batches of 8
REPEATABLE = ("model_file", "optimizer_file", "trainer_state", "commit")
"""Kill points reached at every save; the others (best model, pruning) are killed at their first visit."""


@dataclass
class ChainResult:
    kills: list[str] = field(default_factory=list)
    launches: int = 0
    takeovers: int = 0
    ended_by_kill: bool = False
    """The last kill hit a run that had finished its work (while it exited): nothing to resume."""


def write_config(path: Path, output_dir: Path, epochs: int) -> Path:
    cfg = base_config(str(output_dir), epochs=epochs, save_every_steps=2, keep_checkpoints=2)
    path.write_text(yaml.safe_dump(cfg))
    return path


def finished(out: Path) -> bool:
    try:
        return bool(json.loads((out / "trainer_state.json").read_text()).get("finished"))
    except (OSError, ValueError):
        return False


def launch(launcher: Launcher, config: Path, out: Path, log: Path, killpoint: str | None = None) -> Run:
    args = ["--resume"] if latest_checkpoint(out) is not None else []
    if not args and out.exists():
        args = ["--overwrite"]  # killed before its first checkpoint: start again
    env = {"MTL_HF_KILLPOINT": killpoint} if killpoint else {}
    return launcher.start("tests.reliability.chaos_run", [str(config), *args], log, env)


def lock_owner(out: Path) -> int | None:
    try:
        return json.loads((out / ".lock").read_text()).get("pid")
    except (OSError, ValueError):
        return None


def last_logged_step(out: Path) -> int:
    try:
        lines = (out / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return 0
    steps = [json.loads(line).get("step", 0) for line in lines if line.endswith("}")]
    return max(steps, default=0)


def kill_at_random_step(
    run: Run, out: Path, rng: random.Random, start: int, total_steps: int, late: bool = False
) -> None:
    """SIGKILL ``run`` at a random moment of its training: once it has logged a step drawn at random
    among the next few after ``start`` (its checkpoint), plus a random fraction of a step; or during
    the final evaluation when no step is left. ``late``: a few steps further (a backstop for a kill
    point the run may never reach, such as a new best model).

    Progress, not wall time, decides, so the kill lands inside the run however fast the machine is,
    and each run progresses a little, so that many kills fit in one training.
    """
    window = max(1, min(WINDOW, total_steps - start - 1))
    target = start + (window if late else rng.randint(1, window))
    deadline = time.monotonic() + RUN_TIMEOUT
    resumed = start > 0
    while alive(run) and time.monotonic() < deadline:
        started = lock_owner(out) == run.pid and (not resumed or "Resumed from" in output(run))
        if started and (start >= total_steps or last_logged_step(out) >= target):
            break  # (all steps done: the kill lands in the final evaluation)
        time.sleep(0.005)
    time.sleep(rng.uniform(0.0, 0.3 if start >= total_steps else 0.05))
    if alive(run):
        kill(run)


def assert_checkpoints_sound(out: Path) -> None:
    """Every ``checkpoint-*`` folder is complete and the newest one loads."""
    root = out / "checkpoints"
    named = sorted(p for p in root.iterdir() if p.name.startswith(PREFIX)) if root.is_dir() else []
    assert [p.name for p in named] == [p.name for p in list_checkpoints(out)], (
        "an incomplete checkpoint-* folder"
    )
    for folder in named:
        names = {p.name for p in folder.iterdir()}
        assert {"model.safetensors", "optimizer.bin", "random_states_0.pkl", "trainer_state.json"} <= names
    newest = latest_checkpoint(out)
    if newest is None:
        return
    check_training_checkpoint(newest)
    weights = load_file(newest / "model.safetensors")
    assert weights and all(torch.isfinite(t).all() for t in weights.values())
    optimizer = torch.load(newest / "optimizer.bin", weights_only=True)
    assert optimizer["state"], "optimizer state is empty"
    state = json.loads((newest / "trainer_state.json").read_text())
    assert state["global_step"] == int(newest.name[len(PREFIX) :])


def run_chain(
    launcher: Launcher, config: Path, out: Path, kills: int, seed: int, total_steps: int
) -> ChainResult:
    """Launch, kill, resume... ``kills`` times, then let the run finish.

    The first kill lands at a random moment of the first run; each later one, drawn with ``seed``, at a
    random moment (while at least half the run remains, so that it lands before the end) or at a
    kill point of the checkpoint writes (see :mod:`tests.reliability.chaos_run`), every point in turn
    in a shuffled order before any is repeated.
    """
    rng = random.Random(seed)
    result = ChainResult()
    after_kill = False
    points: list[str] = []
    while not finished(out):
        assert result.launches < kills + 20, "the run does not make progress"
        killpoint, timed = None, False
        newest = latest_checkpoint(out)
        step = int(newest.name[len(PREFIX) :]) if newest is not None else 0
        if len(result.kills) < kills:
            timed = not result.kills or rng.random() < 0.3
            if not timed:
                points = points or rng.sample(POINTS, len(POINTS))
                point = points.pop()
                killpoint = f"{point}:{rng.randint(1, 2) if point in REPEATABLE else 1}"
        log = config.parent / f"launch-{result.launches}.log"
        run = launch(launcher, config, out, log, killpoint)
        result.launches += 1
        if timed or killpoint is not None:  # a kill point may never be reached (no new best model...)
            kill_at_random_step(run, out, rng, step, total_steps, late=killpoint is not None)
        returncode = launcher.finish(run, RUN_TIMEOUT)
        text = output(run)
        if killpoint is not None and "chaos_run: killing myself" not in text:
            killpoint = None  # the timed kill came first
        moment = "final evaluation" if step >= total_steps else "random step"
        if after_kill:
            assert "Taking over the stale lock of a run that is gone" in text, text[-4000:]
            result.takeovers += 1
        after_kill = returncode == -signal.SIGKILL
        if after_kill:
            result.kills.append(killpoint or moment)
            assert_checkpoints_sound(out)
            # a killed run leaves its lock behind (unless it was killed while exiting, its work done)
            assert (out / ".lock").exists() or finished(out)
            result.ended_by_kill = finished(out)
            continue
        assert returncode == 0, text[-4000:]
    return result


def train_losses(out: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_metrics(out / "metrics.jsonl") if r["split"] == "train"]


def assert_same_run(a: Path, b: Path) -> None:
    assert train_losses(a) == train_losses(b)
    last_a, last_b = list_checkpoints(a)[-1], list_checkpoints(b)[-1]
    assert last_a.name == last_b.name
    wa, wb = load_file(last_a / "model.safetensors"), load_file(last_b / "model.safetensors")
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    for name in ("test_metrics.json",):
        assert json.loads((a / name).read_text()) == json.loads((b / name).read_text())
    best_a = load_file(a / "best_model" / "model.safetensors")
    best_b = load_file(b / "best_model" / "model.safetensors")
    assert all(torch.equal(best_a[k], best_b[k]) for k in best_a)


def check_chain(
    launcher: Launcher, tmp_path: Path, figures: Counter[str], kills: int, seed: int, epochs: int
) -> ChainResult:
    reference = tmp_path / "uninterrupted"
    log = tmp_path / "uninterrupted.log"
    config = write_config(tmp_path / "uninterrupted.yaml", reference, epochs)
    uninterrupted = launcher.start("tests.training.synthetic", [str(config)], log)
    out = tmp_path / "killed"
    config = write_config(tmp_path / "killed.yaml", out, epochs)
    result = run_chain(launcher, config, out, kills, seed, total_steps=epochs * STEPS_PER_EPOCH)
    assert launcher.finish(uninterrupted, RUN_TIMEOUT) == 0, output(uninterrupted)[-4000:]
    assert_same_run(out, reference)
    assert result.ended_by_kill or not (out / ".lock").exists()
    # every relaunch after a kill took over the dead run's lock
    assert result.takeovers == len(result.kills) - int(result.ended_by_kill)
    figures["kills survived (SIGKILL, resumed to bit-identical weights)"] += len(result.kills)
    for where in result.kills:
        figures[f"kills survived at {where.split(':')[0]}"] += 1
    return result


def test_three_kills_resume_to_the_uninterrupted_weights(
    fork_launcher: Launcher, tmp_path: Path, figures: Counter[str]
) -> None:
    result = check_chain(fork_launcher, tmp_path, figures, kills=3, seed=0, epochs=4)
    assert len(result.kills) == 3


@pytest.mark.slow
def test_twenty_kills_resume_to_the_uninterrupted_weights(tmp_path: Path, figures: Counter[str]) -> None:
    """In fresh interpreters: nothing is shared between the runs but the files."""
    result = check_chain(FreshLauncher(), tmp_path, figures, kills=20, seed=1, epochs=20)
    assert len(result.kills) == 20
