"""What a model folder or a training run folder shares, and what is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtl_hf.hub import HubFolderError, resolve_shareable


def test_a_model_folder_shares_its_top_level_files(model_dir: Path) -> None:
    (model_dir / "README.md").write_text("replaced by the generated card")
    (model_dir / ".DS_Store").write_bytes(b"\0")
    folder = resolve_shareable(model_dir)
    assert folder.run_dir is None and folder.model_dir == model_dir
    assert [(f.local_path.name, f.path_in_repo) for f in folder.files] == [
        ("config.json", "config.json"),
        ("model.safetensors", "model.safetensors"),
        ("preprocessor_config.json", "preprocessor_config.json"),
    ]
    assert folder.config["model_type"] == "mtl_vit" and set(folder.config["tasks"]) == {"tumour", "mim"}
    assert folder.has_image_processor


def test_a_run_folder_shares_best_model_plots_and_results_but_not_checkpoints_or_predictions(
    run_dir: Path,
) -> None:
    folder = resolve_shareable(run_dir)
    assert folder.model_dir == run_dir / "best_model" and folder.run_dir == run_dir
    shared = {f.path_in_repo: f.local_path for f in folder.files}
    assert shared == {
        "config.json": run_dir / "best_model/config.json",
        "model.safetensors": run_dir / "best_model/model.safetensors",
        "preprocessor_config.json": run_dir / "best_model/preprocessor_config.json",
        "plots/loss.png": run_dir / "plots/loss.png",
        "plots/roc_tumour.png": run_dir / "plots/roc_tumour.png",
        "training/test_metrics.json": run_dir / "test_metrics.json",
        "training/metrics.jsonl": run_dir / "metrics.jsonl",
        "training/config.yaml": run_dir / "config.yaml",
        "training/run_info.json": run_dir / "run_info.json",
    }
    assert folder.plots == ["plots/loss.png", "plots/roc_tumour.png"]


@pytest.mark.parametrize("pickle_name", ["pytorch_model.bin", "extra/weights.pt", "head.pkl", "model.ckpt"])
def test_pickle_files_are_refused(model_dir: Path, pickle_name: str) -> None:
    target = model_dir / pickle_name
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(b"\x80\x04pickle")
    with pytest.raises(HubFolderError, match=rf"refusing to share pickle files \({pickle_name}\)"):
        resolve_shareable(model_dir)


def test_pickles_in_a_runs_best_model_are_refused_but_not_in_its_unshared_checkpoints(run_dir: Path) -> None:
    resolve_shareable(run_dir)  # checkpoints/checkpoint-4/optimizer.bin is never shared
    (run_dir / "best_model" / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(HubFolderError, match="pytorch_model.bin"):
        resolve_shareable(run_dir)


def test_a_folder_without_safetensors_is_refused(model_dir: Path) -> None:
    (model_dir / "model.safetensors").unlink()
    with pytest.raises(HubFolderError, match="no safetensors weights"):
        resolve_shareable(model_dir)


def test_sharded_weights_need_every_shard(model_dir: Path) -> None:
    (model_dir / "model.safetensors").rename(model_dir / "model-00001-of-00002.safetensors")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (model_dir / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(HubFolderError, match="model-00002-of-00002.safetensors"):
        resolve_shareable(model_dir)
    (model_dir / "model-00002-of-00002.safetensors").write_bytes(b"")
    names = [f.path_in_repo for f in resolve_shareable(model_dir).files]
    assert "model-00002-of-00002.safetensors" in names and "model.safetensors.index.json" in names


def test_a_folder_of_another_model_type_is_refused(model_dir: Path) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "model_type": "vit"}))
    with pytest.raises(HubFolderError, match=r"model_type is 'vit', expected 'mtl_vit'"):
        resolve_shareable(model_dir)


def test_neither_kind_of_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(HubFolderError, match="neither a model folder"):
        resolve_shareable(tmp_path)
    with pytest.raises(HubFolderError, match="not a folder"):
        resolve_shareable(tmp_path / "missing")
