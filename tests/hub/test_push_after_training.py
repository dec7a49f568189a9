"""`hub.repo_id` in a training config pushes the finished run, over real HTTP to the loopback Hub."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mtl_hf.options import OptionsError, from_dict
from mtl_hf.train import train
from mtl_hf.training.config import RunConfig
from tests.training.synthetic import base_config, make_data

from .conftest import TOKEN
from .hub_server import HubServer


def test_a_finished_run_is_pushed_with_its_card(
    hub: HubServer, no_ambient_token: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.set_num_threads(1)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", hub.url)
    raw = base_config(str(tmp_path / "run"), epochs=1, strategy="stl")
    raw["hub"] = {"repo_id": "lab/auto-pushed", "private": True, "card": {"datasets": ["lab/slices"]}}
    out = train(from_dict(RunConfig, raw), make_data()).output_dir
    (commit,) = hub.requests_to("commit")
    assert commit.path == "/api/models/lab/auto-pushed/commit/main"
    assert hub.repos["lab/auto-pushed"].private
    assert (
        hub.file("lab/auto-pushed", "model.safetensors", "main")
        == (out / "best_model" / "model.safetensors").read_bytes()
    )
    assert "lab/slices" in hub.file("lab/auto-pushed", "README.md", "main").decode()
    for path in out.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


def test_a_bad_card_option_fails_before_training(tmp_path: Path) -> None:
    raw = base_config(str(tmp_path / "run"), epochs=1)
    raw["hub"] = {"repo_id": "lab/x", "card": {"licence": "mit"}}
    with pytest.raises(OptionsError, match="hub.card.licence: unknown key"):
        train(from_dict(RunConfig, raw), make_data())
    assert not (tmp_path / "run" / "checkpoints").exists()
