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

from typing import TYPE_CHECKING

from . import auto_registration
from .lazy_exports import lazy_exports

__version__ = "0.1.0"

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        ".configuration_mtl": ("MTLConfig",),
        ".heads": ("HEADS", "TaskHead"),
        ".image_processing_mtl": ("MTLImageProcessor",),
        ".modeling_mtl": ("MTLModel", "MTLModelOutput", "MTLPreTrainedModel"),
        ".weighting": ("WEIGHTERS", "LossWeighter"),
    },
)

if TYPE_CHECKING:
    from .configuration_mtl import MTLConfig
    from .heads import HEADS, TaskHead
    from .image_processing_mtl import MTLImageProcessor
    from .modeling_mtl import MTLModel, MTLModelOutput, MTLPreTrainedModel
    from .weighting import WEIGHTERS, LossWeighter


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
