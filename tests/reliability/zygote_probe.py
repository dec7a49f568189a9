"""A run for the fork server that does nothing: ``main`` returns 0 at once."""

from __future__ import annotations


def main(argv: list[str]) -> int:
    return 0
