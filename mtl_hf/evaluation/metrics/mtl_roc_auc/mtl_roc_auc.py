"""ROC AUC with patient-level bootstrap and DeLong confidence intervals, as a 🤗 evaluate metric.

Loaded by path (it ships inside the ``mtl-hf`` package, nothing is downloaded)::

    from mtl_hf.evaluation import load_metric
    metric = load_metric("binary")     # == evaluate.load("<site-packages>/mtl_hf/evaluation/metrics/mtl_roc_auc", "binary")
    metric.compute(references=[0, 1, 1, 0], predictions=[0.2, 0.9, 0.6, 0.4], groups=["p1", "p1", "p2", "p3"])

The statistics live in :mod:`mtl_hf.evaluation`; this module gives them evaluate's interface
(``add_batch`` / ``compute``, distributed gathering, ``evaluate.combine``).
"""

import datasets
import evaluate

from mtl_hf.evaluation.bootstrap import DEFAULT_RESAMPLES
from mtl_hf.evaluation.report import compare_scores, evaluate_scores
from mtl_hf.evaluation.score_layouts import DEFAULT_LAYOUT, SCORE_LAYOUTS, ScoreLayout

_DESCRIPTION = """
Area under the ROC curve (ROC AUC) for binary, multi-label (per label and macro) and multi-class
(one-vs-rest, macro) classification, with the uncertainty a medical-imaging paper has to report:

* a percentile bootstrap confidence interval that resamples *patients* (``groups``) with replacement,
  keeping all slices of each drawn patient, because slices of one patient are not independent;
  resamples holding a single class are skipped and counted;
* DeLong's confidence interval (fast DeLong of Sun & Xu 2014; Obuchowski's clustered variance when
  ``groups`` is given);
* optionally, the paired comparison with a second model's scores on the same samples
  (``predictions_b``): DeLong's test for two correlated AUCs and a paired patient-level bootstrap;
* PR AUC (average precision), and accuracy / sensitivity / specificity at a threshold that is either
  given or chosen on validation scores (Youden's J by default).

Configurations: the score layouts of ``mtl_hf.evaluation.score_layouts``: ``"binary"`` (default),
``"multilabel"``, ``"multiclass"``.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: scores (probabilities or logits; only their order matters).
        binary: one float per sample, the positive-class score. multilabel / multiclass: a list of
        K floats per sample.
    references: binary: 0/1 per sample. multilabel: a list of K 0/1 per sample. multiclass: the
        class index in [0, K) per sample.
    groups (list, optional): patient (group) id per sample, aligned with all predictions added so far
        (pass it to `compute`). Default: every sample is its own group.
    predictions_b (list, optional): a second model's scores for the same samples, for the paired
        comparison (A = `predictions`, B = `predictions_b`).
    confidence_level (float): level of all intervals. Default 0.95.
    n_resamples (int): bootstrap resamples. Default 2000; 0 skips the bootstrap.
    seed (int): bootstrap seed. Default 0.
    delong (bool): compute DeLong intervals / test. Default True.
    threshold (float, optional): decision threshold (binary only): a sample is positive when its score
        is >= threshold.
    validation_references, validation_predictions (lists, optional): validation split to choose the
        threshold on (binary only; exclusive with `threshold`).
    threshold_method (str): "youden" (default) or "closest_topleft".
Returns:
    roc_auc: macro ROC AUC (the AUC itself for binary).
    roc_auc_low, roc_auc_high: bootstrap percentile interval (NaN if n_resamples=0).
    roc_auc_se, roc_auc_delong_low, roc_auc_delong_high: DeLong standard error and interval (binary).
    roc_auc_per_label, roc_auc_per_label_low, roc_auc_per_label_high, roc_auc_per_label_delong_low,
    roc_auc_per_label_delong_high, pr_auc_per_label: per label / class lists (multilabel, multiclass).
    pr_auc: macro average precision.
    n_samples, n_groups, n_positive, n_negative, clustered, confidence_level, n_resamples,
    n_skipped_resamples: what the intervals rest on.
    threshold, accuracy, balanced_accuracy, sensitivity, specificity, ppv, npv: with a threshold.
    roc_auc_b, delta_roc_auc, delta_delong_low, delta_delong_high, delta_delong_p_value,
    delta_bootstrap_low, delta_bootstrap_high, delta_bootstrap_p_value: with `predictions_b`
    (DeLong keys for binary only).
Examples:
    >>> from mtl_hf.evaluation import load_metric
    >>> metric = load_metric("binary")
    >>> out = metric.compute(references=[0, 0, 1, 1], predictions=[0.1, 0.4, 0.35, 0.8], n_resamples=200)
    >>> round(out["roc_auc"], 2)
    0.75
"""

