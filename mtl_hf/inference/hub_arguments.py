"""Command-line options for loading a model from the Hub, shared by the commands that load one.

Kept free of heavy imports, so a command's ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_hub_arguments(parser: argparse.ArgumentParser) -> None:
    """``--revision`` and ``--local-files-only``."""
    parser.add_argument("--revision", help="Hub revision of the model")
    parser.add_argument("--local-files-only", action="store_true", help="do not contact the Hub")


def hub_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The loading keyword arguments (``revision``, ``local_files_only``) of the parsed options."""
    hub: dict[str, Any] = {"revision": args.revision} if args.revision else {}
    if args.local_files_only:
        hub["local_files_only"] = True
    return hub
