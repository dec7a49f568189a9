"""Regression of one or several real-valued targets per image (e.g. a tumour's area fraction).

The head is a linear layer on pooled tokens, like the classification heads. It learns the target
standardised with the training split's mean and standard deviation (``target_mean`` / ``target_std``,
filled in from the training split when a run is set up and kept in the model's config), and predicts
in the target's original units, so a saved model needs nothing else to predict.

Its metrics come from additive per-sample statistics (:data:`STATISTICS`, per output): the coefficient
of determination R², the mean absolute error, the root mean squared error and Pearson's r. Sums of
them over any set of samples give the exact metrics, so they are exact when each process evaluates a
shard and get patient-bootstrap intervals on the test split by re-weighting per-patient sums.

``mtl-hf predict`` writes its predictions as ``values`` (not probabilities), and a volume's value per
output is the ``mean`` of its scored slices' by default (``volume_aggregation``: ``"sum"`` for a
per-slice quantity that adds up over a volume, ``"max"`` for the largest slice's).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from .base import HEADS, BackboneFeatures, BackboneSpec, HeadOutput, MetricSpec, PredictionSpec
from .classification import ClassificationOptions, LinearClassificationHead

RegressionLoss = Literal["mse", "l1", "smooth_l1"]
VolumeAggregation = Literal["mean", "sum", "max"]

STATISTICS = ("n", "sum_y", "sum_pred", "sum_y2", "sum_pred2", "sum_y_pred", "sum_abs_error", "sum_sq_error")
"""Per-sample statistics of one output: a count of 1 (0 where the target is missing), y, ŷ, y², ŷ², yŷ,
|y − ŷ| and (y − ŷ)²."""

METRICS = (
    MetricSpec("r2", higher_is_better=True, model_index="R²"),
    MetricSpec("mae", higher_is_better=False),
    MetricSpec("rmse", higher_is_better=False, model_index="RMSE"),
    MetricSpec("pearson", higher_is_better=True),
)
"""R² (1 − SSE / total sum of squares about the mean), MAE, RMSE and Pearson's r; several outputs
report the mean over outputs and each output's value as ``<metric>_<output>``."""


@dataclass(kw_only=True)
class RegressionOptions(ClassificationOptions):
    """Options of ``regression``.

    Attributes:
        num_outputs: Number of real values predicted per image (default 1); the target has that many
            columns.
        output_names: Optional names of the outputs (default ``0``, ``1``, ...), for metrics and predictions.
        loss: ``"mse"`` (default), ``"l1"`` or ``"smooth_l1"``, on the standardised target.
        smooth_l1_beta: Where smooth-L1 turns from quadratic to linear, in standard deviations (default 1.0).
        target_mean: Mean of each output over the training split; ``None`` (default) fills it in from the
            training split when a run is set up.
        target_std: Standard deviation of each output over the training split; ``None`` fills it in as
            ``target_mean`` (a constant output gets 1.0).
        selection_metric: Metric that selects the best model when this task is monitored: ``"rmse"``
            (default, lower is better), ``"mae"``, ``"r2"`` or ``"pearson"``.
        volume_aggregation: How ``mtl-hf predict`` forms a volume's value of each output from its scored
            slices' (empty slices are left out): ``"mean"`` (default), ``"sum"`` (e.g. a per-slice area
            summed over the volume) or ``"max"``.
        pooling: ``"cls"`` (default), ``"mean"`` or ``"cls+mean"``.
        dropout: Dropout before the linear layer (default 0.0).
    """

    num_outputs: int = 1
    output_names: list[str] | None = None
    loss: RegressionLoss = "mse"
    smooth_l1_beta: float = 1.0
    target_mean: list[float] | None = None
    target_std: list[float] | None = None
    selection_metric: Literal["rmse", "mae", "r2", "pearson"] = "rmse"
    volume_aggregation: VolumeAggregation = "mean"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_outputs < 1:
            raise ValueError(f"num_outputs must be at least 1, got {self.num_outputs}")
        if self.output_names is not None and len(self.output_names) != self.num_outputs:
            raise ValueError(
                f"output_names has {len(self.output_names)} names for {self.num_outputs} outputs"
            )
        if self.smooth_l1_beta <= 0:
            raise ValueError(f"smooth_l1_beta must be positive, got {self.smooth_l1_beta}")
        for name in ("target_mean", "target_std"):
            value = getattr(self, name)
            if value is not None and len(value) != self.num_outputs:
                raise ValueError(f"{name} has {len(value)} values for {self.num_outputs} outputs")
            if value is not None and not all(np.isfinite(value)):
                raise ValueError(f"{name} must be finite, got {value}")
        if self.target_std is not None and min(self.target_std) <= 0:
            raise ValueError(f"target_std must be positive, got {self.target_std}")


