"""Checkpoints and the best model of a run: written atomically, pruned, agreed on by every process.

A folder (a checkpoint, ``best_model``) is written into a hidden temporary folder next to its final
place and renamed into place only when complete (``os.replace`` of a folder is atomic on POSIX file
systems), so a run killed at any moment, during a save included, leaves the previous copies intact
and never a half-written one under a checkpoint's name. A write that fails (a full disk) becomes a
:class:`~mtl_hf.training.faults.CheckpointWriteError` on every process at once, naming what is kept.

On resume, the newest checkpoint is verified before anything is loaded from it (each file complete,
its pickles safe, its run the folder's run); a damaged one is passed over for the previous intact
one, with a message naming both.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..run_folder import RunFolder, RunFolderError
from ..security import UnsafeCheckpointError, check_training_checkpoint
from .faults import CheckpointWriteError, at_step_boundary, checkpoint_write_guard
from .processes import max_over_processes
from .run_lock import RunLock
from .state import TrainerState

if TYPE_CHECKING:
    from accelerate import Accelerator

    from ..image_processing_mtl import MTLImageProcessor
    from ..modeling_mtl import MTLModel

__all__ = [
    "PREFIX",
    "STATE_FILE",
    "Checkpointer",
    "RunFolderError",
    "RunLock",
    "checkpoint_dir",
    "commit_folder",
    "latest_checkpoint",
    "list_checkpoints",
    "prune_checkpoints",
    "read_state",
    "verify_checkpoint",
    "write_atomically",
]

PREFIX = RunFolder.CHECKPOINT_PREFIX
STATE_FILE = RunFolder.TRAINER_STATE


def checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    return RunFolder(output_dir).checkpoint(step)


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary folders of interrupted saves are ignored)."""
    return RunFolder(output_dir).list_checkpoints()


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    return RunFolder(output_dir).latest_checkpoint()


def read_state(checkpoint: Path) -> dict[str, Any]:
    return RunFolder.read_checkpoint_state(checkpoint)


