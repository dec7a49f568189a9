"""The command line of training: ``mtl-hf train CONFIG.yaml [overrides]`` or
``accelerate launch -m mtl_hf.train --config CONFIG.yaml [overrides]``.

The loop itself is :func:`mtl_hf.training.loop.train` (re-exported here). Every form of the command
line applies every override or stops with an error: the configuration is the positional ``CONFIG`` or
``--config CONFIG`` (not both), and an override is ``key=value``, ``--key value`` or ``--key=value``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .cli import run_command
from .lazy_exports import lazy_exports
from .options import OptionsError
from .training.config import RunConfig, load_config

if TYPE_CHECKING:
    from .training.loop import TrainingError, TrainResult, train
    from .training.setup import build_model

# the loop's names, imported on first use so that ``mtl-hf train --help`` loads no torch
__getattr__, __dir__ = lazy_exports(
    __name__,
    {".training.loop": ("TrainResult", "TrainingError", "train"), ".training.setup": ("build_model",)},
)

__all__ = ["CommandLine", "TrainResult", "TrainingError", "build_model", "build_parser", "load_config", "main", "parse_command_line", "train"]  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtl-hf train",
        description=(
            "Train an MTL / STL / pretrain-then-fine-tune model as configured. Every config key can be "
            "overridden: --training.epochs 5 or training.epochs=5. Launch with `accelerate launch -m "
            "mtl_hf.train ...` for several GPUs or processes, mixed precision and the rest of Accelerate."
        ),
        usage="%(prog)s [CONFIG | --config CONFIG] [--resume [CHECKPOINT]] [--overwrite] [key=value | --key value ...]",
        allow_abbrev=False,  # an override such as --res... must never be taken for one of these flags
    )
    parser.add_argument(
        "--config", help="YAML run configuration (see configs/); or give it first, positionally"
    )
    parser.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT",
                        help="continue from the newest intact checkpoint in output_dir, or from CHECKPOINT")  # fmt: skip
    parser.add_argument(
        "--overwrite", action="store_true", help="start afresh over a finished or unfinished run"
    )
    return parser


@dataclass
class CommandLine:
    """A parsed ``mtl-hf train`` command line."""

    config: RunConfig
    resume: str | bool
    overwrite: bool


def parse_command_line(argv: Sequence[str]) -> CommandLine:
    """Read the configuration named on the command line and apply every override on it.

    Raises:
        OptionsError: two configurations, a word that is neither a configuration nor an override, or
            any invalid override (naming it).
    """
    args, rest = build_parser().parse_known_args(list(argv))
    resume = args.resume
    if (
        isinstance(resume, str)
        and not Path(resume).is_dir()
        and ("=" in resume or resume.endswith((".yaml", ".yml")))
    ):
        rest, resume = [resume, *rest], True  # `--resume key=value` or `--resume CONFIG`: not a checkpoint
    path, overrides = args.config, []
    i = 0
    while i < len(rest):
        item = rest[i]
        if item.startswith("--") and "=" not in item:  # --key value
            overrides += rest[i : i + 2]
            i += 2
            continue
        if item.startswith("--") or "=" in item:
            overrides.append(item)
        elif path is None and not overrides:
            path = item  # the positional CONFIG, before any override
        else:
            where = "a second configuration" if path is not None else "after an override"
            raise OptionsError(
                f"{item!r}: not an override ({where}); overrides look like key=value, --key value or "
                "--key=value, and the configuration comes first (CONFIG or --config CONFIG)"
            )
        i += 1
    return CommandLine(load_config(path, overrides), resume, args.overwrite)


def main(argv: Sequence[str] | None = None) -> int:
    """Train as the command line says. An error of ours propagates: ``mtl-hf train`` (and ``python -m
    mtl_hf.train``) print it on one line through :func:`mtl_hf.cli.run_command`."""
    command = parse_command_line(sys.argv[1:] if argv is None else argv)
    from .training.loop import train

    train(command.config, resume=command.resume, overwrite=command.overwrite)
    return 0


if __name__ == "__main__":
    sys.exit(run_command("train", main, sys.argv[1:]))
