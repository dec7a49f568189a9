"""mtl-hf: multi-task learning for medical images on the Hugging Face stack.

Importing the package registers :class:`MTLConfig`, :class:`MTLModel` and :class:`MTLImageProcessor`
with transformers' ``AutoConfig``, ``AutoModel`` and ``AutoImageProcessor`` (``model_type="mtl_vit"``),
so saved models load with ``AutoModel.from_pretrained`` and no ``trust_remote_code``.
"""

from transformers import AutoConfig, AutoImageProcessor, AutoModel

from .configuration_mtl import MTLConfig
from .heads import HEADS, TaskHead
from .image_processing_mtl import MTLImageProcessor
from .modeling_mtl import MTLModel, MTLModelOutput, MTLPreTrainedModel
from .weighting import WEIGHTERS, LossWeighter

__version__ = "0.1.0"

AutoConfig.register(MTLConfig.model_type, MTLConfig, exist_ok=True)
AutoModel.register(MTLConfig, MTLModel, exist_ok=True)
AutoImageProcessor.register(
    MTLConfig,
    image_processor_classes={"pil": MTLImageProcessor, "torchvision": MTLImageProcessor},
    exist_ok=True,
)


def _register_pipeline() -> None:
    # The "mtl-image-classification" pipeline, so `pipeline(..., model=...)` works after `import mtl_hf`.
    from .inference.pipeline import register_pipeline

    register_pipeline()


_register_pipeline()

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
