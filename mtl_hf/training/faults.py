"""What the training loop does when the machine or the data fails under it.

Two kinds of fault, each turned into a clear error or a counted, logged event:

**A checkpoint that cannot be written** (full disk, quota, a failing network file system).
``safetensors`` and ``torch.save`` report such failures without naming the file (``I/O error: File
too large``, ``unexpected pos 704 vs 598``). :func:`checkpoint_write_guard` wraps the write of one
checkpoint: on failure it removes the half-written temporary folder and raises
:class:`CheckpointWriteError` naming the checkpoint, the files written so far, the free space left
and the previous checkpoint, which the atomic rename (:mod:`mtl_hf.training.checkpointing`) has kept
intact.

**Training data that fails while an epoch runs**: a sample that cannot be decoded (a corrupt image in
the cache or in a lazily read data set), or a data-loader worker that dies (killed by the
out-of-memory killer, a crash in a decoding library). ``training.on_data_error`` decides:

* ``"stop"`` (default): the run stops at once with a checkpoint of the last completed step and an
  error naming the sample, so nothing is trained on a substitute and ``--resume`` continues exactly
  once the data is fixed;
* ``"skip"``: the sample is left out of its batch (never replaced by another), and the event is
  counted (``trainer_state.json``: ``skipped_samples``), printed and appended to
  ``data_errors.jsonl``; more than ``training.max_skipped_samples`` skips stop the run as above.

A dead worker always stops the run: it says nothing about the data, and the processes of a
distributed run must stop together. In a distributed run the processes exchange, for every batch,
whether they hit a fault and which samples they skipped, so each one takes the same decision and
keeps the same count of the whole run's skips; the main process logs them all.

The pieces: :class:`GuardedDataset` turns a :class:`~mtl_hf.data.DataError` raised by a sample into a
:class:`SkippedSample` marker (in the worker, where the error happens), :class:`GuardedCollate` takes
the markers out of the batch, and :class:`DataFaultMonitor` iterates the loader for the training loop,
applying the policy on every process alike.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from torch.utils.data import Dataset

from ..atomic import open_append, write_text
from ..errors import MtlHfError
from ..run_folder import RunFolder

OnDataError = Literal["stop", "skip"]

SKIPPED_KEY = "skipped_samples"
"""Batch key under which :class:`GuardedCollate` passes the samples it left out."""

DATA_ERRORS_FILE = RunFolder.DATA_ERRORS

_WORKER_DIED = ("is killed by signal", "exited unexpectedly")


# -- checkpoints ------------------------------------------------------------------------------------
class CheckpointWriteError(MtlHfError, RuntimeError):
    """Writing a checkpoint failed; the message names it, what was written and what is kept."""


@contextlib.contextmanager
def checkpoint_write_guard(
    final: Path, tmp: Path | None, previous: Path | None, *, remove_tmp: bool = True
) -> Iterator[None]:
    """Turn any failure while writing a folder into a :class:`CheckpointWriteError` that says where.

    Args:
        final: The folder being written (a checkpoint, ``best_model``).
        tmp: The temporary folder it is written into before the rename, if the caller manages it: its
            files are listed in the message, then it is removed so a full disk is not made fuller.
        previous: The complete folder that stays usable (the newest checkpoint, or the old
            ``best_model``), named in the message; ``None`` if there is none.
        remove_tmp: ``False`` when other processes may still be writing into ``tmp`` (a distributed
            checkpoint): the caller removes it once every process is done.
    """
    try:
        yield
    except Exception as exc:
        written = _describe_files(tmp) if tmp is not None else None
        if tmp is not None and remove_tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointWriteError(_checkpoint_message(final, tmp, previous, written, exc)) from exc


def _describe_files(folder: Path) -> str:
    if not folder.is_dir():
        return "none"
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return ", ".join(f"{p.relative_to(folder)} ({p.stat().st_size:,} bytes)" for p in files) or "none"


def _checkpoint_message(
    final: Path, tmp: Path | None, previous: Path | None, written: str | None, exc: Exception
) -> str:
    reason = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, OSError) and exc.filename:
        reason += f" (file {exc.filename})"
    try:
        free = shutil.disk_usage(final.parent).free
        space = f"{free / 2**20:,.1f} MiB are free on that file system"
    except OSError:
        space = "The free space on that file system is unknown"
    progress = f" Files written into {tmp} before the failure: {written}." if tmp is not None else ""
    kept = (
        f"{previous} is intact: fix the cause and continue with --resume."
        if previous is not None
        else "No earlier complete copy exists."
    )
    return f"writing {final} failed ({reason}).{progress} {space}; the incomplete folder was removed. {kept}"


# -- data faults --------------------------------------------------------------------------------------
class DataFaultError(MtlHfError, RuntimeError):
    """Training data failed while the run went on (see the module docstring); the run must stop."""


@dataclass(frozen=True)
class SkippedSample:
    """A sample that could not be loaded: its index in the data set and the error's message."""

    index: int
    error: str


