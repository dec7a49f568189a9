"""Checks that keep loading weights and checkpoints from running code.

Loading a pickle (``pytorch_model.bin``, ``*.pt``, ``optimizer.bin``) calls Python's unpickler, which can
import and call anything the file names; ``torch.load(weights_only=True)`` narrows that to an allow-list
of tensor-rebuilding functions, but it is still a parser of untrusted bytes with a history of escapes
(CVE-2025-32434 let a crafted file run code through ``weights_only=True`` before torch 2.6). A
safetensors file is a JSON header and raw tensor bytes: loading it never runs code. So:

* **Models** (:func:`check_weights_source`, for a folder :func:`check_weights_folder`): an mtl-hf
  model folder must hold safetensors weights. A folder that holds only pickle weights is refused with
  an explanation, unless the caller opts in with ``allow_pickle=True`` (and even then transformers
  loads it with ``weights_only=True``). A ``config.json`` that points transformers at another weights
  file (``transformers_weights``) must name a safetensors file. A sharded model's index
  (``model.safetensors.index.json``) must point only at ``.safetensors`` shards in the same folder or
  repository (:func:`check_weights_index`): transformers reads whatever file the index names, and
  unpickles it with ``torch.load`` when it is not safetensors. For a Hub id the index is fetched and checked
  before transformers downloads any shard. ``MTLPreTrainedModel.from_pretrained`` (so
  ``AutoModel.from_pretrained`` too), ``MTLModel.from_backbone`` and predict's loader call it.
* **Training checkpoints** (:func:`check_training_checkpoint`): ``accelerate``'s ``load_state`` reads the
  model from ``model.safetensors`` but the optimizer, sampler and random states are ``torch.save``
  pickles, loaded with ``weights_only=True`` plus an allow-list of numpy and ``codecs.encode`` (needed
  for the random states); objects registered with ``register_for_checkpointing`` are loaded with
  ``weights_only=False``. Before resuming, this check refuses a checkpoint whose model is a pickle,
  which holds ``custom_checkpoint_*.pkl`` files, or whose pickles name any global outside that
  allow-list (found with ``torch.serialization.get_unsafe_globals_in_checkpoint``, which reads the
  pickle's opcodes without executing them).

Our own checkpoints pass; a checkpoint folder received from someone else is best not resumed at all
(start a fine-tuning run from its ``best_model/`` safetensors instead).
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import MtlHfError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")
"""Suffixes of files written with pickle (``torch.save``, ``pickle.dump``, ``joblib.dump``)."""

SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
"""What transformers' ``save_pretrained(safe_serialization=True)`` writes: one file, or shards and an index."""

PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")

SAFE_INDEX = "model.safetensors.index.json"
PICKLE_INDEX = "pytorch_model.bin.index.json"

ALLOW_PICKLE_HINT = (
    "Loading a pickle can run arbitrary code hidden in the file. If you trust its source, convert it "
    "once to safetensors (load it yourself and call save_pretrained(..., safe_serialization=True)), or "
    "opt in with from_pretrained(..., allow_pickle=True), which still loads it with torch.load(weights_only=True)."
)


