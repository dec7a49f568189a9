"""Run under two processes: the second checkpoint cannot be written on rank 1 only (a full local disk).

Run in two processes by ``tests/two_process_runs.py`` (scenario ``write_failure``) for
``test_write_failures.py``; both ranks must stop with an error instead of rank 0 waiting
forever at the next barrier for a rank that has died.
"""

from __future__ import annotations

import errno
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from accelerate import Accelerator, PartialState

from mtl_hf.options import from_dict
from mtl_hf.train import train
from mtl_hf.training.config import RunConfig
from tests.training.synthetic import base_config, make_data


def main(out: str) -> None:
    torch.set_num_threads(1)
    original = Accelerator.save_state
    calls = {"n": 0}

    def save_state(self: Accelerator, output_dir: str, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 2 and PartialState().process_index == 1:
            raise OSError(
                errno.ENOSPC, "No space left on device", str(Path(output_dir) / "random_states_1.pkl")
            )
        return original(self, output_dir, **kwargs)

    Accelerator.save_state = save_state  # type: ignore[method-assign]
    config = from_dict(RunConfig, base_config(out, epochs=1, strategy="stl", save_every_steps=1))
    train(config, make_data())


if __name__ == "__main__":
    main(sys.argv[1])
