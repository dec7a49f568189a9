"""mtl-hf-segmentation: a lesion segmentation head for mtl-hf.

Installing the distribution registers the head ``segmentation`` with :data:`mtl_hf.HEADS` through the
``mtl_hf.heads`` entry point; nothing needs to be imported. This package also exposes the loss, the
Dice metric and the figure of example predictions for evaluation code.
"""

from .decoder import ProgressiveDecoder
from .figures import ExamplePanel, plot_segmentation_examples
from .head import SegmentationHead, SegmentationOptions, default_layers
from .losses import dice_bce_loss, soft_dice_loss
from .metrics import dice_from_sums, dice_per_image, dice_statistics, segmentation_metrics

__version__ = "0.1.0"

__all__ = [
    "ExamplePanel",
    "ProgressiveDecoder",
    "SegmentationHead",
    "SegmentationOptions",
    "__version__",
    "default_layers",
    "dice_bce_loss",
    "dice_from_sums",
    "dice_per_image",
    "dice_statistics",
    "plot_segmentation_examples",
    "segmentation_metrics",
    "soft_dice_loss",
]
