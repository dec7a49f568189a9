"""mtl-hf: multi-task learning for medical images on the Hugging Face stack.

Importing the package registers :class:`MTLConfig`, :class:`MTLModel` and :class:`MTLImageProcessor`
with transformers' ``AutoConfig``, ``AutoModel`` and ``AutoImageProcessor`` (``model_type="mtl_vit"``),
and the ``"mtl-image-classification"`` pipeline, so saved models load with ``AutoModel.from_pretrained``
and no ``trust_remote_code``.

The import itself is cheap: the public names below are loaded on first use (PEP 562), and the
registration happens when transformers loads its Auto classes (:mod:`mtl_hf.auto_registration`), so
``mtl-hf --help`` and ``import mtl_hf.errors`` load neither torch nor transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import auto_registration

__version__ = "0.1.0"

_LAZY_NAMES: dict[str, str] = {
    # public name -> module holding it
    "HEADS": "heads",
    "TaskHead": "heads",
    "WEIGHTERS": "weighting",
    "LossWeighter": "weighting",
    "MTLConfig": "configuration_mtl",
    "MTLImageProcessor": "image_processing_mtl",
    "MTLModel": "modeling_mtl",
    "MTLModelOutput": "modeling_mtl",
    "MTLPreTrainedModel": "modeling_mtl",
}

if TYPE_CHECKING:
    from .configuration_mtl import MTLConfig
    from .heads import HEADS, TaskHead
    from .image_processing_mtl import MTLImageProcessor
    from .modeling_mtl import MTLModel, MTLModelOutput, MTLPreTrainedModel
    from .weighting import WEIGHTERS, LossWeighter


def __getattr__(name: str) -> Any:
    module = _LAZY_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'mtl_hf' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY_NAMES})


auto_registration.install()

__all__ = [
    "HEADS",
    "WEIGHTERS",
    "LossWeighter",
    "MTLConfig",
    "MTLImageProcessor",
    "MTLModel",
    "MTLModelOutput",
    "MTLPreTrainedModel",
    "TaskHead",
    "__version__",
]
