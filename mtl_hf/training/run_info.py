"""The run record: what a result depends on (seed, split, versions, code revision), for honest reporting."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .report import SplitReport

if TYPE_CHECKING:
    from ..run_folder import RunFolder
    from .config import RunConfig
    from .inputs import TrainingData

PACKAGES = (
    "mtl-hf",
    "torch",
    "transformers",
    "accelerate",
    "datasets",
    "evaluate",
    "huggingface-hub",
    "numpy",
)


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_revision(path: Path | None = None) -> str | None:
    """The commit of the working tree at ``path`` (or of the installed package's source), if it is a git checkout."""
    where = path or Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def write_run_info(
    run: RunFolder, config: RunConfig, data: TrainingData, run_id: str | None = None
) -> dict[str, Any]:
    """Record what the run's results depend on, and its identity (checked when a checkpoint is resumed)."""
    info = {
        "run_id": run_id,
        "warnings": SplitReport.of(data).warnings(),
        "seed": config.training.seed,
        "strategy": config.training.strategy,
        "split_manifest_hash": data.split_manifest_hash,
        "data_summary": data.summary,
        "packages": package_versions(),
        "python": platform.python_version(),
        "git_revision": git_revision(),
    }
    run.write_run_info(info)
    return info