class UnsafeCheckpointError(MtlHfError, ValueError):
    """A model folder or training checkpoint would need unpickling to load and was refused.

    Attributes:
        path: The folder (or file) refused.
    """

    def __init__(self, path: str | os.PathLike[str], message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = str(path)


def check_weights_source(
    source: str | os.PathLike[str], *, allow_pickle: bool = False, subfolder: str = "", **hub_kwargs: Any
) -> None:
    """Refuse a model folder or Hub repository whose weights could only be loaded by unpickling.

    A local folder is checked by :func:`check_weights_folder`. For a Hub id, the safetensors index
    (if the repository has one) is downloaded, or read from the cache, and checked by
    :func:`check_weights_index` before transformers fetches any shard; with ``allow_pickle=True`` the
    pickle index too, for shard names leading out of the repository.

    Args:
        source: Folder or Hub id.
        allow_pickle: Accept pickle weights (a source you trust).
        subfolder: Folder of the weights inside ``source``.
        **hub_kwargs: ``revision``, ``cache_dir``, ``token``, ``local_files_only``, ``force_download``,
            ``proxies``, as given to ``from_pretrained``.

    Raises:
        UnsafeCheckpointError: naming the folder, index or shard refused.
    """
    folder = os.path.join(os.fspath(source), subfolder or "")
    if os.path.isdir(folder):
        check_weights_folder(folder, allow_pickle=allow_pickle)
        return
    from transformers.utils import cached_file

    keys = ("revision", "cache_dir", "token", "local_files_only", "force_download", "proxies")
    download = {k: hub_kwargs[k] for k in keys if hub_kwargs.get(k) is not None}
    for name in (SAFE_INDEX, PICKLE_INDEX) if allow_pickle else (SAFE_INDEX,):
        index = cached_file(
            os.fspath(source),
            name,
            subfolder=subfolder or "",
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
            **download,
        )
        if index is not None:
            shown = "/".join(p for p in (os.fspath(source), subfolder, name) if p)
            check_weights_index(index, allow_pickle=allow_pickle or name == PICKLE_INDEX, shown=shown)


def check_weights_folder(path: str | os.PathLike[str], *, allow_pickle: bool = False) -> None:
    """Refuse a local model folder whose weights could only be loaded by unpickling.

    Passes when the folder holds ``model.safetensors`` (or a safetensors index whose shards pass
    :func:`check_weights_index`), or holds no weights at all (transformers then reports the missing
    file itself). ``allow_pickle=True`` lets a folder with only ``pytorch_model.bin`` through.

    Raises:
        UnsafeCheckpointError: the folder's only weights are pickles, its ``config.json`` names a
            weights file (``transformers_weights``) that is not safetensors, or its index names a shard
            that is not a safetensors file in the folder.
    """
    folder = Path(path)
    config = folder / "config.json"
    if config.is_file():
        try:
            explicit = json.loads(config.read_text()).get("transformers_weights")
        except (OSError, ValueError, AttributeError):
            explicit = None  # transformers reports an unreadable config itself
        safe = explicit is None or (
            str(explicit).endswith((".safetensors", ".safetensors.index.json"))
            and _is_plain_file_name(str(explicit))
        )
        if not safe and not allow_pickle:
            raise UnsafeCheckpointError(
                folder,
                f"config.json asks for the weights file {explicit!r}, which is not a safetensors file in "
                "the folder. " + ALLOW_PICKLE_HINT,
            )
    for name in (SAFE_INDEX, PICKLE_INDEX):
        if (folder / name).is_file():
            check_weights_index(folder / name, allow_pickle=allow_pickle or name == PICKLE_INDEX)
    if any((folder / name).is_file() for name in SAFE_WEIGHTS):
        return
    pickles = sorted(
        p.name for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(PICKLE_SUFFIXES)
    )
    if pickles and not allow_pickle:
        raise UnsafeCheckpointError(
            folder,
            f"no safetensors weights (model.safetensors), only pickle files: {', '.join(pickles)}. "
            + ALLOW_PICKLE_HINT,
        )


def check_weights_index(
    index: str | os.PathLike[str], *, allow_pickle: bool = False, shown: str | None = None
) -> None:
    """Refuse a sharded model's index that points at a shard transformers would unpickle, or outside.

    transformers loads every file named in the index's ``weight_map``, from the index's folder (or
    repository), with ``torch.load`` when it is not a safetensors file. So each name must be a plain
    file name (no folder, no ``..``, not absolute) ending in ``.safetensors``; ``allow_pickle=True``
    also accepts pickle suffixes (loaded with ``weights_only=True``), never a path.

    Args:
        index: The index file.
        allow_pickle: Accept pickle shards.
        shown: How to name the index in errors (default: its path).

    Raises:
        UnsafeCheckpointError: the index cannot be read, has no ``weight_map``, or names a shard that
            is not allowed (all such names are listed).
    """
    where = shown or os.fspath(index)
    try:
        data = json.loads(Path(index).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UnsafeCheckpointError(where, f"cannot read the weights index ({exc})") from None
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise UnsafeCheckpointError(where, "the weights index has no weight_map naming its shards")
    suffixes = (".safetensors", *PICKLE_SUFFIXES) if allow_pickle else (".safetensors",)
    bad = sorted(
        {
            repr(name)
            for name in weight_map.values()
            if not (isinstance(name, str) and _is_plain_file_name(name) and name.lower().endswith(suffixes))
        }
    )
    if bad:
        raise UnsafeCheckpointError(
            where,
            f"the index points at {', '.join(bad)}: shards must be .safetensors files in the same folder "
            "(transformers would read any file named here, unpickling one that is not safetensors). "
            + (ALLOW_PICKLE_HINT if not allow_pickle else "Refusing to load it."),
        )


def _is_plain_file_name(name: str) -> bool:
    """A file name with no folder part: no ``/`` or ``\\``, not ``.``/``..``, no NUL, not absolute."""
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0") and ":" not in name


def pickle_safe_globals() -> list[Any]:
    """The globals accelerate allows when it unpickles checkpoint states (numpy arrays, ``codecs.encode``)."""
    from accelerate.utils.other import TORCH_SAFE_GLOBALS

    return list(TORCH_SAFE_GLOBALS)


def unsafe_globals(path: str | os.PathLike[str], extra_safe: Iterable[Any] = ()) -> list[str]:
    """Globals a ``torch.save`` file names beyond what ``torch.load(weights_only=True)`` allows.

    The pickle is scanned, not executed. ``extra_safe`` adds allowed globals (as
    ``torch.serialization.add_safe_globals`` would).

    Raises:
        UnsafeCheckpointError: the file is not a ``torch.save`` zip archive (the legacy format cannot
            be scanned) or cannot be read.
    """
    import torch

    if not zipfile.is_zipfile(path):
        raise UnsafeCheckpointError(path, "not a torch.save archive (zip); refusing to unpickle it")
    try:
        with torch.serialization.safe_globals(list(extra_safe)):
            return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except (OSError, RuntimeError, ValueError, zipfile.BadZipFile) as exc:
        raise UnsafeCheckpointError(path, f"cannot scan the pickle ({type(exc).__name__}: {exc})") from exc


def check_training_checkpoint(path: str | os.PathLike[str]) -> None:
    """Refuse a training checkpoint (``accelerator.save_state`` folder) that could run code when resumed.

    Checks, before ``accelerator.load_state`` unpickles anything:

    * every model is stored as ``model*.safetensors``, none as ``pytorch_model*.bin`` or ``model*.bin``;
    * the random states are there (accelerate carries on without them, and the resume is not exact);
    * no ``custom_checkpoint_*.pkl`` (accelerate loads those with ``weights_only=False``);
    * every other pickle (optimizer, scheduler, sampler, scaler, random states) names only globals that
      ``torch.load(weights_only=True)`` and accelerate's allow-list accept.

    Raises:
        UnsafeCheckpointError: naming the file and what it would have loaded.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise UnsafeCheckpointError(folder, "not a checkpoint folder")
    files = sorted(p for p in folder.iterdir() if p.is_file())
    names = [p.name for p in files]
    custom = [n for n in names if n.startswith("custom_checkpoint_") and n.endswith(".pkl")]
    if custom:
        raise UnsafeCheckpointError(
            folder,
            f"holds {', '.join(custom)}, which accelerate unpickles with weights_only=False (able to run "
            "any code); mtl-hf checkpoints never contain them. Refusing to resume from it.",
        )
    pickled_models = [n for n in names if n.startswith(("pytorch_model", "model")) and n.endswith(".bin")]
    if pickled_models:
        raise UnsafeCheckpointError(
            folder,
            f"the model state is a pickle ({', '.join(pickled_models)}); mtl-hf checkpoints store it as "
            "model.safetensors. Refusing to resume from it.",
        )
    if not any(n.startswith("model") and n.endswith(".safetensors") for n in names):
        raise UnsafeCheckpointError(folder, "no model.safetensors: not a complete mtl-hf checkpoint")
    if "random_states_0.pkl" not in names:  # accelerate would go on silently, and not resume exactly
        raise UnsafeCheckpointError(folder, "no random_states_0.pkl: not a complete mtl-hf checkpoint")
    allowed = pickle_safe_globals()
    for file in files:
        if not file.name.lower().endswith(PICKLE_SUFFIXES):
            continue
        found = unsafe_globals(file, allowed)
        if found:
            raise UnsafeCheckpointError(
                file,
                f"the pickle names {', '.join(sorted(found))}, outside what training checkpoints hold "
                "(tensors, numpy arrays, plain containers). Refusing to resume from it.",
            )
