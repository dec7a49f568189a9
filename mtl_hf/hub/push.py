"""Push a saved model or a training run's best model to the Hugging Face Hub, with its model card.

One commit holds the safetensors weights, ``config.json``, the image processor, the model card
(``README.md``) and, for a run folder, its plots and results (see :mod:`mtl_hf.hub.folders`).

The access token comes from the ``token`` argument, else from ``HF_TOKEN`` or the token saved by
``hf auth login`` (``huggingface_hub.get_token``). It is sent to the Hub as an ``Authorization``
header and nowhere else: it is never logged, never written into the card, and removed from the
messages of errors raised here (:func:`mtl_hf.hub_tokens.hub_errors_redacted`). A file to upload that
holds it, or another token this process knows, is refused, naming the file, before anything is
uploaded: every file is searched, text or binary, and the metadata of safetensors files.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError

from ..errors import MtlHfError
from ..hub_tokens import hub_errors_redacted, known_tokens, redact, token_in_file
from .folders import ShareableFolder, resolve_shareable
from .folders import adapter_only as adapter_only_folder
from .model_card import ModelCardOptions, render_model_card

logger = logging.getLogger(__name__)


class HubPushError(MtlHfError, RuntimeError):
    """Pushing to the Hub failed: no token, a file holding the token, or an error from the Hub."""


@dataclass(frozen=True)
class PushResult:
    """What a push created.

    Attributes:
        repo_id: The repository, ``namespace/name``.
        revision: The branch committed to.
        commit_oid: The new commit's id.
        commit_url: Its web address.
        files: Paths in the repository written by the commit (``README.md`` included).
    """

    repo_id: str
    revision: str
    commit_oid: str
    commit_url: str
    files: tuple[str, ...]


def push_to_hub(
    path: str | Path,
    repo_id: str,
    *,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    card: ModelCardOptions | None = None,
    create_pr: bool = False,
    adapter_only: bool = False,
) -> PushResult:
    """Upload a model folder or a training run folder to the Hub repository ``repo_id``.

    Args:
        path: A ``save_pretrained`` folder of an :class:`~mtl_hf.MTLModel` or a training run folder
            (then its ``best_model/``, ``plots/*.png`` and results are pushed).
        repo_id: ``namespace/name`` (or ``name`` for your own namespace); created if missing.
        private: Make a new repository private (``None``: the Hub's default). An existing
            repository keeps its visibility.
        revision: Branch to commit to (default ``main``); created from ``main`` if missing.
        commit_message: Default ``"Upload <model name> with mtl-hf"``.
        token: A Hub access token; default ``HF_TOKEN`` or the saved login.
        endpoint: Hub address (default ``HF_ENDPOINT`` or https://huggingface.co).
        card: Metadata for the model card (license, data sets...).
        create_pr: Open a pull request instead of committing to ``revision`` directly.
        adapter_only: For a LoRA model: push only the adapter (peft's format) and the heads, which load
            onto the base backbone the card names (:mod:`mtl_hf.lora_adapter`), not the full weights.

    Raises:
        HubFolderError: if the folder cannot be shared (see :func:`~mtl_hf.hub.folders.resolve_shareable`).
        HubPushError: with no token, if a file to upload contains the token, or if the Hub refuses a call.
        ValueError: if the run's result files are malformed (the card cannot be written); nothing is
            uploaded then.

    Example::

        >>> from mtl_hf.hub import push_to_hub, ModelCardOptions  # doctest: +SKIP
        >>> push_to_hub("runs/brats-mtl", "my-lab/dino-vits16-brats-mtl", private=True,
        ...             card=ModelCardOptions(datasets=["my-lab/brats-slices"]))  # doctest: +SKIP
    """
    with tempfile.TemporaryDirectory(prefix="mtl-hf-push-") as staging:
        folder = resolve_shareable(path)
        if adapter_only:
            folder = adapter_only_folder(folder, Path(staging))
        return _push(
            folder, path, repo_id, private, revision, commit_message, token, endpoint, card, create_pr
        )


def _push(
    folder: ShareableFolder,
    path: str | Path,
    repo_id: str,
    private: bool | None,
    revision: str | None,
    commit_message: str | None,
    token: str | None,
    endpoint: str | None,
    card: ModelCardOptions | None,
    create_pr: bool,
) -> PushResult:
    token = token or get_token()
    if not token:
        raise HubPushError(
            "no Hugging Face access token: set the HF_TOKEN environment variable or run `hf auth login`"
        )
    _refuse_files_with_token(folder, token)
    readme = _card_bytes(folder, repo_id, card, token)  # a broken run folder fails before any upload
    api = HfApi(endpoint=endpoint, token=token)
    branch = revision or "main"
    with hub_errors_redacted(token):
        try:
            created = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
            if created != repo_id:  # "name" alone resolves to the token owner's namespace
                repo_id, readme = created, _card_bytes(folder, created, card, token)
            if branch != "main" and not create_pr:
                api.create_branch(repo_id, branch=branch, exist_ok=True)
            operations = [CommitOperationAdd(f.path_in_repo, f.local_path) for f in folder.files]
            operations.append(CommitOperationAdd("README.md", readme))
            message = commit_message or f"Upload {repo_id.split('/')[-1]} with mtl-hf"
            logger.info("pushing %d files from %s to %s (%s)", len(operations), path, repo_id, branch)
            commit = api.create_commit(
                repo_id,
                operations,
                commit_message=message,
                revision=branch,
                create_pr=create_pr,
            )
        except HfHubHTTPError as err:
            raise HubPushError(
                redact(f"pushing {path} to {repo_id} failed: {err}", known_tokens(token))
            ) from None
    logger.info("pushed %s at commit %s", repo_id, commit.oid)
    return PushResult(
        repo_id=repo_id,
        revision=branch,
        commit_oid=commit.oid,
        commit_url=commit.commit_url,
        files=tuple(op.path_in_repo for op in operations),
    )


def _card_bytes(folder: ShareableFolder, repo_id: str, card: ModelCardOptions | None, token: str) -> bytes:
    text = str(render_model_card(folder, repo_id, card))
    if token in text:
        raise HubPushError("the model card would contain the access token; refusing to upload it")
    return text.encode("utf-8")


def _refuse_files_with_token(folder: ShareableFolder, token: str) -> None:
    """Refuse the push if any file to upload holds an access token this process knows (the one pushing,
    the environment's, the saved login): every file, text or binary, and the safetensors metadata."""
    tokens = known_tokens(token)
    for upload in folder.files:
        found = token_in_file(upload.local_path, tokens)
        if found is not None:
            raise HubPushError(
                f"{upload.local_path} contains the Hugging Face access token ({found}); refusing to upload "
                "it. Remove the token from the file, or the file from the folder."
            )
