"""``mtl-hf``: thin command-line front ends over the library. Each command's ``--help`` documents it.

Commands import their modules lazily, so ``mtl-hf --help`` is instant and a command only needs the
optional packages it uses.

Errors: every error mtl-hf raises on purpose derives from :class:`mtl_hf.errors.MtlHfError`; it is
caught here, once for every command, and printed as one line (``mtl-hf COMMAND: error: ...``) with exit
code 1, or 2 for a :class:`~mtl_hf.errors.UsageError` (a wrong option or configuration value). An
``OSError`` (a file or folder that cannot be read or written; its message names the path) is printed the
same way with exit code 1. Any other exception is a bug and keeps its traceback.
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
        "mtl_hf.experiments.compare_cli:main",
        "run a grid of strategies x sampling x fractions x seeds; tables",
    ),
    "make-demo-data": ("mtl_hf.experiments.demo:make_demo_data_main", "write the offline demo data sets"),
    "predict": ("mtl_hf.inference.cli:main", "probabilities per task for images or NIfTI volumes"),
    "export": (
        "mtl_hf.export.cli:main",
        "export the inference graph as ONNX for onnxruntime (pip install 'mtl-hf[onnx]')",
    ),
    "explain": ("mtl_hf.explain.cli:main", "attention maps, MIM reconstructions and in-lesion attention"),
    "app": ("mtl_hf.app.cli:main", "serve a web page on a model: upload an image, see predictions and maps"),
    "push": (
        "mtl_hf.hub.cli:main",
        "publish a model or run folder to the Hugging Face Hub with a model card",
    ),
    "plugins": ("mtl_hf.plugins_report:main", "list registered heads and weighters and broken plugins"),
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
    return run_command(argv[0], _load(COMMANDS[argv[0]][0]), argv[1:])


def run_command(name: str, command: Callable[[Sequence[str]], int], argv: Sequence[str]) -> int:
    """Run ``command(argv)``; an :class:`~mtl_hf.errors.MtlHfError` or ``OSError`` becomes a one-line
    message on stderr and the exit code of the module docstring. Also for entry points outside
    ``mtl-hf`` (``python -m mtl_hf.train``)."""
    from .errors import MtlHfError

    try:
        return int(command(argv) or 0)
    except (MtlHfError, OSError) as exc:
        print(f"mtl-hf {name}: error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code if isinstance(exc, MtlHfError) else 1


def one_line(exc: BaseException) -> str:
    """``exc``'s message on one line (its lines joined by ``"; "``), prefixed by the class name."""
    message = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
