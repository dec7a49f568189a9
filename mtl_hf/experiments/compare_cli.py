"""``mtl-hf compare CONFIG.yaml [key=value ...]``: the command line of :mod:`mtl_hf.experiments.compare`.

Free of heavy imports until the command runs, so ``mtl-hf compare --help`` is instant.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtl-hf compare",
        description=(
            "Train a grid of strategies x weightings x sampling x training fractions x seeds on one patient "
            "split, then write the results table (ROC AUC with patient-level bootstrap and DeLong intervals, "
            "mean ± sd over seeds), paired tests between strategies, and plots. Run it again to resume. "
            "Options after CONFIG override the compare config (key=value or --key value)."
        ),
    )
    parser.add_argument("config", help="compare config YAML (see configs/)")
    parser.add_argument(
        "--workers", type=int, default=1,
        help="runs trained at the same time, each in its own process with one torch thread (default 1)",
    )  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args, overrides = build_parser().parse_known_args(argv)
    from .compare import compare, load_compare_config

    config, base = load_compare_config(args.config, overrides)
    print(compare(config, base, workers=args.workers))
    print(f"Tables and plots in {config.output_dir}")
    return 0
