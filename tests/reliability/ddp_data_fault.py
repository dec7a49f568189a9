"""Run under two processes: some training samples cannot be read (a damaged file on shared storage).

Run in two processes by ``tests/two_process_runs.py`` for ``test_data_faults.py`` (scenarios
``data_fault_skip`` and ``data_fault_stop``); alone: ``ddp_data_fault.py OUT POLICY BAD[,BAD...]``.
Each rank writes ``rank<i>.json`` with the skip count it ended with; under ``stop`` the run raises.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from accelerate import PartialState

from mtl_hf.data import DataError
from mtl_hf.options import from_dict
from mtl_hf.train import train
from mtl_hf.training.config import RunConfig
from tests.training.synthetic import base_config, make_data


class Damaged(Dataset):
    """``dataset`` whose samples ``bad`` raise a DataError naming their file, whichever process reads them."""

    def __init__(self, dataset: Any, bad: set[int]) -> None:
        self.dataset, self.bad = dataset, bad

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Any:
        if i in self.bad:
            raise DataError(f"slices/sample{i}.png", "cannot decode image (broken data stream)")
        return self.dataset[i]


def main(out: str, policy: str, bad: set[int]) -> None:
    torch.set_num_threads(1)
    raw = base_config(out, epochs=1, strategy="stl", batch_size=4, on_data_error=policy)
    data = make_data(n_train=24)
    data = dataclasses.replace(data, train=Damaged(data.train, bad))
    result = train(from_dict(RunConfig, raw), data)
    rank = PartialState().process_index
    Path(out, f"rank{rank}.json").write_text(json.dumps({"skipped": result.state.skipped_samples}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], {int(i) for i in sys.argv[3].split(",")})
