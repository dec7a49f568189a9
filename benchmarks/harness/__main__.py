"""``python -m benchmarks.harness``: see :mod:`benchmarks.harness`."""

import sys

from .cli import main

sys.exit(main())
