"""Start training runs as separate processes, watch them, kill them.

Two ways, one interface: :class:`FreshLauncher` starts a new interpreter per run (``subprocess``);
:class:`ForkLauncher` forks each run from a server that has the stack imported already
(:mod:`tests.reliability.zygote`), which saves seconds per run in CI. Either way a run is a real
process with its own pid, killed with a real ``SIGKILL``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .conftest import REPO, subprocess_env
from .zygote import Zygote


@dataclass
class Run:
    pid: int
    log: Path
    popen: subprocess.Popen[bytes] | None = None


class Launcher(Protocol):
    def start(self, module: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> Run: ...

    def finish(self, run: Run, timeout: float = 300) -> int: ...


def alive(run: Run) -> bool:
    """Whether the run's process still runs (an exited child not yet reaped counts as gone)."""
    if run.popen is not None:
        return run.popen.poll() is None
    try:
        stat = Path(f"/proc/{run.pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def kill(run: Run) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(run.pid, signal.SIGKILL)


def output(run: Run) -> str:
    return run.log.read_text(errors="replace") if run.log.exists() else ""


class FreshLauncher:
    """One new Python interpreter per run."""

    def start(self, module: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> Run:
        with log.open("ab") as handle:
            popen = subprocess.Popen(
                [sys.executable, "-m", module, *argv],
                cwd=REPO,
                env=subprocess_env(**(env or {})),
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
        return Run(popen.pid, log, popen)

    def finish(self, run: Run, timeout: float = 300) -> int:
        assert run.popen is not None
        return run.popen.wait(timeout=timeout)


class ForkLauncher:
    """Runs forked from one pre-imported server (see :mod:`tests.reliability.zygote`)."""

    def __init__(self) -> None:
        self.zygote = Zygote(REPO, subprocess_env())

    def start(self, module: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> Run:
        return Run(self.zygote.launch(module, argv, log, env), log)

    def finish(self, run: Run, timeout: float = 300) -> int:
        deadline = time.monotonic() + timeout
        while alive(run) and time.monotonic() < deadline:
            time.sleep(0.05)
        if alive(run):
            kill(run)
            self.zygote.wait(run.pid)
            raise TimeoutError(
                f"run {run.pid} still going after {timeout} s; killed. Output:\n{output(run)[-3000:]}"
            )
        return self.zygote.wait(run.pid)

    def close(self) -> None:
        self.zygote.close()
