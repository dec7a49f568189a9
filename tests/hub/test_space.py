"""``mtl-hf push --space``: the model and, next to it, a Gradio Space whose ``app.py`` serves it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

import mtl_hf.app
from mtl_hf.hub.cli import main as push_main

from .conftest import TOKEN, write_model_dir
from .hub_server import HubServer


def test_push_with_space(
    hub: HubServer, no_ambient_token: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_model_dir(tmp_path / "model")
    argv = [str(folder), "tester/brats-mtl", "--space", "--endpoint", hub.url, "--token", TOKEN]
    assert push_main(argv) == 0
    assert hub.file("tester/brats-mtl", "model.safetensors")  # the model itself
    create = [r.json() for r in hub.requests_to("create_repo")]
    assert {"type": "space", "sdk": "gradio"}.items() <= create[-1].items()

    app_py = hub.file("tester/brats-mtl", "app.py", kind="spaces").decode()
    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(mtl_hf.app, "launch", lambda model, **kw: calls.append((model, kw)))
    exec(compile(app_py, "app.py", "exec"), {"__name__": "__main__"})  # the Space's entry point, as run there
    assert calls == [("tester/brats-mtl", {"host": "0.0.0.0", "port": 7860})]

    requirements = hub.file("tester/brats-mtl", "requirements.txt", kind="spaces").decode().split()
    assert requirements == ["mtl-hf[app,dicom]"]  # built-in heads only: no plugin distribution
    readme = hub.file("tester/brats-mtl", "README.md", kind="spaces").decode()
    front = yaml.safe_load(readme.split("---")[1])
    assert (
        front["sdk"] == "gradio" and front["app_file"] == "app.py" and front["models"] == ["tester/brats-mtl"]
    )
    assert "not a medical device" in readme
    for path in ("app.py", "requirements.txt", "README.md"):
        assert TOKEN.encode() not in hub.file("tester/brats-mtl", path, kind="spaces")


def test_space_requirements_name_plugin_distributions() -> None:
    from mtl_hf.app.space import space_files

    files = space_files("lab/seg", config={"head_sources": {"segmentation": "mtl-hf-segmentation 0.1.0"}})
    assert files["requirements.txt"].split() == ["mtl-hf[app,dicom]", "mtl-hf-segmentation==0.1.0"]
