"""What a local folder shares on the Hub: a saved model, or a training run's best model and results.

Two kinds of folder are accepted:

* a **model folder**, the output of ``MTLModel.save_pretrained`` (``config.json`` with
  ``model_type: mtl_vit``, safetensors weights, usually ``preprocessor_config.json``), or of
  :func:`mtl_hf.lora_adapter.save_adapter` (a LoRA adapter and the heads): its top-level files are
  shared as they are;
* a **training run folder** written by ``mtl-hf train`` (it holds ``best_model/``): ``best_model/`` is
  shared at the root of the repository, ``plots/*.png`` under ``plots/``, and the results that
  describe the run (``test_metrics.json``, ``metrics.jsonl``, ``config.yaml``, ``run_info.json``)
  under ``training/``. Checkpoints (optimizer state) and ``test_predictions.csv`` (which names
  patients) are never shared.

Pickle files (``pytorch_model.bin``, ``*.pt``, ``*.pkl``...) run code when loaded, so a folder that
holds any is refused, as is a folder without safetensors weights.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..configuration_mtl import MTLConfig
from ..errors import UsageError
from ..lora_adapter import ADAPTER_CONFIG, ADAPTER_WEIGHTS, HEADS_WEIGHTS
from ..run_folder import RunFolder

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")
"""Weight and object files written with pickle; refused because loading them can run arbitrary code."""

RUN_RESULT_FILES = RunFolder.SHARED_RESULTS
"""Files of a training run shared (under ``training/``) with its best model."""

SAFETENSORS_INDEX = "model.safetensors.index.json"


class HubFolderError(UsageError, ValueError):
    """The folder cannot be shared: not a model or run folder, pickle weights, or missing safetensors.

    A :class:`~mtl_hf.errors.UsageError`: the folder given to ``mtl-hf push`` is the one to change."""


@dataclass(frozen=True)
class UploadFile:
    """One local file and where it goes in the repository."""

    local_path: Path
    path_in_repo: str


@dataclass
class ShareableFolder:
    """A model folder (and, for a training run, its run folder) with the files to upload.

    Attributes:
        model_dir: The ``save_pretrained`` folder.
        run_dir: The training run folder, or ``None`` when a model folder was given.
        config: ``config.json`` of the model, as a plain dict (read without importing plugin heads).
        files: What to upload, the model card excepted.
    """

    model_dir: Path
    run_dir: Path | None
    config: dict[str, Any]
    files: list[UploadFile] = field(default_factory=list)

    @property
    def has_image_processor(self) -> bool:
        return (self.model_dir / "preprocessor_config.json").is_file()

    @property
    def adapter(self) -> dict[str, Any] | None:
        """``adapter_config.json`` of an adapter-only folder (:mod:`mtl_hf.lora_adapter`), else ``None``."""
        path = self.model_dir / ADAPTER_CONFIG
        if not path.is_file() or (self.model_dir / "model.safetensors").exists():
            return None
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise HubFolderError(f"{path}: not valid JSON ({exc})") from exc
        return loaded if isinstance(loaded, dict) else None

    @property
    def plots(self) -> list[str]:
        """Paths in the repository of the run's plots, sorted."""
        return sorted(f.path_in_repo for f in self.files if f.path_in_repo.startswith("plots/"))

    def run_file(self, name: str) -> Path | None:
        """``name`` in the run folder if this is a run and the file exists."""
        if self.run_dir is None:
            return None
        path = self.run_dir / name
        return path if path.is_file() else None


