"""The task-head interface and its registry.

A head is a small ``nn.Module`` that reads the shared backbone's features, produces its task's
output (logits, a reconstruction, a segmentation map) and, given labels, its loss. The model knows
heads only through this interface; it never branches on a head's name.

What a head declares about itself (class attributes):

* ``Options``: a dataclass of its hyperparameters (validated by :func:`mtl_hf.options.from_dict`);
* ``view``: ``"clean"`` (the unmasked image), ``"masked"`` (the image with ``bool_masked_pos``
  applied, for masked image modeling) or ``"visible"`` (only the prefix tokens and the patches that
  ``bool_masked_pos`` leaves visible go through the encoder layers, for MAE-style heads; every sample
  must keep the same number of visible patches);
* ``requires_labels``: ``False`` for self-supervised heads, which then run without labels;
* ``requires_hidden_states``: ``True`` if it reads intermediate layers (e.g. a UNETR-style decoder).
* ``target_kind``: the kind of data target it consumes (``"binary"``, ``"multiclass"``,
  ``"multilabel"``, ``"continuous"``, ``"mask"``; ``None`` for self-supervised heads) and
  ``target_layout``: the dtype and shape of the labels it receives in a batch (``docs/plugins.md``
  has the table);
* ``prediction_kind``: how classification logits are scored (ROC AUC, probabilities), or ``None``;
* :meth:`TaskHead.predictions` and :meth:`TaskHead.prediction_spec`: the per-sample values it predicts
  (a classifier's probabilities, a regression's values), how ``mtl-hf predict``, the app and an ONNX
  export name and group them (:class:`PredictionSpec`), and :meth:`TaskHead.aggregate_volume`: how the
  slices of a volume combine into the volume's values;
* :meth:`TaskHead.metric_specs`: the metrics it reports, each a :class:`MetricSpec` saying whether
  higher or lower is better, which one selects the best model by default, and which go into the model
  card's ``model-index``. Heads other than classifiers compute them from additive per-sample
  statistics (:meth:`TaskHead.metric_statistics` and :meth:`TaskHead.metrics_from_sums`), so that
  they are exact under distributed evaluation and get patient-level bootstrap intervals on the test
  split.

Third-party heads register through the ``mtl_hf.heads`` entry-point group (see the README's plugin
guide) or, in a script, with ``@HEADS.register("name")``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, cast

import numpy as np
import torch
from torch import nn

from ..missing_labels import IGNORE_INDEX
from ..options import from_dict
from ..registry import Registry
from .volume_rules import VOLUME_RULES, aggregate_slices

View = Literal["clean", "masked", "visible"]
PredictionKey = Literal["probabilities", "values"]


@dataclass(frozen=True)
class BackboneSpec:
    """What a head may know about the backbone it sits on."""

    hidden_size: int
    patch_size: int
    num_channels: int
    num_hidden_layers: int
    image_size: tuple[int, int]


@dataclass
class BackboneFeatures:
    """One backbone pass, as heads see it.

    Attributes:
        last_hidden_state: ``(B, P + N, D)`` final-layer tokens after the backbone's last layer norm,
            ``P`` prefix tokens (CLS, registers) then ``N`` patch tokens in row-major grid order.
        num_prefix_tokens: ``P``; the CLS token is always index 0.
        grid_size: ``(h, w)`` patch grid, ``h * w == N``.
        pixel_values: ``(B, C, H, W)`` the normalised input of this view (unmasked pixels even for
            the masked view: they are the reconstruction target).
        bool_masked_pos: ``(B, N)`` masked patches of this view, or ``None`` for the clean view.
        hidden_states: every layer's tokens (embeddings first) when asked for, else ``None``.
        visible_indices: ``(B, V)`` for the visible view only: the grid positions (ascending) of the
            ``V`` patch tokens that follow the prefix in ``last_hidden_state``; ``None`` for the other
            views, whose patch tokens cover the whole grid (so :meth:`patch_map` needs a full view).
        selected_from: For features made by :meth:`select`, the whole batch's ``last_hidden_state`` the
            rows come from (``None`` otherwise): the tensor a gradient-based weighter compares the tasks'
            gradients on (:class:`~mtl_hf.weighting.SharedFeatureRecorder`), the same for every task
            whichever samples each has labels for.
    """

    last_hidden_state: torch.Tensor
    num_prefix_tokens: int
    grid_size: tuple[int, int]
    pixel_values: torch.Tensor
    bool_masked_pos: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    visible_indices: torch.Tensor | None = None
    selected_from: torch.Tensor | None = None

    @property
    def cls_token(self) -> torch.Tensor:
        return self.last_hidden_state[:, 0]

    @property
    def patch_tokens(self) -> torch.Tensor:
        return self.last_hidden_state[:, self.num_prefix_tokens :]

    def patch_map(self, tokens: torch.Tensor | None = None) -> torch.Tensor:
        """Patch tokens (of the last layer, or ``tokens`` with prefix) as a ``(B, D, h, w)`` map."""
        if self.visible_indices is not None:
            raise ValueError(
                "patch_map needs every patch token; the visible view holds only the visible ones"
            )
        x = self.patch_tokens if tokens is None else tokens[:, self.num_prefix_tokens :]
        b, _n, d = x.shape
        h, w = self.grid_size
        return x.transpose(1, 2).reshape(b, d, h, w)

    def select(self, rows: torch.Tensor) -> BackboneFeatures:
        """The same features for a subset of the batch: ``rows`` is a ``(B,)`` bool mask or a 1-D index
        tensor, applied to every per-sample tensor (hidden states included); the model uses it to compute
        a task's loss over the samples that carry its label."""
        return BackboneFeatures(
            last_hidden_state=self.last_hidden_state[rows],
            num_prefix_tokens=self.num_prefix_tokens,
            grid_size=self.grid_size,
            pixel_values=self.pixel_values[rows],
            bool_masked_pos=None if self.bool_masked_pos is None else self.bool_masked_pos[rows],
            hidden_states=None
            if self.hidden_states is None
            else tuple(cast(torch.Tensor, None) if h is None else h[rows] for h in self.hidden_states),
            visible_indices=None if self.visible_indices is None else self.visible_indices[rows],
            selected_from=self.last_hidden_state if self.selected_from is None else self.selected_from,
        )


