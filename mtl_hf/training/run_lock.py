"""A lock against two runs in one output folder, recording its owner, taken over when its owner is gone.

Why not ``filelock``: its native lock records no owner (a refused run could not say which run holds the
folder), keeps the lock file on release by design, and knows nothing of a lock file that names a live
process without holding the ``flock`` (a run on a file system where ``flock`` is not shared, or a lock
written by hand); this lock needs all three, on top of the same ``flock``.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from ..atomic import refuse_link
from ..run_folder import RunFolder, RunFolderError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


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
        self.path = RunFolder(output_dir).lock_file
        self.stale_owner: dict[str, Any] | None = None
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"host": socket.gethostname(), "pid": os.getpid()}
        for _ in range(10):
            try:  # never through a link planted in the folder: its target would be truncated
                fd = os.open(self.path, os.O_CREAT | os.O_RDWR | _NOFOLLOW, 0o644)
            except OSError as exc:
                if self.path.is_symlink():
                    raise RunFolderError(str(refuse_link(self.path))) from exc
                raise
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
