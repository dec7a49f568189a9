"""Loss weighters: the interface, its registry (entry-point group ``mtl_hf.weighters``) and built-ins.

Built in (``weighting: {type: <name>, ...}``):

* loss-based: ``fixed``, ``uncertainty`` (Kendall et al. 2018), ``dwa`` (Liu et al. 2019),
  ``rlw`` (Lin et al. 2022), ``famo`` (Liu et al. 2023);
* gradient-based: ``gradnorm`` (Chen et al. 2018), ``pcgrad`` (Yu et al. 2020), ``mgda`` (Sener &
  Koltun 2018; MGDA-UB with ``gradients: features``), ``cagrad`` (Liu et al. 2021), ``nash_mtl``
  (Navon et al. 2022).

See :mod:`mtl_hf.weighting.base` for the training loop's calling protocol.
"""

from .base import (
    WEIGHTERS,
    BackwardContext,
    LossWeighter,
    SeparableWeighter,
    WeightedLoss,
    WeighterOptions,
)
from .cagrad import CAGrad, CAGradOptions
from .dwa import DynamicWeightAverage, DynamicWeightAverageOptions
from .famo import FAMO, FAMOOptions
from .features import SharedFeatureRecorder
from .fixed import FixedWeights, FixedWeightsOptions
from .gradient import GradientWeighter, GradientWeighterOptions
from .gradnorm import GradNorm, GradNormOptions
from .mgda import MGDA, MGDAOptions
from .nash_mtl import NashMTL, NashMTLOptions
from .pcgrad import PCGrad, PCGradOptions
from .plotting import plot_weights
from .rlw import RandomLossWeighting, RandomLossWeightingOptions
from .uncertainty import UncertaintyWeighting, UncertaintyWeightingOptions

__all__ = [
    "FAMO",
    "MGDA",
    "WEIGHTERS",
    "BackwardContext",
    "CAGrad",
    "CAGradOptions",
    "DynamicWeightAverage",
    "DynamicWeightAverageOptions",
    "FAMOOptions",
    "FixedWeights",
    "FixedWeightsOptions",
    "GradNorm",
    "GradNormOptions",
    "GradientWeighter",
    "GradientWeighterOptions",
    "LossWeighter",
    "MGDAOptions",
    "NashMTL",
    "NashMTLOptions",
    "PCGrad",
    "PCGradOptions",
    "RandomLossWeighting",
    "RandomLossWeightingOptions",
    "SeparableWeighter",
    "SharedFeatureRecorder",
    "UncertaintyWeighting",
    "UncertaintyWeightingOptions",
    "WeightedLoss",
    "WeighterOptions",
    "plot_weights",
]
