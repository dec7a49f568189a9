"""Manifests naming files outside the data root are refused unless explicitly allowed.

A manifest that came with a data copy could otherwise make the cache read any file the user can read
(``../../etc/passwd``, an absolute path, a link leading out of the folder) and carry it into a data set
that may later be shared.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from datasets import Image

from mtl_hf.data import DataConfig, DataError, DataWarning, build_cache
from mtl_hf.options import from_dict
from tests.data.files import write_csv, write_png

TARGETS = {"label": {"kind": "binary", "columns": ["label"]}}


def data_set(tmp_path: Path) -> tuple[Path, Path, list[dict[str, Any]]]:
    """A data root with four images, and a secret PNG outside it."""
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    rows = []
    for i in range(4):
        write_png(root / f"img{i}.png", rng.integers(0, 255, (8, 8), dtype=np.uint8))
        rows.append({"path": f"img{i}.png", "patient_id": f"p{i}", "label": i % 2, "mask": ""})
    secret = write_png(tmp_path / "elsewhere" / "secret.png", np.full((8, 8), 7, dtype=np.uint8))
    return root, secret, rows


def config(root: Path, **extra: Any) -> DataConfig:
    images = {"manifest": "manifest.csv", "targets": TARGETS, "mask_column": "mask"}
    return from_dict(DataConfig, {"kind": "images", "root": str(root), "images": images, **extra})


def escapes(root: Path, secret: Path) -> dict[str, tuple[str, str]]:
    """How a manifest row can name the secret: ``{case: (path cell, mask cell)}``."""
    (root / "innocent.png").symlink_to(secret)
    os.symlink(secret.parent, root / "linked_folder")
    relative = os.path.relpath(secret, root)
    return {
        "../ path": (relative, ""),
        "../ path from a sub-folder": (f"img0.png/../{relative}", ""),
        "absolute path": (str(secret), ""),
        "symlink to a file outside": ("innocent.png", ""),
        "symlink to a folder outside": ("linked_folder/secret.png", ""),
        "mask outside": ("img0.png", relative),
    }


CASES = [
    "../ path",
    "../ path from a sub-folder",
    "absolute path",
    "symlink to a file outside",
    "symlink to a folder outside",
    "mask outside",
]


@pytest.mark.parametrize("case", CASES)
def test_manifest_paths_outside_the_root_are_refused(
    tmp_path: Path, case: str, figures: Counter[str]
) -> None:
    root, secret, rows = data_set(tmp_path)
    path, mask = escapes(root, secret)[case]
    rows.append({"path": path, "patient_id": "p9", "label": 1, "mask": mask})
    write_csv(root / "manifest.csv", rows)
    with pytest.raises(
        DataError, match=r"outside the data root .* unless the data config sets allow_outside_root"
    ):
        build_cache(config(root), tmp_path / "cache")
    assert not (tmp_path / "cache").exists() or not any(
        secret.read_bytes() in p.read_bytes() for p in (tmp_path / "cache").rglob("*.arrow")
    )
    with pytest.warns(DataWarning, match="outside the data root"):
        dataset, summary = build_cache(config(root, skip_bad=True), tmp_path / "cache")
    assert len(dataset) == 4 and len(summary.skipped) == 1  # skipped, never read
    assert not any(secret.read_bytes() in p.read_bytes() for p in (tmp_path / "cache").rglob("*.arrow"))
    figures["manifest paths outside the data root refused"] += 1


def test_outside_paths_are_read_when_explicitly_allowed(tmp_path: Path) -> None:
    root, secret, rows = data_set(tmp_path)
    rows.append({"path": str(secret), "patient_id": "p9", "label": 1, "mask": ""})
    write_csv(root / "manifest.csv", rows)
    dataset, _ = build_cache(config(root, allow_outside_root=True), tmp_path / "cache")
    stored = dataset.cast_column("image", Image(decode=False))[4]["image"]["bytes"]
    assert len(dataset) == 5 and stored == secret.read_bytes()


def test_links_that_stay_inside_the_root_are_fine(tmp_path: Path) -> None:
    root, _, rows = data_set(tmp_path)
    (root / "sub").mkdir()
    (root / "sub" / "alias.png").symlink_to(root / "img1.png")
    rows.append({"path": "sub/../sub/alias.png", "patient_id": "p9", "label": 1, "mask": "img0.png"})
    write_csv(root / "manifest.csv", rows)
    dataset, _ = build_cache(config(root), tmp_path / "cache")
    assert len(dataset) == 5


def test_imagefolder_links_out_of_the_root_are_refused(tmp_path: Path) -> None:
    _, secret, _ = data_set(tmp_path)
    folder = tmp_path / "folder"
    write_png(folder / "healthy" / "a.png", np.zeros((8, 8), dtype=np.uint8))
    (folder / "sick").mkdir()
    (folder / "sick" / "b.png").symlink_to(secret)
    layout = {"kind": "images", "root": str(folder), "images": {"targets": {"label": {"kind": "multiclass"}}}}
    with pytest.raises(DataError, match="outside the data root"):
        build_cache(from_dict(DataConfig, layout), tmp_path / "cache")
