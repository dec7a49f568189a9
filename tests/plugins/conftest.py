"""Helpers for plugin tests: plugin distributions written and installed with pip, as users install
them, and fresh processes that see them (the ``segmentation_plugin`` fixture is in ``tests/conftest.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.plugin_sites import REPO_ROOT, SEGMENTATION_PLUGIN, pip_install_target


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
