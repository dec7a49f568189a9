"""Cheap checks that the data a configuration names is there, made before a run builds its model
(which may download a backbone) or creates its output folder: a run over a missing data folder stops
at once, naming the key and the path, and leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

from .config import DataConfig
from .errors import DataError
from .readers.manifest import locate_manifest


def check_source(config: DataConfig, key: str = "data") -> None:
    """Raise unless the data folder (or, for a source read through a manifest, the manifest; for a
    🤗 dataset given by a local path, that path) exists.

    Args:
        config: The data configuration.
        key: Where ``config`` sits in the run configuration, for the message.

    Raises:
        DataError: naming the missing path and the configuration key that gave it.
    """
    if config.kind == "hf_dataset":  # a local path must exist; a Hub id is checked when it is loaded
        from .hf_datasets import source_format

        try:
            source_format(config.root, config.hf_dataset)
        except DataError as exc:
            raise DataError(exc.path, f"{exc.reason} ({key}.root)") from None
        return
    manifest = {"images": config.images.manifest, "volumes": config.volumes.manifest}.get(config.kind)
    if manifest:
        path = locate_manifest(manifest, config.root)
        if not path.is_file():
            raise DataError(str(path), f"manifest not found ({key}.{config.kind}.manifest)")
        return
    if not Path(config.root).is_dir():
        raise DataError(str(config.root), f"data folder not found ({key}.root)")


__all__ = ["check_source"]
