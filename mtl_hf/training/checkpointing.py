"""Run-folder safety: atomic checkpoints, keeping the newest k, and a lock against two runs in one folder.

A checkpoint is written into a hidden temporary folder next to its final place and renamed into
place only when complete (``os.replace`` of a folder is atomic on POSIX file systems), so a run
killed at any moment, during a save included, leaves the previous checkpoints intact and never a
half-written one under a checkpoint name.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import MtlHfError

CHECKPOINTS = "checkpoints"
PREFIX = "checkpoint-"
STATE_FILE = "trainer_state.json"
LOCK_FILE = ".lock"


class RunFolderError(MtlHfError, RuntimeError):
    """The output folder cannot be used as asked (locked, finished, or holds no checkpoint)."""


def checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    return Path(output_dir) / CHECKPOINTS / f"{PREFIX}{step:08d}"


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary folders of interrupted saves are ignored)."""
    root = Path(output_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [
        p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX) and (p / STATE_FILE).is_file()
    ]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    found = list_checkpoints(output_dir)
    return found[-1] if found else None


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
    root = Path(output_dir) / CHECKPOINTS
    for path in list_checkpoints(output_dir)[:-keep]:
        doomed = path.parent / f".old-{path.name}-{os.getpid()}"
        os.replace(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
    if root.is_dir():
        for path in root.iterdir():
            if path.name.startswith((".tmp-", ".old-")):
                shutil.rmtree(path, ignore_errors=True)


def read_state(checkpoint: Path) -> dict[str, Any]:
    try:
        return json.loads((checkpoint / STATE_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RunFolderError(f"{checkpoint / STATE_FILE}: cannot read the trainer state ({exc})") from exc


class RunLock:
    """An exclusive lock file in the output folder, recording the owner's host and pid.

    The owner holds an ``flock`` on the file for as long as it runs; the kernel drops it when the
    process dies, however it dies. A second run on the same folder is refused with the owner's
    identity, also when both start at the same instant. A lock file whose flock is free but which
    names a process of this host that is gone was left by a killed run: it is reported
    (:attr:`stale_owner`) and taken over. A lock naming another host is honoured (its process cannot
    be checked from here). Where ``fcntl`` is missing (Windows) only the pid check applies.
    """

    def __init__(self, output_dir: str | Path) -> None:
        self.path = Path(output_dir) / LOCK_FILE
        self.stale_owner: dict[str, Any] | None = None
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"host": socket.gethostname(), "pid": os.getpid()}
        for _ in range(10):
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                if not _try_flock(fd):
                    raise self._in_use(self._owner())
                if not _same_file(fd, self.path):
                    os.close(fd)  # the holder removed the file as we opened it: try the new one
                    continue
                owner = self._owner()
                if owner is not None and owner != me and not self._is_stale(owner):
                    raise self._in_use(owner)  # a live process of this host, or one of another host
                self.stale_owner = owner if owner is not None and owner != me else None
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(me).encode(), 0)
                os.fsync(fd)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
            return self
        raise RunFolderError(f"{self.path}: could not take the lock")

    def _in_use(self, owner: dict[str, Any] | None) -> RunFolderError:
        who = f"host {owner.get('host')}, pid {owner.get('pid')}" if owner else "its owner is starting"
        return RunFolderError(
            f"{self.path.parent} is in use by another run ({who}); choose another output_dir or stop that "
            f"run. If no run is using it, delete {self.path}."
        )

    def release(self) -> None:
        owner = self._owner()
        if (
            owner is not None
            and owner.get("pid") == os.getpid()
            and owner.get("host") == socket.gethostname()
        ):
            self.path.unlink(missing_ok=True)  # while still holding the flock: no one sees it free
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _owner(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    @staticmethod
    def _is_stale(owner: dict[str, Any]) -> bool:
        if owner.get("host") != socket.gethostname():
            return False  # cannot tell for another host: assume alive
        pid = owner.get("pid")
        if not isinstance(pid, int):
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _try_flock(fd: int) -> bool:
    """Take an exclusive, non-blocking flock on ``fd``; ``False`` if another process holds one."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: rely on the pid check alone
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False
