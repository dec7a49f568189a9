"""Task heads: the interface, its registry (entry-point group ``mtl_hf.heads``) and the built-in heads."""

from .base import HEADS, BackboneFeatures, BackboneSpec, HeadOptions, HeadOutput, TaskHead
from .binary_classification import BinaryClassificationHead, BinaryClassificationOptions
from .mae import MaskedAutoencoderHead, MaskedAutoencoderOptions
from .mim import MaskedImageModelingHead, MaskedImageModelingOptions
from .multiclass_classification import MulticlassClassificationHead, MulticlassClassificationOptions
from .multilabel_classification import MultilabelClassificationHead, MultilabelClassificationOptions
from .reconstruction import ReconstructionHead, ReconstructionOptions

__all__ = [
    "HEADS",
    "BackboneFeatures",
    "BackboneSpec",
    "BinaryClassificationHead",
    "BinaryClassificationOptions",
    "HeadOptions",
    "HeadOutput",
    "MaskedAutoencoderHead",
    "MaskedAutoencoderOptions",
    "MaskedImageModelingHead",
    "MaskedImageModelingOptions",
    "MulticlassClassificationHead",
    "MulticlassClassificationOptions",
    "MultilabelClassificationHead",
    "MultilabelClassificationOptions",
    "ReconstructionHead",
    "ReconstructionOptions",
    "TaskHead",
]
