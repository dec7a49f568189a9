"""The web app as a Hugging Face Space next to a model on the Hub (``mtl-hf push --space``).

A Space is a repository of its own (``repo_type="space"``, Gradio SDK) holding:

* ``app.py``: ``mtl_hf.app.launch("<model repo>")`` on the port Spaces expect;
* ``requirements.txt``: ``mtl-hf[app,dicom]`` and the distributions of plugin heads the model was
  saved with (``config.json``'s ``head_sources``), so the Space can rebuild every head;
* ``README.md``: the Space card (front matter: title, ``sdk: gradio``, ``app_file``, ``models``), with
  the statement that it is a research model, not a medical device.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..run_folder import RunFolder

APP_FILE = "app.py"
REQUIREMENTS_FILE = "requirements.txt"
SPACE_PORT = 7860


def space_files(
    model_repo_id: str, *, config: dict[str, Any] | None = None, title: str | None = None
) -> dict[str, str]:
    """``{path: text}`` of a Space serving the Hub model ``model_repo_id`` (see the module docstring).

    Args:
        model_repo_id: The model's Hub repository, ``namespace/name``.
        config: The model's ``config.json`` contents (for plugin distributions); optional.
        title: The Space's title (default: the model's name).
    """
    title = title or model_repo_id.split("/")[-1]
    app = (
        f'"""A Hugging Face Space serving {model_repo_id} with the mtl-hf web page."""\n\n'
        "from mtl_hf.app import launch\n\n"
        f'launch({model_repo_id!r}, host="0.0.0.0", port={SPACE_PORT})\n'
    )
    requirements = ["mtl-hf[app,dicom]"]
    for source in sorted(set(((config or {}).get("head_sources") or {}).values())):
        name, _, version = str(source).partition(" ")
        requirements.append(f"{name}=={version}" if version else name)
    front = {
        "title": title,
        "sdk": "gradio",
        "app_file": APP_FILE,
        "models": [model_repo_id],
        "tags": ["mtl-hf", "medical-imaging"],
        "pinned": False,
    }
    readme = (
        "---\n"
        + "".join(f"{k}: {json.dumps(v)}\n" for k, v in front.items())
        + "---\n\n"
        + f"# {title}\n\n"
        + f"Upload a PNG, JPEG, DICOM or NIfTI file to see the predictions of [{model_repo_id}]"
        + f"(https://huggingface.co/{model_repo_id}), its attention map, the masked-image-modeling "
        + "reconstruction and, with a segmentation task, the mask.\n\n"
        + "A research model, not a medical device: do not use it for diagnosis.\n"
    )
    return {APP_FILE: app, REQUIREMENTS_FILE: "\n".join(requirements) + "\n", "README.md": readme}


def model_config(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``config.json`` of a model folder or a training run's ``best_model/``, if there is one."""
    for candidate in (Path(folder) / "config.json", RunFolder(folder).best_model / "config.json"):
        if candidate.is_file():
            loaded: dict[str, Any] = json.loads(candidate.read_text())
            return loaded
    return None


def push_space(
    model_repo_id: str,
    *,
    space_id: str | None = None,
    folder: str | os.PathLike[str] | None = None,
    private: bool | None = None,
    token: str | None = None,
    endpoint: str | None = None,
) -> str:
    """Create or update the Space serving ``model_repo_id`` (see the module docstring); return its id.

    Args:
        model_repo_id: The model's Hub repository (pushed before).
        space_id: The Space's id; default the model's (``namespace/name``, in the Spaces).
        folder: The local model or run folder pushed, to read ``config.json`` (plugin heads).
        private, token, endpoint: As for :func:`mtl_hf.hub.push_to_hub`.

    Raises:
        mtl_hf.hub.HubPushError: no token, or the Hub refused a call (the token is never in the message).
    """
    from huggingface_hub import CommitOperationAdd, HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError

    from ..hub.push import HubPushError
    from ..hub_tokens import known_tokens, redact

    token = token or get_token()
    if not token:
        raise HubPushError("no Hugging Face access token: set HF_TOKEN or run `hf auth login`")
    config = model_config(folder) if folder is not None else None
    files = space_files(model_repo_id, config=config)
    if any(token in text for text in files.values()):
        raise HubPushError("the Space files would contain the access token; refusing to upload them")
    api = HfApi(endpoint=endpoint, token=token)
    target = space_id or model_repo_id
    try:
        target = api.create_repo(
            target, repo_type="space", space_sdk="gradio", private=private, exist_ok=True
        ).repo_id
        api.create_commit(
            target,
            [CommitOperationAdd(path, text.encode("utf-8")) for path, text in files.items()],
            commit_message=f"Web app for {model_repo_id} (mtl-hf)",
            repo_type="space",
        )
    except HfHubHTTPError as err:
        raise HubPushError(redact(f"pushing the Space {target} failed: {err}", known_tokens(token))) from None
    return target