class GuardedDataset(Dataset):
    """Wrap a map-style data set so a sample raising :class:`~mtl_hf.data.DataError` yields a
    :class:`SkippedSample` instead of breaking the loader (the policy is applied in the main process).

    Any other exception propagates: only errors that the data layer identifies as bad input are
    data faults; anything else is a bug to see. ``set_epoch`` is forwarded (Accelerate calls it).
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        from ..data.errors import DataError

        try:
            return self.dataset[index]
        except DataError as exc:
            return SkippedSample(index=int(index), error=str(exc))

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        """A batch in one call of the data set's own ``__getitems__`` when it has one; when that fails
        on bad input, sample by sample, so that only the bad samples are skipped."""
        from ..data.errors import DataError

        fetch = getattr(self.dataset, "__getitems__", None)
        if fetch is not None:
            try:
                return list(fetch(list(indices)))
            except DataError:
                pass
        return [self[index] for index in indices]


class GuardedCollate:
    """Collate the good samples of a batch with ``collate_fn``; list the skipped ones under
    :data:`SKIPPED_KEY`. A batch with no good sample becomes ``{SKIPPED_KEY: [...]}`` alone."""

    def __init__(self, collate_fn: Callable[[list[Any]], dict[str, Any]]) -> None:
        self.collate_fn = collate_fn

    def __call__(self, samples: list[Any]) -> dict[str, Any]:
        good = [s for s in samples if not isinstance(s, SkippedSample)]
        skipped = [dataclasses.asdict(s) for s in samples if isinstance(s, SkippedSample)]
        batch = self.collate_fn(good) if good else {}
        if skipped:
            batch[SKIPPED_KEY] = skipped
        return batch


def guard_training_data(data: Any) -> Any:
    """A copy of a :class:`~mtl_hf.training.inputs.TrainingData` whose training split and collate
    function are guarded (validation and test stay as they are: a bad sample there fails the run)."""
    return dataclasses.replace(
        data, train=GuardedDataset(data.train), collate_fn=GuardedCollate(data.collate_fn)
    )


def worker_death(exc: BaseException) -> str | None:
    """The message of a data-loader worker's death (``RuntimeError`` from PyTorch), else ``None``."""
    text = str(exc)
    if isinstance(exc, RuntimeError) and "DataLoader worker" in text and any(k in text for k in _WORKER_DIED):
        return text.strip().splitlines()[0]
    return None


# Codes exchanged between processes for each batch (the maximum over processes wins).
_OK, _EMPTY, _FAULT = 0, 1, 2

BatchAgreement = Callable[[int, list[dict[str, Any]]], tuple[int, list[dict[str, Any]]]]
"""``(this process's code, its skipped samples) -> (maximum code, skipped samples of every process)``."""


