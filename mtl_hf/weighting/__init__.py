"""Loss weighters: the interface, its registry (entry-point group ``mtl_hf.weighters``) and built-ins."""

from .base import WEIGHTERS, BackwardContext, LossWeighter, WeightedLoss, WeighterOptions
from .fixed import FixedWeights, FixedWeightsOptions

__all__ = [
    "WEIGHTERS",
    "BackwardContext",
    "FixedWeights",
    "FixedWeightsOptions",
    "LossWeighter",
    "WeightedLoss",
    "WeighterOptions",
]
