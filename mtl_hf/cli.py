"""``mtl-hf``: thin command-line front ends over the library. Each command's ``--help`` documents it.

Commands import their modules lazily, so ``mtl-hf --help`` is instant and a command only needs the
optional packages it uses.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module:function taking argv, one-line help)
    "demo": (
        "mtl_hf.experiments.demo:main",
        "build the offline demo data and compare STL / pretrain / MTL on it",
    ),
    "train": ("mtl_hf.train:main", "train one model (same as `accelerate launch -m mtl_hf.train`)"),
    "compare": (
        "mtl_hf.experiments.compare:main",
        "run a grid of strategies x sampling x fractions x seeds; tables",
    ),
    "make-demo-data": ("mtl_hf.experiments.demo:make_demo_data_main", "write the offline demo data sets"),
    "predict": ("mtl_hf.inference.cli:main", "probabilities per task for images or NIfTI volumes"),
    "explain": ("mtl_hf.explain.cli:main", "attention maps, MIM reconstructions and in-lesion attention"),
    "push": (
        "mtl_hf.hub.cli:main",
        "publish a model or run folder to the Hugging Face Hub with a model card",
    ),
    "plugins": ("mtl_hf.plugins_report:main", "list registered heads and weighters and broken plugins"),
    "bench": (
        "mtl_hf.experiments.bench:main",
        "measure training and inference speed against transformers peers",
    ),
}


def _load(target: str) -> Callable[[Sequence[str]], int]:
    module_name, func = target.split(":")
    module = __import__(module_name, fromlist=[func])
    return getattr(module, func)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="mtl-hf",
        description="Multi-task learning for medical images: a DINO ViT shared by task heads.",
        epilog="Run `mtl-hf COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    if argv[0] == "--version":
        from . import __version__

        print(f"mtl-hf {__version__}")
        return 0
    if argv[0] not in COMMANDS:
        parser.print_usage(sys.stderr)
        print(f"mtl-hf: unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return int(_load(COMMANDS[argv[0]][0])(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