def write_atomically(final: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_dir)`` then rename ``tmp_dir`` to ``final``; on any error remove ``tmp_dir``."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        write(tmp)
        commit_folder(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def commit_folder(tmp: Path, final: Path) -> None:
    """Flush ``tmp`` to disk and rename it to ``final`` (replacing an older ``final`` atomically enough:
    at every instant either the old or the new folder exists under ``final`` or ``.old-``)."""
    _fsync_tree(tmp)
    if final.exists():
        old = final.parent / f".old-{final.name}-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def prune_checkpoints(output_dir: str | Path, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoints, and leftovers of interrupted saves.

    A checkpoint is first renamed out of the ``checkpoint-*`` namespace, then deleted, so a run killed
    while deleting never leaves a partly deleted folder under a checkpoint name.
    """
    run = RunFolder(output_dir)
    for path in run.list_checkpoints()[:-keep]:
        doomed = path.parent / f".old-{path.name}-{os.getpid()}"
        os.replace(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
    if run.checkpoints.is_dir():
        for path in run.checkpoints.iterdir():
            if path.name.startswith((".tmp-", ".old-")):
                shutil.rmtree(path, ignore_errors=True)


def verify_checkpoint(folder: Path) -> None:
    """Check that every file of a checkpoint is complete, and that its pickles are safe to load.

    Safetensors files must hold every byte their header announces; ``torch.save`` archives (optimizer,
    random states) must pass their zip CRC checks; then :func:`~mtl_hf.security.check_training_checkpoint`.

    Raises:
        UnsafeCheckpointError: naming the file and what is wrong with it.
    """
    check_training_checkpoint(folder)
    for file in sorted(p for p in folder.iterdir() if p.is_file()):
        if file.suffix == ".safetensors":
            _check_safetensors_size(file)
        elif zipfile.is_zipfile(file):
            try:
                with zipfile.ZipFile(file) as archive:
                    bad = archive.testzip()
            except (OSError, zipfile.BadZipFile) as exc:
                raise UnsafeCheckpointError(file, f"incomplete or damaged ({exc})") from exc
            if bad is not None:
                raise UnsafeCheckpointError(file, f"damaged: {bad} fails its CRC check")


def _check_safetensors_size(file: Path) -> None:
    """A safetensors file is 8 bytes of header length, the JSON header, then exactly the tensor data."""
    try:
        with file.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(min(length, 100_000_000)))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    except (OSError, ValueError, struct.error, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise UnsafeCheckpointError(file, f"not a readable safetensors file ({exc})") from exc
    size = file.stat().st_size
    if size != 8 + length + end:
        raise UnsafeCheckpointError(
            file, f"incomplete or damaged: {size:,} bytes where its header announces {8 + length + end:,}"
        )


class Checkpointer:
    """Writes, prunes and verifies the checkpoints and the best model of one run.

    Args:
        run: The run folder.
        accelerator: The run's Accelerator (every process takes part in a checkpoint).
        keep: How many of the newest checkpoints to keep.
        accumulation_steps: Micro-batches per optimizer step: a checkpoint taken on a fault is exact only
            at a step boundary.
    """

    def __init__(
        self, run: RunFolder, accelerator: Accelerator, keep: int, accumulation_steps: int = 1
    ) -> None:
        self.run = run
        self.accelerator = accelerator
        self.keep = keep
        self.accumulation_steps = accumulation_steps
        self._any_process = max_over_processes(accelerator)

    # -- resume ----------------------------------------------------------------------------------------
    def resume(self, source: str | bool, run_id: str | None) -> tuple[Path, TrainerState]:
        """Load the checkpoint to resume from into the prepared objects; return it and its trainer state.

        Args:
            source: ``True`` for the newest intact checkpoint of the run, or a checkpoint folder.
            run_id: The folder's run identity; a checkpoint of another run is refused.

        Raises:
            RunFolderError: no usable checkpoint (each refusal is named).
        """
        if isinstance(source, bool):
            path = self._newest_intact(run_id)
        else:
            path = Path(source)
            self._check(path, run_id)
        self.accelerator.load_state(str(path))
        return path, TrainerState.from_dict(RunFolder.read_checkpoint_state(path))

    def _newest_intact(self, run_id: str | None) -> Path:
        found = self.run.list_checkpoints()
        if not found:
            raise RunFolderError(
                f"{self.run.path}: --resume given but no complete checkpoint in {self.run.checkpoints}"
            )
        refused: list[str] = []
        for path in reversed(found):
            try:
                self._check(path, run_id)
            except UnsafeCheckpointError as exc:
                refused.append(str(exc))
                continue
            if refused:
                self.accelerator.print(
                    f"The newest checkpoint cannot be resumed from ({'; '.join(refused)}); "
                    f"resuming from {path} instead."
                )
            return path
        raise RunFolderError(f"{self.run.path}: no intact checkpoint to resume from: {'; '.join(refused)}")

    def _check(self, path: Path, run_id: str | None) -> None:
        verify_checkpoint(path)
        state = RunFolder.read_checkpoint_state(path)
        theirs = state.get("run_id")
        if run_id is not None and theirs is not None and theirs != run_id:
            raise RunFolderError(
                f"{path} belongs to run {theirs}, not to the run of {self.run.path} ({run_id}); "
                "resuming never crosses runs: pass --overwrite to start afresh"
            )

    # -- writing -----------------------------------------------------------------------------------------
    def save(self, state: TrainerState) -> Path:
        """Checkpoint the current step on every process (each writes its own random states)."""
        accelerator = self.accelerator
        final = self.run.checkpoint(state.global_step)
        if accelerator.is_main_process:
            final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".tmp-{final.name}"
        previous = self.run.latest_checkpoint()
        if accelerator.is_main_process and tmp.exists():
            shutil.rmtree(tmp)  # left by a run killed while saving: start from an empty folder
        accelerator.wait_for_everyone()
        failure = None
        try:  # a full disk: say where, keep the previous
            with checkpoint_write_guard(final, tmp, previous, remove_tmp=False):
                accelerator.save_state(str(tmp), safe_serialization=True)
                if accelerator.is_main_process:
                    state.save(RunFolder.checkpoint_state_file(tmp))
        except CheckpointWriteError as exc:
            failure = exc
        try:
            self._stop_together(failure, final, previous)
        except CheckpointWriteError:
            if accelerator.is_main_process:  # every process is done with the shared folder now
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        if accelerator.is_main_process:
            commit_folder(tmp, final)
            prune_checkpoints(self.run.path, self.keep)
        accelerator.wait_for_everyone()
        return final

    def save_on_fault(self, state: TrainerState) -> Path | None:
        """A resumable checkpoint of the last completed step, if one can be taken here (else the newest)."""
        if not at_step_boundary(state.batches_in_epoch, self.accumulation_steps):
            return self.run.latest_checkpoint()
        return self.save(state)

    def save_best(self, model: MTLModel, processor: MTLImageProcessor, selection: dict[str, Any]) -> bool:
        """Write ``best_model`` (weights, processor, ``selection.json`` with the ``step``); ``False`` if the
        weights are not finite (nothing is written then)."""
        accelerator = self.accelerator
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            accelerator.print(
                f"Not saving step {selection['step']} as best: the model has NaN or inf weights"
            )
            return False
        final = self.run.best_model
        previous = final if final.is_dir() else None
        failure = None
        if accelerator.is_main_process:

            def write(tmp: Path) -> None:
                model.save_pretrained(tmp, safe_serialization=True)
                processor.save_pretrained(tmp)
                RunFolder.write_selection(tmp, selection)

            try:
                with checkpoint_write_guard(final, None, previous):
                    write_atomically(final, write)
            except CheckpointWriteError as exc:
                failure = exc
        self._stop_together(failure, final, previous)
        return True

    def _stop_together(
        self, failure: CheckpointWriteError | None, folder: Path, previous: Path | None
    ) -> None:
        """Every process raises if any failed to write ``folder`` (a process left waiting at the next
        barrier for one that died would hang the whole job); this is also that barrier."""
        if self._any_process(int(failure is not None)) == 0:
            return
        if failure is None:
            kept = f"{previous} is intact." if previous is not None else "No earlier complete copy exists."
            failure = CheckpointWriteError(
                f"writing {folder} failed on another process (its error says why). {kept}"
            )
        if self.accelerator.num_processes > 1:
            # Every process says why before any exits: a launcher stops the others as soon as one exits.
            rank = self.accelerator.process_index
            print(f"process {rank}: error: {failure}", file=sys.stderr, flush=True)
            self.accelerator.wait_for_everyone()
        raise failure