@HEADS.register("regression")
class RegressionHead(LinearClassificationHead):
    """``num_outputs`` real values per image; loss MSE, L1 or smooth-L1 on the standardised target.

    Labels: float ``(B, K)`` (``(B,)`` when ``K == 1``) in the target's units; NaN marks a missing value,
    which adds nothing to the loss or the metrics. Logits: ``(B, K)`` predictions in the target's units.
    """

    Options = RegressionOptions
    options: RegressionOptions
    target_kind = "continuous"
    hub_task = "image-regression"
    target_layout = "float32 (B, K), K = num_outputs; NaN where a value is missing"

    def __init__(self, task_name: str, options: RegressionOptions, backbone: BackboneSpec) -> None:
        super().__init__(task_name, options, backbone, num_outputs=options.num_outputs)

    def standardisation(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, std)`` of the target, ``(K,)`` each, from the options (the config records them; no
        weights do): the identity until set."""
        k = self.options.num_outputs
        mean = self.options.target_mean if self.options.target_mean is not None else [0.0] * k
        std = self.options.target_std if self.options.target_std is not None else [1.0] * k
        return torch.tensor(mean, device=device), torch.tensor(std, device=device)

    def output_names(self) -> list[str]:
        """``output_names`` of the options, else the task's name for one output and ``0, 1, ...``."""
        k = self.options.num_outputs
        return self.options.output_names or ([self.task_name] if k == 1 else [str(i) for i in range(k)])

    def predictions(self, logits: torch.Tensor) -> torch.Tensor:
        """The predicted values in the target's units, ``(B, K)``."""
        return logits.float().reshape(logits.shape[0], -1)

    def prediction_spec(self) -> PredictionSpec:
        """``values``, combined over a volume's slices by ``volume_aggregation``."""
        spec = super().prediction_spec()
        assert spec is not None  # predictions() is overridden
        return replace(spec, volume_rule=self.options.volume_aggregation)

    def fit_training_targets(self, targets: np.ndarray) -> dict[str, Any]:
        """Set ``target_mean`` / ``target_std`` from the training split's ``(N, K)`` targets (NaN
        ignored), unless the task's options give them; return the options to record in the config."""
        values = np.asarray(targets, dtype=np.float64).reshape(len(targets), -1)
        if values.shape[1] != self.options.num_outputs:
            raise self._label_error(
                f"the training split has {values.shape[1]} target columns, num_outputs is {self.options.num_outputs}"
            )
        updates: dict[str, Any] = {}
        finite = np.isfinite(values)
        if not finite.any(axis=0).all():
            missing = [self.output_names()[k] for k in np.flatnonzero(~finite.any(axis=0))]
            raise self._label_error(f"no value in the training split for output(s) {', '.join(missing)}")
        if self.options.target_mean is None:
            updates["target_mean"] = [float(np.nanmean(values[:, k])) for k in range(values.shape[1])]
        if self.options.target_std is None:
            std = [float(np.nanstd(values[:, k])) for k in range(values.shape[1])]
            updates["target_std"] = [s if s > 0 else 1.0 for s in std]
        for name, value in updates.items():
            setattr(self.options, name, value)
        return updates

    def check_labels(self, labels: torch.Tensor, batch_size: int) -> torch.Tensor:
        if not isinstance(labels, torch.Tensor):
            raise self._label_error(f"expected a tensor, got {type(labels).__name__}")
        if labels.shape[0] != batch_size:
            raise self._label_error(f"batch size {labels.shape[0]} does not match pixel_values' {batch_size}")
        if not labels.is_floating_point():
            raise self._label_error(f"expected float values, got dtype {labels.dtype}")
        k = self.options.num_outputs
        if labels.dim() == 1 and k == 1:
            labels = labels[:, None]
        if labels.dim() != 2 or labels.shape[1] != k:
            raise self._label_error(f"expected shape (B, {k}), got {tuple(labels.shape)}")
        if torch.isinf(labels).any():
            raise self._label_error("contain inf (NaN marks a missing value; inf is not a value)")
        return labels

    def labelled(self, labels: torch.Tensor) -> torch.Tensor:
        """A sample with a value for any of the outputs is labelled (its missing values add nothing)."""
        return torch.isfinite(labels.float().reshape(labels.shape[0], -1)).any(dim=1)

    def forward(self, features: BackboneFeatures, labels: torch.Tensor | None = None) -> HeadOutput:
        standardised = self.logits(features).float()
        mean, std = self.standardisation(standardised.device)
        prediction = standardised * std + mean
        loss = None
        if labels is not None:
            target = (labels.float() - mean) / std
            present = torch.isfinite(target)
            loss = self._loss(standardised[present], target[present])
        return HeadOutput(loss=loss, logits=prediction)

    def _loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.options.loss == "l1":
            return F.l1_loss(prediction, target)
        if self.options.loss == "smooth_l1":
            return F.smooth_l1_loss(prediction, target, beta=self.options.smooth_l1_beta)
        return F.mse_loss(prediction, target)

    # -- metrics ---------------------------------------------------------------------------------------
    def metric_specs(self) -> tuple[MetricSpec, ...]:
        chosen = self.options.selection_metric
        return tuple(MetricSpec(m.name, m.higher_is_better, m.name == chosen, m.model_index) for m in METRICS)

    def statistic_names(self) -> tuple[str, ...]:
        if self.options.num_outputs == 1:
            return STATISTICS
        return tuple(f"{s}_{name}" for name in self.output_names() for s in STATISTICS)

    def metric_statistics(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``(B, 8 K)``: :data:`STATISTICS` of each output (in float64), zero where the target is NaN."""
        y = self.check_labels(labels, labels.shape[0]).double()
        pred = logits.double().reshape(y.shape)
        present = torch.isfinite(y)
        y = torch.where(present, y, 0.0)
        pred = torch.where(present, pred, 0.0)
        error = pred - y
        stats = torch.stack(
            [present.double(), y, pred, y * y, pred * pred, y * pred, error.abs(), error * error], dim=-1
        )
        return stats.reshape(y.shape[0], -1)

    def metrics_from_sums(self, sums: torch.Tensor) -> dict[str, torch.Tensor]:
        """R², MAE, RMSE and Pearson's r from summed statistics (NaN where undefined: no sample, or a
        constant target for R² and r); for several outputs, their mean and each output's."""
        per_output = regression_metrics(sums.double().reshape(*sums.shape[:-1], -1, len(STATISTICS)))
        out = {name: values.mean(dim=-1) for name, values in per_output.items()}
        if self.options.num_outputs > 1:
            for k, output in enumerate(self.output_names()):
                out |= {f"{name}_{output}": values[..., k] for name, values in per_output.items()}
        return out


def regression_metrics(sums: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{r2, mae, rmse, pearson}`` of shape ``sums.shape[:-1]`` from ``(..., 8)`` sums of :data:`STATISTICS`."""
    n, sy, sp, syy, spp, syp, sae, sse = sums.unbind(-1)
    nan = torch.full_like(n, float("nan"))
    has = n > 0
    safe_n = torch.where(has, n, 1.0)
    total = syy - sy * sy / safe_n  # sum of squares about the mean
    var_y, var_p = n * syy - sy * sy, n * spp - sp * sp
    covariance = n * syp - sy * sp
    spread = var_y * var_p
    return {
        "r2": torch.where(has & (total > 0), 1.0 - sse / torch.where(total > 0, total, 1.0), nan),
        "mae": torch.where(has, sae / safe_n, nan),
        "rmse": torch.where(has, (sse / safe_n).sqrt(), nan),
        "pearson": torch.where(has & (spread > 0), covariance / spread.clamp_min(1e-300).sqrt(), nan),
    }
