"""Fixtures for plugin tests: plugin distributions installed with pip, as users install them."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
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


@pytest.fixture(scope="session")
def segmentation_plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[metadata.Distribution]:
    """The ``mtl-hf-segmentation`` distribution, importable with its entry point: the installed one if
    the environment has it (``pip install -e plugins/mtl-hf-segmentation``), else a pip install of
    ``plugins/mtl-hf-segmentation`` into a temporary site directory put on ``sys.path``."""
    try:
        yield metadata.distribution("mtl-hf-segmentation")
        return
    except metadata.PackageNotFoundError:
        pass
    target = tmp_path_factory.mktemp("plugin_site") / "site"
    pip_install_target(SEGMENTATION_PLUGIN, target)
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    try:
        yield metadata.distribution("mtl-hf-segmentation")
    finally:
        sys.path.remove(str(target))