_CITATION = """
@article{delong1988comparing,
  title={Comparing the areas under two or more correlated receiver operating characteristic curves: a nonparametric approach},
  author={DeLong, Elizabeth R. and DeLong, David M. and Clarke-Pearson, Daniel L.},
  journal={Biometrics}, volume={44}, number={3}, pages={837--845}, year={1988}
}
@article{sun2014fast,
  title={Fast implementation of DeLong's algorithm for comparing the areas under correlated receiver operating characteristic curves},
  author={Sun, Xu and Xu, Weichao},
  journal={IEEE Signal Processing Letters}, volume={21}, number={11}, pages={1389--1393}, year={2014}
}
@article{obuchowski1997nonparametric,
  title={Nonparametric analysis of clustered ROC curve data},
  author={Obuchowski, Nancy A.},
  journal={Biometrics}, volume={53}, number={2}, pages={567--578}, year={1997}
}
@book{efron1994introduction,
  title={An Introduction to the Bootstrap},
  author={Efron, Bradley and Tibshirani, Robert J.},
  publisher={Chapman and Hall/CRC}, year={1994}
}
"""


def _features(layout: ScoreLayout) -> datasets.Features:
    """One sample's inputs in ``layout``: a score or a list of them, a reference or a list of them."""
    score, reference = datasets.Value("float64"), datasets.Value("int32")
    return datasets.Features(
        {
            "predictions": score if layout.single_score else datasets.Sequence(score),
            "references": datasets.Sequence(reference) if layout.references_per_column else reference,
        }
    )


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MtlRocAuc(evaluate.Metric):
    """ROC AUC with patient-level bootstrap and DeLong intervals (see the module docstring)."""

    def _info(self):
        task = self.task
        if task not in SCORE_LAYOUTS:
            raise ValueError(
                f"config_name: unknown configuration {self.config_name!r}; expected one of {sorted(SCORE_LAYOUTS)}"
            )
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=_features(SCORE_LAYOUTS[task]),
            reference_urls=[
                "https://doi.org/10.2307/2531595",
                "https://doi.org/10.1109/LSP.2014.2337313",
                "https://doi.org/10.2307/2533958",
            ],
            license="Apache-2.0",
        )

    @property
    def task(self) -> str:
        return self.config_name if self.config_name != "default" else DEFAULT_LAYOUT

    def _compute(
        self,
        predictions,
        references,
        groups=None,
        predictions_b=None,
        confidence_level=0.95,
        n_resamples=DEFAULT_RESAMPLES,
        seed=0,
        delong=True,
        threshold=None,
        validation_references=None,
        validation_predictions=None,
        threshold_method="youden",
    ):
        report = evaluate_scores(
            references,
            predictions,
            self.task,
            groups,
            confidence_level=confidence_level,
            n_resamples=n_resamples,
            seed=seed,
            delong=delong,
            threshold=threshold,
            validation_references=validation_references,
            validation_predictions=validation_predictions,
            threshold_method=threshold_method,
        )
        out = report.to_dict()
        if predictions_b is not None:
            comparison = compare_scores(
                references,
                predictions,
                predictions_b,
                self.task,
                groups,
                confidence_level=confidence_level,
                n_resamples=n_resamples,
                seed=seed,
                delong=delong,
            )
            out.update(comparison.to_dict())
        return out
