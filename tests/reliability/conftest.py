"""Shared pieces of the reliability suite: subprocess environment, and the figures it reports.

Each test adds what it survived or refused to :data:`FIGURES` (kills survived, fuzz cases tried, bad
inputs refused...). At the end of the session the totals are printed, and written as JSON to the file
named by ``MTL_HF_RELIABILITY_FIGURES`` when that variable is set (the README's reliability section quotes them).
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]

FIGURES: Counter[str] = Counter()
"""Session totals, e.g. ``FIGURES["kills survived"] += 1``."""


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for a child Python: the repository importable, one thread (2-core CI machines)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MTL_HF_KILLPOINT",)}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO), HF_HUB_DISABLE_TELEMETRY="1")
    env.update(PYTHONUNBUFFERED="1")  # a run's output is in its log file as soon as printed
    env.update(extra)
    return env


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


@pytest.fixture
def figures() -> Counter[str]:
    return FIGURES


@pytest.fixture(scope="session")
def fork_launcher() -> Any:
    """Training runs forked from one pre-imported server (see :mod:`tests.reliability.zygote`)."""
    from .launchers import ForkLauncher

    launcher = ForkLauncher()
    yield launcher
    launcher.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not FIGURES:
        return
    terminalreporter.section("reliability figures")
    for name, value in sorted(FIGURES.items()):
        terminalreporter.write_line(f"{name}: {value}")
    target = os.environ.get("MTL_HF_RELIABILITY_FIGURES")
    if target:
        Path(target).write_text(json.dumps(dict(sorted(FIGURES.items())), indent=2) + "\n")
