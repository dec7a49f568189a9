"""``mtl-hf app MODEL``: serve the web page (see :mod:`mtl_hf.app.ui`) until interrupted."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..inference.hub_arguments import add_hub_arguments, hub_arguments


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtl-hf app",
        description=(
            "A web page on the model: upload a PNG, JPEG, DICOM or NIfTI file (pick a slice of a volume) "
            "and see each task's predictions (those of `mtl-hf predict`), the attention map, the MIM "
            "reconstruction and segmentation masks. Needs pip install 'mtl-hf[app]'."
        ),
    )
    parser.add_argument("model", help="model folder, training run folder (its best_model/) or Hub id")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: Gradio's, 7860 or the next free one)")
    parser.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    add_hub_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .ui import launch

    hub = hub_arguments(args)
    launch(args.model, host=args.host, port=args.port, share=args.share, **hub)
    return 0