class DataFaultMonitor:
    """Iterate a training loader, applying ``training.on_data_error`` (see the module docstring).

    Args:
        policy: ``"stop"`` or ``"skip"``.
        max_skipped: With ``"skip"``: stop once more samples than this were skipped in the run.
        log_path: ``data_errors.jsonl`` to append skip events to (``None`` on non-main processes).
        echo: Prints a line per event (``accelerator.print``).
        sync: In distributed runs, ``sync(code, skipped) -> (max code, every process's skipped
            samples)`` over all processes (:data:`BatchAgreement`), so that every process skips or
            stops on the same batch and counts, logs and limits the skips of the whole run; ``None``
            in a single process.
    """

    def __init__(
        self,
        policy: OnDataError,
        max_skipped: int,
        log_path: Path | None = None,
        echo: Callable[[str], None] = print,
        sync: BatchAgreement | None = None,
    ) -> None:
        if policy not in ("stop", "skip"):
            raise ValueError(f"on_data_error must be 'stop' or 'skip', got {policy!r}")
        self.policy = policy
        self.max_skipped = max_skipped
        self.log_path = log_path
        self.echo = echo
        self.sync = sync

    def truncate_log_after(self, step: int) -> None:
        """On resume: drop events logged after the checkpoint's step (they will happen again)."""
        if self.log_path is None or not self.log_path.is_file():
            return
        kept = [row for row in _read_rows(self.log_path) if row.get("step", 0) <= step]
        write_text(self.log_path, "".join(json.dumps(row) + "\n" for row in kept))

    def batches(
        self,
        loader: Iterable[dict[str, Any]],
        state: Any,
        epoch: int,
        checkpoint: Callable[[], Path | None] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """The batches of ``loader`` that hold at least one good sample.

        Args:
            loader: The training loader (of a :func:`guard_training_data` data set).
            state: The :class:`~mtl_hf.training.state.TrainerState`: ``skipped_samples`` counts skips
                and ``batches_in_epoch`` counts a batch left out entirely (a resumed run skips it too).
            epoch: For the log.
            checkpoint: Called before stopping; saves a checkpoint of the last completed step and
                returns it (or the newest one kept), named in the error.

        Raises:
            DataFaultError: a sample failed under ``"stop"``, too many were skipped, or a worker died.
        """
        iterator = iter(loader)
        while True:
            fault: str | None = None
            batch: dict[str, Any] = {}
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except RuntimeError as exc:
                fault = worker_death(exc)
                if fault is None:
                    raise
                fault = (
                    f"a data-loader worker died ({fault}); this is often the out-of-memory killer: lower "
                    "training.num_workers or the batch size"
                )
            local = batch.pop(SKIPPED_KEY, []) if fault is None else []
            code = _FAULT if fault is not None else (_EMPTY if not batch else _OK)
            # Every process sees every process's skips: the same decision, the same counts everywhere.
            agreed, skipped = self.sync(code, local) if self.sync is not None else (code, local)
            if agreed != _FAULT and skipped and self.policy == "stop":
                first = skipped[0]
                fault = (
                    f"training sample {first['index']} cannot be used: {first['error']} "
                    "(training.on_data_error is 'stop'; set it to 'skip' to leave such samples out)"
                )
            elif agreed != _FAULT and skipped:
                total = state.skipped_samples + len(skipped)
                if total > self.max_skipped:
                    fault = (
                        f"{total} training samples unreadable, more than training.max_skipped_samples="
                        f"{self.max_skipped} (the last: sample {skipped[-1]['index']}: {skipped[-1]['error']}); "
                        f"see {DATA_ERRORS_FILE}"
                    )
                else:
                    self._record(skipped, state, epoch)
            if agreed == _FAULT or fault is not None:
                saved = checkpoint() if checkpoint is not None else None
                where = f"checkpoint {saved} holds" if saved is not None else "no checkpoint holds"
                raise DataFaultError(
                    f"{fault or 'another process of this run hit a data fault'}. Stopped at step "
                    f"{state.global_step}; {where} the last completed step: fix the data and continue "
                    "with --resume."
                )
            if agreed == _EMPTY:
                # Nothing to learn from (on some process): every process leaves this batch out.
                state.batches_in_epoch += 1
                self.echo(f"step {state.global_step}: a batch with no readable sample was left out")
                continue
            yield batch

    def _record(self, skipped: list[dict[str, Any]], state: Any, epoch: int) -> None:
        state.skipped_samples += len(skipped)
        for item in skipped:
            self.echo(
                f"step {state.global_step}: skipped training sample {item['index']} ({item['error']}); "
                f"{state.skipped_samples} skipped in all"
            )
        if self.log_path is not None:
            with open_append(self.log_path) as handle:
                for item in skipped:
                    row = {"step": state.global_step, "epoch": epoch, **item}
                    handle.write(json.dumps(row) + "\n")


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """The events of a log, without a last line cut short by a run that died while appending it."""
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def at_step_boundary(batches_in_epoch: int, gradient_accumulation_steps: int) -> bool:
    """Whether a checkpoint taken now would resume exactly (no half-accumulated gradient is lost)."""
    return batches_in_epoch % gradient_accumulation_steps == 0
