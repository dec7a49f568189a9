"""``mtl-hf push`` with every logger at DEBUG level, as a user chasing a problem would run it.

``python -m tests.reliability.push_run PUSH-ARGS...`` (the token comes from ``HF_TOKEN``).
"""

from __future__ import annotations

import logging
import sys


def main(argv: list[str]) -> int:
    from mtl_hf.cli import main as cli_main

    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, force=True)
    for name in ("huggingface_hub", "httpx", "httpcore", "urllib3", "filelock", "mtl_hf"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    return cli_main(["push", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
