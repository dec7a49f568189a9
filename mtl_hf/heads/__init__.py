"""Task heads: the interface, its registry (entry-point group ``mtl_hf.heads``) and the built-in heads."""

from .base import (
    HEADS,
    IGNORE_INDEX,
    BackboneFeatures,
    BackboneSpec,
    HeadOptions,
    HeadOutput,
    MetricSpec,
    PredictionSpec,
    TaskHead,
)
from .binary_classification import BinaryClassificationHead, BinaryClassificationOptions
from .errors import HeadOutputError
from .mae import MaskedAutoencoderHead, MaskedAutoencoderOptions
from .mim import MaskedImageModelingHead, MaskedImageModelingOptions
from .multiclass_classification import MulticlassClassificationHead, MulticlassClassificationOptions
from .multilabel_classification import MultilabelClassificationHead, MultilabelClassificationOptions
from .reconstruction import ReconstructionHead, ReconstructionOptions
from .regression import RegressionHead, RegressionOptions

__all__ = [
    "HEADS",
    "IGNORE_INDEX",
    "BackboneFeatures",
    "BackboneSpec",
    "BinaryClassificationHead",
    "BinaryClassificationOptions",
    "HeadOptions",
    "HeadOutput",
    "HeadOutputError",
    "MaskedAutoencoderHead",
    "MaskedAutoencoderOptions",
    "MaskedImageModelingHead",
    "MaskedImageModelingOptions",
    "MetricSpec",
    "MulticlassClassificationHead",
    "MulticlassClassificationOptions",
    "MultilabelClassificationHead",
    "MultilabelClassificationOptions",
    "PredictionSpec",
    "ReconstructionHead",
    "ReconstructionOptions",
    "RegressionHead",
    "RegressionOptions",
    "TaskHead",
]