@dataclass
class HeadOutput:
    """What a head returns: its loss when labels (or self-supervision) allow, and its prediction."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    reconstruction: torch.Tensor | None = None


@dataclass(frozen=True)
class MetricSpec:
    """One metric a head reports.

    Attributes:
        name: Its key in validation logs (``<name>/<task>``), ``test_metrics.json`` and tables.
        higher_is_better: ``False`` for errors (RMSE, MAE): model selection and tables honour it.
        selects: Whether it selects the best model by default when the head's task is monitored.
        model_index: Its display name in the model card's ``model-index``; ``None`` keeps it out.
    """

    name: str
    higher_is_better: bool = True
    selects: bool = False
    model_index: str | None = None


@dataclass(frozen=True)
class PredictionSpec:
    """What a head's per-sample predictions are, and how they are written and combined over a volume.

    Attributes:
        key: ``"probabilities"`` (class probabilities, in [0, 1]) or ``"values"`` (real values in the
            target's units: a regression's, a count's). ``predictions.json`` groups each image's and
            volume's predictions under this key, the app draws probabilities as bars, and an ONNX
            export's ``onnx_outputs.json`` records it.
        outputs: The names of the ``K`` outputs (:meth:`TaskHead.output_names`), in column order.
        columns: The ``predictions.csv`` / ``volume_predictions.csv`` column of each output: the task's
            name for a single output named after the task, else ``<task>/<output>``.
        volume_rule: How :meth:`TaskHead.aggregate_volume` combines a volume's slice predictions:
            ``None`` applies the rule the user asks for (``predict``'s ``aggregation`` and ``top_k``,
            made for "is it anywhere in the volume" probabilities); else the head's own rule, one of
            ``"topk_mean"``, ``"max"``, ``"mean"``, ``"sum"`` (:mod:`mtl_hf.heads.volume_rules`), or
            the name of a rule the head implements by overriding :meth:`TaskHead.aggregate_volume`.
            ``predictions.json`` records the rule applied to each task.
    """

    key: PredictionKey
    outputs: tuple[str, ...]
    columns: tuple[str, ...]
    volume_rule: str | None = None


@dataclass
class HeadOptions:
    """Base of every head's options dataclass (no options)."""


class TaskHead(nn.Module, ABC):
    """Base class of task heads.

    Args:
        task_name: The user's name for the task (used in error messages and outputs).
        options: An instance of the head's ``Options`` dataclass.
        backbone: Facts about the shared backbone.
    """

    Options: ClassVar[type[HeadOptions]] = HeadOptions
    view: ClassVar[View] = "clean"
    requires_labels: ClassVar[bool] = True
    requires_hidden_states: ClassVar[bool] = False
    prediction_kind: ClassVar[Literal["binary", "multiclass", "multilabel"] | None] = None
    """How to score this head's logits (ROC AUC, probabilities); ``None`` for non-classification heads."""
    target_kind: ClassVar[str | None] = None
    """The data kind of the target this head consumes (``"binary"``, ``"multiclass"``, ``"multilabel"``,
    ``"continuous"``, ``"mask"``, or a plugin's own); ``None`` for a self-supervised head."""
    target_layout: ClassVar[str] = ""
    """The dtype and shape of the labels the head receives in a batch, in words (for docs and errors)."""
    hub_task: ClassVar[str | None] = None
    """The Hugging Face task type of this head (``"image-classification"``, ``"image-segmentation"``):
    the model card's tags and the task of its ``model-index`` entries; ``None`` for none."""
    metric_statistic_names: ClassVar[tuple[str, ...]] = ()
    """Names of the columns of :meth:`metric_statistics` (``test_statistics.csv`` headers); a head
    whose columns depend on its options overrides :meth:`statistic_names` instead."""
    registered_name: ClassVar[str]

    def __init__(self, task_name: str, options: HeadOptions, backbone: BackboneSpec) -> None:
        super().__init__()
        self.task_name = task_name
        self.options = options
        self.backbone = backbone

    @classmethod
    def parse_options(cls, task_name: str, raw: Mapping[str, Any]) -> HeadOptions:
        """Validate a task's options (everything but ``type``); errors name ``tasks.<task_name>.<key>``."""
        return from_dict(cls.Options, raw, f"tasks.{task_name}")

    def init_parameters(self) -> None:
        """Initialise parameters the model's generic scheme does not cover (plain ``nn.Parameter``s).

        The model initialises every ``nn.Linear``, ``nn.Conv2d`` and norm layer of a head itself. Use the
        ``transformers.initialization`` functions here: they leave weights loaded from a checkpoint alone.
        """

    def check_labels(self, labels: torch.Tensor, batch_size: int) -> torch.Tensor:
        """Validate and normalise this task's labels; raise ``ValueError`` naming the task otherwise.

        A sample without a label for this task (NaN in float labels, :data:`IGNORE_INDEX` in integer
        ones) is valid: only the labelled rows (:meth:`labelled`) are held to the head's rules."""
        return labels

    def labelled(self, labels: torch.Tensor) -> torch.Tensor:
        """``(B,)`` bool: which samples of ``labels`` (as :meth:`check_labels` returned them) carry a
        label for this task.

        Default: float labels, every value of the sample is finite (NaN marks a missing label); integer
        labels, every value differs from :data:`IGNORE_INDEX`; bool labels, every sample. The model
        computes the task's loss over these samples only, and evaluation its metrics; a head whose
        targets mark missing values otherwise overrides it.
        """
        if labels.dtype == torch.bool:
            return torch.ones(labels.shape[0], dtype=torch.bool, device=labels.device)
        present = torch.isfinite(labels) if labels.is_floating_point() else labels != IGNORE_INDEX
        return present.reshape(labels.shape[0], -1).all(dim=1)

    def sample_mask(
        self,
        batch_size: int,
        grid_size: tuple[int, int],
        device: torch.device,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Draw ``bool_masked_pos`` ``(B, h*w)`` for a masked-view head (from ``generator`` or torch's
        global RNG); clean-view heads need none."""
        raise NotImplementedError(f"head {type(self).__name__} does not draw masks")

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Turn this head's logits into probabilities (sigmoid or softmax by ``prediction_kind``)."""
        if self.prediction_kind == "multiclass":
            return logits.float().softmax(dim=-1)
        if self.prediction_kind in ("binary", "multilabel"):
            return logits.float().sigmoid()
        raise NotImplementedError(f"head {type(self).__name__} does not produce class probabilities")

    def output_names(self) -> list[str]:
        """Names of the per-sample values :meth:`predictions` gives, in its column order (default: one,
        named after the task). ``test_predictions.csv`` and ``mtl-hf predict`` name their columns so."""
        return [self.task_name]

    def predictions(self, logits: torch.Tensor) -> torch.Tensor | None:
        """``(B, K)`` float per-sample predictions, one column per :meth:`output_names` entry, that
        ``test_predictions.csv`` and ``mtl-hf predict`` write: a classifier's probabilities, a
        regression's values. ``None`` for heads without per-sample values (masked image modeling; a
        segmentation head gives masks through :meth:`segmentation_masks`)."""
        if self.prediction_kind is None and type(self).probabilities is TaskHead.probabilities:
            return None  # neither a classifier nor a head with its own probabilities
        p = self.probabilities(logits)
        return p[:, None] if p.dim() == 1 else p

    def prediction_spec(self) -> PredictionSpec | None:
        """What :meth:`predictions` gives and how it is written (:class:`PredictionSpec`); ``None`` for a
        head without per-sample predictions.

        Default: a classifier (``prediction_kind``) or a head with its own :meth:`probabilities` gives
        ``"probabilities"`` combined over a volume by the user's rule; a head that overrides only
        :meth:`predictions` gives ``"values"`` combined by their ``"mean"`` over the volume's slices.
        Override it (e.g. with :func:`dataclasses.replace` of this default) to change the key or the
        volume rule."""
        own = {
            n for n in ("predictions", "probabilities") if getattr(type(self), n) is not getattr(TaskHead, n)
        }
        if self.prediction_kind is None and not own:
            return None
        is_probability = self.prediction_kind is not None or "probabilities" in own
        outputs = tuple(str(n) for n in self.output_names())
        single = outputs == (self.task_name,)
        return PredictionSpec(
            key="probabilities" if is_probability else "values",
            outputs=outputs,
            columns=outputs if single else tuple(f"{self.task_name}/{n}" for n in outputs),
            volume_rule=None if is_probability else "mean",
        )

    def aggregate_volume(
        self, slice_predictions: np.ndarray, aggregation: str = "topk_mean", top_k: int = 3
    ) -> np.ndarray:
        """``(K,)`` predictions of a volume from the ``(S, K)`` :meth:`predictions` of its ``S`` scored
        slices (or frames), each output on its own.

        ``aggregation`` and ``top_k`` are the rule the user asked for; the default applies the
        :class:`PredictionSpec`'s ``volume_rule`` when it names one, else the user's. A head with a rule
        of its own (a count summed over slices, a quantity weighted by slice thickness) overrides this
        method and names the rule in its spec's ``volume_rule``."""
        spec = self.prediction_spec()
        rule = (spec.volume_rule if spec is not None else None) or aggregation
        if rule not in VOLUME_RULES:
            raise NotImplementedError(
                f"head {type(self).__name__} (task {self.task_name!r}) names the volume rule {rule!r}: "
                f"override aggregate_volume to apply it, or name one of {', '.join(VOLUME_RULES)}"
            )
        return aggregate_slices(slice_predictions, rule, top_k)

    def probability_activation(self) -> str | None:
        """The function an exported graph's consumer applies to this head's logits to get
        :meth:`predictions` (``"sigmoid"``, ``"softmax"``), ``None`` when the logits are the
        predictions themselves (regression) or the head has none."""
        return {"binary": "sigmoid", "multilabel": "sigmoid", "multiclass": "softmax"}.get(
            self.prediction_kind or ""
        )

    def label_columns(self, labels: torch.Tensor) -> torch.Tensor:
        """``(B, K)`` float labels aligned with :meth:`predictions` (written beside them in
        ``test_predictions.csv``); default: the labels as they are, one column per value."""
        return labels.float().reshape(labels.shape[0], -1)

    def metric_specs(self) -> tuple[MetricSpec, ...]:
        """The metrics this head reports on the validation and test splits (empty: none, as for masked
        image modeling). A classifier (``prediction_kind``) reports ROC AUC, which selects the model."""
        if self.prediction_kind is not None:
            return (MetricSpec("roc_auc", higher_is_better=True, selects=True, model_index="ROC AUC"),)
        return ()

    def selection_metric(self) -> MetricSpec | None:
        """The metric that picks the best model when this task is monitored: the spec marked
        ``selects``, else the first; ``None`` when the head reports none."""
        specs = self.metric_specs()
        return next((m for m in specs if m.selects), specs[0] if specs else None)

    def statistic_names(self) -> tuple[str, ...]:
        """Names of the columns of :meth:`metric_statistics` (default ``metric_statistic_names``)."""
        return self.metric_statistic_names

    def fit_training_targets(self, targets: Any) -> dict[str, Any]:
        """Adapt the head to its task's targets in the training split (``(N, ...)`` array, NaN where a
        sample has none), when a run is set up; return the options it set, which the run records in
        the model's config so that a saved model carries them. Default: nothing to fit."""
        return {}

    def metric_statistics(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``(B, S)`` per-sample statistics whose sums over any set of samples determine the metrics.

        Heads whose :meth:`metric_specs` are not ROC AUC implement it. Additive statistics (a per-image Dice and a
        count of 1, overlap and mask sizes, ...) are what make the metrics exact when each process
        evaluates a shard, and cheap to bootstrap over patients: a resample is a weighted sum of them.
        """
        raise NotImplementedError(f"head {type(self).__name__} computes no metric statistics")

    def metrics_from_sums(self, sums: torch.Tensor) -> dict[str, torch.Tensor]:
        """The metrics of :meth:`metric_specs` from ``(..., S)`` sums of :meth:`metric_statistics` rows; every
        leading dimension (bootstrap resamples) is kept, so each value has shape ``sums.shape[:-1]``."""
        raise NotImplementedError(f"head {type(self).__name__} computes no metric statistics")

    def segmentation_masks(self, logits: torch.Tensor) -> torch.Tensor | None:
        """``(B, H, W)`` bool masks from this head's per-pixel ``logits`` (at any size), for heads that
        segment; ``None`` otherwise. ``mtl-hf predict`` writes them next to the inputs' probabilities
        (:mod:`mtl_hf.inference.masks`)."""
        return None

    def plot_examples(
        self, pixel_values: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, path: Path
    ) -> bool:
        """Draw this head's predictions on a few test images into the PNG ``path``; return whether a
        figure was drawn (the base class draws none).

        A training run calls it once, with the first test batch (normalised ``pixel_values``, the
        head's ``logits`` and the task's labels), and writes ``plots/<task>_test_examples.png``: a
        segmentation head overlays predicted and true masks, which says more than a Dice score.
        """
        return False

    @abstractmethod
    def forward(self, features: BackboneFeatures, labels: torch.Tensor | None = None) -> HeadOutput:
        """Compute the prediction and, when ``labels`` are given (or not required), the loss."""

    def _label_error(self, message: str) -> ValueError:
        return ValueError(f"labels for task {self.task_name!r} ({self.registered_name}): {message}")


HEADS: Registry[type[TaskHead]] = Registry(
    "head", "mtl_hf.heads", base=TaskHead, arguments=("task_name", "options", "backbone")
)
"""Registry of task-head classes, extensible through the ``mtl_hf.heads`` entry-point group."""
