"""Run as a script in a fresh process whose ``HF_ENDPOINT`` points at the test Hub: load a model and its
image processor from the Hub with ``AutoModel`` / ``AutoImageProcessor`` and save their outputs.

Usage: ``python load_from_hub.py REPO_ID REVISION INPUTS.safetensors OUTPUTS.safetensors``.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoImageProcessor, AutoModel

import mtl_hf  # noqa: F401  (registers mtl_vit with the Auto classes)


def main(repo_id: str, revision: str, inputs_path: str, outputs_path: str) -> None:
    model = AutoModel.from_pretrained(repo_id, revision=revision).eval()
    processor = AutoImageProcessor.from_pretrained(repo_id, revision=revision)
    inputs = load_file(inputs_path)
    with torch.no_grad():
        out = model(pixel_values=inputs["pixel_values"], bool_masked_pos=inputs["bool_masked_pos"])
    processed = processor(inputs["image"].numpy().astype(np.uint8), return_tensors="pt")["pixel_values"]
    save_file(
        {
            "tumour": out.logits["tumour"].contiguous(),
            "mim": out.reconstructions["mim"].contiguous(),
            "processed": processed.contiguous(),
        },
        outputs_path,
    )


if __name__ == "__main__":
    main(*sys.argv[1:5])