def resolve_shareable(path: str | Path) -> ShareableFolder:
    """Inspect ``path`` (a model folder or a training run folder) and list what to upload.

    Raises:
        HubFolderError: if ``path`` is neither kind of folder, holds pickle files, has no safetensors
            weights (or a shard named in the index is missing), or its config is not an mtl-hf config.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise HubFolderError(f"{root}: not a folder (expected a saved model or a training run folder)")
    if RunFolder(root).has_best_model():
        model_dir, run_dir = RunFolder(root).best_model, root
    elif (root / "config.json").is_file():
        model_dir, run_dir = root, None
    else:
        raise HubFolderError(
            f"{root}: neither a model folder (no config.json) nor a training run folder (no best_model/)"
        )
    _refuse_pickles(model_dir)
    config = _read_config(model_dir)
    files = [
        UploadFile(p, p.name)
        for p in sorted(model_dir.iterdir())
        if p.is_file() and not p.name.startswith(".") and p.name != "README.md"
    ]
    _check_safetensors(model_dir, [f.local_path.name for f in files])
    if run_dir is not None:
        plots = RunFolder(run_dir).plots
        if plots.is_dir():
            files += [
                UploadFile(p, f"{plots.name}/{p.name}") for p in sorted(plots.glob("*.png")) if p.is_file()
            ]
        files += [
            UploadFile(run_dir / name, f"training/{name}")
            for name in RUN_RESULT_FILES
            if (run_dir / name).is_file()
        ]
    return ShareableFolder(model_dir=model_dir, run_dir=run_dir, config=config, files=files)


def _refuse_pickles(model_dir: Path) -> None:
    pickles = sorted(
        str(p.relative_to(model_dir)) for p in model_dir.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES
    )
    if pickles:
        raise HubFolderError(
            f"{model_dir}: refusing to share pickle files ({', '.join(pickles)}): loading them can run "
            "arbitrary code. Save the model with save_pretrained (safetensors) and remove them."
        )


def _read_config(model_dir: Path) -> dict[str, Any]:
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise HubFolderError(f"{model_dir}: no config.json (is this a save_pretrained folder?)")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise HubFolderError(f"{config_path}: not valid JSON ({exc})") from exc
    if not isinstance(config, dict) or config.get("model_type") != MTLConfig.model_type:
        found = config.get("model_type") if isinstance(config, dict) else None
        raise HubFolderError(
            f"{config_path}: model_type is {found!r}, expected {MTLConfig.model_type!r} (an mtl-hf model)"
        )
    return config


def _check_safetensors(model_dir: Path, names: list[str]) -> None:
    if "model.safetensors" in names or {ADAPTER_WEIGHTS, HEADS_WEIGHTS} <= set(names):
        return
    if SAFETENSORS_INDEX in names:
        index = json.loads((model_dir / SAFETENSORS_INDEX).read_text(encoding="utf-8"))
        shards = sorted(set(index.get("weight_map", {}).values()))
        missing = [s for s in shards if s not in names]
        if not shards or missing:
            raise HubFolderError(
                f"{model_dir / SAFETENSORS_INDEX}: shard(s) missing from the folder: {', '.join(missing) or '(none listed)'}"
            )
        return
    raise HubFolderError(
        f"{model_dir}: no safetensors weights (model.safetensors or {SAFETENSORS_INDEX}); "
        "save the model with save_pretrained"
    )


def adapter_only(folder: ShareableFolder, staging: Path) -> ShareableFolder:
    """``folder`` with its full LoRA model replaced by the adapter-only form
    (:func:`mtl_hf.lora_adapter.save_adapter`, written under ``staging``); a run's plots and results stay.

    Raises:
        mtl_hf.lora_adapter.AdapterError: the model has no LoRA adapter or no known base backbone.
    """
    from ..image_processing_mtl import MTLImageProcessor
    from ..lora_adapter import save_adapter
    from ..modeling_mtl import MTLModel

    if folder.adapter is not None:
        return folder
    model = MTLModel.from_pretrained(folder.model_dir)
    processor = MTLImageProcessor.from_pretrained(folder.model_dir) if folder.has_image_processor else None
    adapter_dir = save_adapter(model, staging / "adapter", processor=processor)
    files = [UploadFile(p, p.name) for p in sorted(adapter_dir.iterdir()) if p.is_file()]
    files += [f for f in folder.files if "/" in f.path_in_repo]  # the run's plots/ and training/
    return ShareableFolder(
        model_dir=adapter_dir, run_dir=folder.run_dir, config=_read_config(adapter_dir), files=files
    )
