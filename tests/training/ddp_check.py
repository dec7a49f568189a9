"""Run under two processes: train on generated data, then record what each rank ended with.

Run in two processes by ``tests/two_process_runs.py`` (scenarios ``training`` and ``segmentation``);
alone: ``accelerate launch --multi_gpu --num_processes 2 ... ddp_check.py OUT [--segmentation]``.
Writes ``rank<i>.json`` with a checksum of every parameter, for the test to compare across ranks.
``--segmentation`` adds the plugin's ``segmentation`` head (``tests/plugins/test_segmentation_ddp.py``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from accelerate import PartialState

from mtl_hf.options import from_dict
from mtl_hf.train import train
from mtl_hf.training.config import RunConfig
from tests.training.synthetic import base_config, make_data

LESION = {"type": "segmentation", "layers": [1, 2], "decoder_channels": [8, 8], "image_skip_channels": 4}


def main(out: str, segmentation: bool = False) -> None:
    torch.set_num_threads(1)
    raw = base_config(out, epochs=2, strategy="mtl", report_to=["tensorboard"])
    if segmentation:  # the plugin's head next to the two built-in ones, selected by validation Dice
        raw["model"]["tasks"]["lesion"] = LESION
        raw["training"]["monitor"] = "lesion"
    config = from_dict(RunConfig, raw)
    result = train(config, make_data(n_train=24, n_val=7, n_test=9, masks=segmentation))
    state = PartialState()
    sums = {name: float(p.detach().double().sum()) for name, p in result.model.named_parameters()}
    Path(out, f"rank{state.process_index}.json").write_text(
        json.dumps({"world": state.num_processes, "sums": sums})
    )


if __name__ == "__main__":
    main(sys.argv[1], segmentation="--segmentation" in sys.argv[2:])
