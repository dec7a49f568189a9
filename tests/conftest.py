"""Shared fixtures: tiny backbones so every model test runs in seconds on a CPU; the reference plugin
installed; one two-process launch for the tests that check two-process runs."""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import torch

import mtl_hf
from tests.launch import ROOT, launch_two_processes
from tests.plugin_sites import SEGMENTATION_PLUGIN, pip_install_target
from tests.two_process_runs import SCENARIOS


def tiny_backbone(model_type: str = "vit", **overrides: Any) -> dict[str, Any]:
    """A 2-layer, 32-wide backbone config dict of the given kind (64 px, patch 16 by default)."""
    base: dict[str, Any] = {
        "model_type": model_type,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "image_size": 64,
        "patch_size": 16,
        "num_channels": 3,
    }
    if model_type == "vit":
        base["encoder_stride"] = base["patch_size"]
    base.update(overrides)
    if model_type == "vit" and "patch_size" in overrides:
        base.setdefault("encoder_stride", overrides["patch_size"])
        base["encoder_stride"] = overrides.get("encoder_stride", overrides["patch_size"])
    return base


def tiny_config(
    model_type: str = "vit", tasks: dict | None = None, weighting: dict | None = None, **kwargs: Any
):
    backbone_overrides = kwargs.pop("backbone", {})
    return mtl_hf.MTLConfig(
        backbone_config=tiny_backbone(model_type, **backbone_overrides),
        tasks=tasks
        if tasks is not None
        else {"tumour": {"type": "binary_classification"}, "mim": {"type": "mim"}},
        weighting=weighting,
        **kwargs,
    )


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "two_processes(name): the test checks scenario NAME of tests/two_process_runs.py (fixture two_process_run)",
    )


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


@dataclass
class TwoProcessRuns:
    """The shared launch of :mod:`tests.two_process_runs`: its folder and the launcher's result."""

    out: Path
    proc: subprocess.CompletedProcess[str]

    def logs(self, name: str) -> list[str]:
        """Each process's output during scenario ``name``."""
        return [
            path.read_text(errors="replace") if path.exists() else ""
            for path in (self.out / name / f"rank{r}.log" for r in range(2))
        ]

    def failed(self, name: str) -> list[bool]:
        """Whether each process's part of scenario ``name`` raised."""
        return [(self.out / name / f"rank{r}.failed").exists() for r in range(2)]

    def folder(self, name: str) -> Path:
        """Scenario ``name``'s output folder; fails with the processes' output unless both finished it."""
        done = [(self.out / name / f"rank{r}.done").exists() for r in range(2)]
        assert all(done), (
            "\n".join([f"scenario {name!r} did not finish on both processes {done}:", *self.logs(name)])[
                -8000:
            ]
            + self.proc.stderr[-3000:]
        )
        return self.out / name


@pytest.fixture(scope="session")
def two_process_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> TwoProcessRuns:
    """One ``accelerate launch`` of two processes running every scenario that a collected test marks
    with ``two_processes(name)``, in :data:`SCENARIOS` order (so runs meant to fail come last)."""
    wanted = {m.args[0] for item in request.session.items for m in item.iter_markers("two_processes")}
    names = [name for name in SCENARIOS if name in wanted]
    extra_paths = []
    if "segmentation" in names:  # the plugin's install folder, for the two processes
        extra_paths.append(str(request.getfixturevalue("segmentation_plugin").locate_file("")))
    out = tmp_path_factory.mktemp("two_processes")
    script = ROOT / "tests" / "two_process_runs.py"
    proc = launch_two_processes(
        script, str(out), *names, extra_paths=extra_paths, timeout=1200, check=False
    )  # a bound for a hang
    return TwoProcessRuns(out, proc)


@pytest.fixture
def two_process_run(request: pytest.FixtureRequest, two_process_runs: TwoProcessRuns) -> Path:
    """The output folder of the scenario this test is marked with (``two_processes(name)``)."""
    marker = request.node.get_closest_marker("two_processes")
    assert marker is not None, "mark the test with @pytest.mark.two_processes(name)"
    return two_process_runs.folder(marker.args[0])
