"""Fixtures for plugin tests: plugin distributions installed with pip, as users install them."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping, Sequence
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


def install_distribution(
    root: Path,
    name: str,
    version: str,
    entry_points: Mapping[str, Mapping[str, str]],
    modules: Mapping[str, str],
) -> Path:
    """Write a distribution ``name`` (a ``pyproject.toml`` declaring ``entry_points``, ``{group: {name:
    "module:attr"}}``, and one top-level module per ``modules`` item, ``{module: source}``) under
    ``root`` and pip-install it into its own site directory, which is returned."""
    source = root / name
    source.mkdir(parents=True)
    groups = "".join(
        f'\n[project.entry-points."{group}"]\n'
        + "".join(f'{key} = "{value}"\n' for key, value in items.items())
        for group, items in entry_points.items()
    )
    (source / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "{name}"\nversion = "{version}"\ndependencies = ["mtl-hf"]\n{groups}\n'
        f"[tool.setuptools]\npy-modules = {sorted(modules)!r}\n".replace("'", '"')
    )
    for module, code in modules.items():
        (source / f"{module}.py").write_text(textwrap.dedent(code))
    site = root / f"{name}-site"
    pip_install_target(source, site)
    return site


def run_process(
    argv: Sequence[str], *, sites: Sequence[Path] = (), env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python argv...`` in a fresh process that sees the plugin ``sites`` (installed distributions)
    and this checkout's ``mtl_hf`` and ``mtl_hf_segmentation``, with one thread; ``env`` adds variables."""
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    environ["OMP_NUM_THREADS"] = "1"
    # this checkout's mtl_hf and reference plugin, whichever copies the environment has installed
    environ["PYTHONPATH"] = os.pathsep.join(
        [*map(str, sites), str(REPO_ROOT), str(SEGMENTATION_PLUGIN / "src")]
    )
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, *argv], env=environ, capture_output=True, text=True, timeout=300, cwd=REPO_ROOT
    )


def run_python(
    code: str, *args: str, site: Path | None = None, sites: Sequence[Path] = (), **env: str
) -> str:
    """Run ``code`` as in :func:`run_process`; it must succeed. Returns its last line of output."""
    done = run_process(["-c", code, *args], sites=[*([site] if site else []), *sites], env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


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
