"""Plugin distributions installed with pip into a folder of their own, as users install them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SEGMENTATION_PLUGIN = REPO_ROOT / "plugins" / "mtl-hf-segmentation"


def pip_install_target(source: Path, target: Path) -> None:
    """``pip install --no-deps --target target source``, building from a copy so the source tree stays clean."""
    build_copy = target.parent / f"{source.name}-build"
    shutil.copytree(source, build_copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(build_copy),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
