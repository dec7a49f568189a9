"""Start a script under ``accelerate launch`` with two CPU processes (DDP over gloo), as users would."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch_two_processes(
    script: Path | str,
    *args: str,
    extra_paths: Sequence[str] = (),
    timeout: int = 600,
    check: bool = True,
    module: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run ``script args`` (with ``module``: ``-m script args``) in two processes; with ``check``, fail
    with the tail of their output if they fail.

    ``ACCELERATE_USE_CPU=1``: without it, a GPU-less machine starts two independent single-process runs.
    ``extra_paths`` go on ``PYTHONPATH`` after the repository (a plugin installed into a folder, say).
    """
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()),
        *(["-m", str(script)] if module else [str(script)]), *args,
    ]  # fmt: skip
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), *extra_paths]),
        "ACCELERATE_USE_CPU": "1",
    }
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert not check or proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc
