"""Several two-process runs in one launch: the processes start once and run the scenarios one after
another in the same gloo group.

Starting a process that imports torch, transformers and mtl_hf takes seconds of CPU, more than the tiny
runs themselves; the tests that check a two-process run share one ``accelerate launch`` (the session
fixture ``two_process_runs`` in ``tests/conftest.py`` launches the scenarios the collected tests need).

``two_process_runs.py OUT NAME [NAME...]`` runs each named scenario of :data:`SCENARIOS`, in the order
given, into ``OUT/NAME``: each process's output goes to ``OUT/NAME/rank<i>.log``; once its part
finished, ``OUT/NAME/rank<i>.done`` is written, or ``OUT/NAME/rank<i>.failed`` where it raised. A
scenario of :data:`MEANT_TO_FAIL` that raises lets the next one start (the run under test stops both
processes together, through collectives, so the group stays usable); any other that raises ends the
launch (both processes exit with an error).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SCENARIOS: dict[str, tuple[str, tuple[Any, ...]]] = {
    # name: (module with ``main(out, *args)``, args); the runs that must fail come last
    "weighting": ("tests.weighting.distributed_steps", ()),
    "view_schedule": ("tests.training.view_schedule_steps", ()),
    "partial_labels": ("tests.training.partial_labels_ddp", ()),
    "training": ("tests.training.ddp_check", ()),
    "segmentation": ("tests.training.ddp_check", (True,)),
    "data_fault_skip": ("tests.reliability.ddp_data_fault", ("skip", {3, 10, 17})),
    "data_fault_stop": ("tests.reliability.ddp_data_fault", ("stop", {17})),
    "write_failure": ("tests.reliability.ddp_write_failure", ()),  # patches Accelerator.save_state: last
}
"""Scenario name: the module whose ``main(out, *args)`` one process runs, and those ``args``."""

MEANT_TO_FAIL = frozenset({"data_fault_stop", "write_failure"})
"""Scenarios whose runs stop with an error on both processes, as the tests that read them check."""


@contextlib.contextmanager
def output_to(log: Path) -> Iterator[None]:
    """This process's stdout and stderr (file descriptors 1 and 2, child processes included) go to ``log``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with log.open("a") as handle:
        os.dup2(handle.fileno(), 1)
        os.dup2(handle.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def main(out: str, names: list[str]) -> int:
    from accelerate.state import PartialState

    # ``train`` ends with ``Accelerator.end_training``, which destroys the process group; the next
    # scenario runs in the same group, so it is kept until the last scenario ends.
    destroy = PartialState.destroy_process_group
    PartialState.destroy_process_group = lambda self, group=None: None  # type: ignore[method-assign]
    for position, name in enumerate(names):
        module, args = SCENARIOS[name]
        folder = Path(out, name)
        folder.mkdir(parents=True, exist_ok=True)
        rank = int(os.environ["RANK"])
        if position == len(names) - 1:
            PartialState.destroy_process_group = destroy  # type: ignore[method-assign]
        with output_to(folder / f"rank{rank}.log"):
            try:
                importlib.import_module(module).main(str(folder), *args)
            except Exception:
                traceback.print_exc()
                (folder / f"rank{rank}.failed").touch()
                if name not in MEANT_TO_FAIL:
                    return 1
                continue
        (folder / f"rank{rank}.done").touch()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
