"""The synthetic training run of :mod:`tests.training.synthetic`, which can kill itself mid-checkpoint.

``python -m tests.reliability.chaos_run CONFIG.yaml [--resume]`` trains like
``python -m tests.training.synthetic``. With ``MTL_HF_KILLPOINT=<point>:<n>`` in the environment the
process sends itself ``SIGKILL`` the ``n``-th time it reaches ``<point>``, leaving on disk exactly what
a kill at that instant leaves:

* ``model_file``: half of ``model.safetensors`` written into a checkpoint's temporary folder;
* ``optimizer_file``: half of ``optimizer.bin`` written (after the model);
* ``trainer_state``: every accelerate file written, ``trainer_state.json`` not yet;
* ``commit``: just before a rename that puts a checkpoint in place (or moves the one it replaces away);
* ``prune``: half of the files of a checkpoint being pruned deleted;
* ``best_model``: half of ``best_model``'s weights written;
* ``step`` (not among :data:`POINTS`, which the kill chains draw from): the ``n``-th training step of
  this process logged to ``metrics.jsonl`` (its checkpoint, when one is due at that step, not yet
  written). A kill at a chosen step, whatever the machine's speed.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

POINTS = ("model_file", "optimizer_file", "trainer_state", "commit", "prune", "best_model")
STEP = "step"

_reached: Counter[str] = Counter()


def _die() -> None:
    print("chaos_run: killing myself at the kill point", flush=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _reach(point: str, target: tuple[str, int] | None) -> bool:
    """Count a visit of ``point``; true when this is the visit to die at."""
    _reached[point] += 1
    return target is not None and target[0] == point and _reached[point] == target[1]


def _truncate_half(path: str | os.PathLike[str]) -> None:
    size = os.path.getsize(path)
    with open(path, "r+b") as handle:
        handle.truncate(size // 2)
        handle.flush()
        os.fsync(handle.fileno())


def install(target: tuple[str, int] | None) -> None:
    """Wrap the functions a checkpoint save goes through so that they count (and may kill) their visits."""
    import accelerate.utils.other as accelerate_other
    import torch
    import transformers.modeling_utils as modeling_utils

    import mtl_hf.training.checkpointing as checkpointing
    import mtl_hf.training.metrics_log as metrics_log
    import mtl_hf.training.state as state_module

    accelerate_safe_save = accelerate_other.safe_save_file
    transformers_safe_save = modeling_utils.safe_save_file
    torch_save = torch.save
    state_save = state_module.TrainerState.save
    replace = os.replace
    rmtree = shutil.rmtree
    log_write = metrics_log.MetricsLog.write

    def accelerate_save_file(tensors: Any, filename: Any, *args: Any, **kwargs: Any) -> Any:
        result = accelerate_safe_save(tensors, filename, *args, **kwargs)
        if _reach("model_file", target):
            _truncate_half(filename)
            _die()
        return result

    def transformers_save_file(tensors: Any, filename: Any, *args: Any, **kwargs: Any) -> Any:
        result = transformers_safe_save(tensors, filename, *args, **kwargs)
        if _reach("best_model", target):
            _truncate_half(filename)
            _die()
        return result

    def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> Any:
        result = torch_save(obj, f, *args, **kwargs)
        optimizer = isinstance(f, (str, os.PathLike)) and Path(f).name == "optimizer.bin"
        if optimizer and _reach("optimizer_file", target):
            _truncate_half(f)
            _die()
        return result

    def save_state(self: Any, path: Path) -> None:
        if path.parent.name.startswith(".tmp-") and _reach("trainer_state", target):
            _die()
        state_save(self, path)

    def checked_replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        names = (Path(src).name, Path(dst).name)
        if any(n.startswith("checkpoint-") for n in names) and _reach("commit", target):
            _die()
        replace(src, dst, *args, **kwargs)

    def checked_rmtree(path: Any, *args: Any, **kwargs: Any) -> None:
        folder = Path(path)
        old = "checkpoint-" in folder.name and folder.is_dir() and not folder.name.startswith(".tmp-")
        if old and _reach("prune", target):
            files = sorted(p for p in folder.iterdir() if p.is_file())
            for file in files[: max(1, len(files) // 2)]:
                file.unlink()
            _die()
        rmtree(path, *args, **kwargs)

    def logged(self: Any, row: Any) -> None:
        log_write(self, row)
        if row.get("split") == "train" and _reach(STEP, target):
            _die()

    accelerate_other.safe_save_file = accelerate_save_file
    modeling_utils.safe_save_file = transformers_save_file
    torch.save = save
    state_module.TrainerState.save = save_state  # type: ignore[method-assign]
    os.replace = checked_replace
    checkpointing.shutil.rmtree = checked_rmtree  # the module's shutil is the global one
    metrics_log.MetricsLog.write = logged  # type: ignore[method-assign]


def parse_killpoint(text: str | None) -> tuple[str, int] | None:
    if not text:
        return None
    point, _, count = text.partition(":")
    if point not in (*POINTS, STEP):
        raise SystemExit(f"MTL_HF_KILLPOINT: unknown point {point!r}; known: {', '.join(POINTS)}, {STEP}")
    return point, int(count or 1)


def main(argv: list[str]) -> int:
    """Train as ``tests.training.synthetic`` does; an error of ours is reported as ``mtl-hf train``
    reports it (one line, exit status 1, or 2 for a usage error)."""
    from mtl_hf.cli import run_command
    from tests.training.synthetic import main as synthetic_main

    install(parse_killpoint(os.environ.get("MTL_HF_KILLPOINT")))
    return run_command("train", synthetic_main, argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
