"""The suite's own tools do not depend on how busy the machine is.

On a shared machine (load average 4 to 15 on 2 cores) a process gets a fraction of a core: wall-clock
limits that hold on a quiet machine fail there. The fork server's shutdown and the fuzz tests' hang
guard are checked here with the slowness made explicit (an exit handler that sleeps, a block that
sleeps), so the result is the same on any machine.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .conftest import REPO, subprocess_env
from .fuzzing import Hang, time_limit
from .zygote import Zygote

SLOW_EXIT = "import atexit, time\natexit.register(time.sleep, 3600)  # a teardown that never ends in time\n"


def test_fork_server_stops_without_waiting_for_its_interpreter_teardown(tmp_path: Path) -> None:
    """Tearing down the server's interpreter (torch, transformers, datasets...) took over 30 s of wall
    time under load, and ``close`` waited at most 30 s: the suite ended with an error at teardown."""
    (tmp_path / "sitecustomize.py").write_text(SLOW_EXIT)
    zygote = Zygote(REPO, subprocess_env(PYTHONPATH=f"{tmp_path}:{REPO}"))
    try:
        launched = zygote.launch("tests.reliability.zygote_probe", [], tmp_path / "probe.log")
        assert zygote.wait(launched) == 0
        zygote.close()  # returns once the server is gone, however slow its teardown would have been
        assert zygote.proc.returncode == 0
    finally:
        if zygote.proc.poll() is None:
            zygote.proc.kill()
            zygote.proc.wait()


def test_hang_guard_counts_cpu_time_not_wall_time() -> None:
    with time_limit(0.2):
        time.sleep(0.5)  # as a process waiting for a busy core: no CPU used, no hang
    with pytest.raises(Hang, match="no result after 0.2 s of CPU time"), time_limit(0.2):
        while True:
            pass
