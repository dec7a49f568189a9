"""``mtl-hf export MODEL -o DIR``: the inference graph as ONNX, with the image processor and a
description of the outputs (see :mod:`mtl_hf.export.onnx_export`)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..inference.hub_arguments import add_hub_arguments, hub_arguments
from .layout import DEFAULT_OPSET, MODEL_FILE, OUTPUTS_FILE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtl-hf export",
        description=(
            f"Export a model's inference graph (pixel values -> each task's logits, optionally every "
            f"layer's attention maps) as ONNX with a dynamic batch: DIR/{MODEL_FILE}, the image "
            f"processor (preprocessor_config.json) and DIR/{OUTPUTS_FILE} describing each output. "
            "Needs pip install 'mtl-hf[onnx]'; run the export with onnxruntime or mtl_hf.export.OnnxModel."
        ),
    )
    parser.add_argument("model", help="model folder, training run folder (its best_model/) or Hub id")
    parser.add_argument("-o", "--output-dir", required=True, help="export folder")
    parser.add_argument(
        "--task",
        action="append",
        dest="tasks",
        help="task to export (repeatable; default all classifiers and segmentation tasks)",
    )
    parser.add_argument("--attentions", action="store_true", help="also output every layer's attention maps")
    parser.add_argument(
        "--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a folder that holds other files")
    add_hub_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .onnx_export import export_onnx

    hub = hub_arguments(args)
    result = export_onnx(
        args.model,
        args.output_dir,
        tasks=args.tasks,
        attentions=args.attentions,
        opset=args.opset,
        overwrite=args.overwrite,
        **hub,
    )
    outputs = [o["name"] for o in result.outputs["outputs"]]
    if result.outputs["attentions"]:
        outputs.append(result.outputs["attentions"]["name"])
    print(
        f"{result.model_file}: input pixel_values {result.outputs['input']['shape']}; outputs {', '.join(outputs)}"
    )
    return 0
