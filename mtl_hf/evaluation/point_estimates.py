"""Point estimates of ROC AUC and PR AUC (average precision) per binary column, from scikit-learn.

Macro averages are unweighted means over columns, matching scikit-learn's ``average="macro"`` for
multi-label inputs and ``multi_class="ovr"`` for multi-class ones. Computing each column with the binary
scorer (instead of handing the 2-D array to scikit-learn) keeps one code path for every task and lets
multi-class scores be logits as well as probabilities (scikit-learn's multi-class path insists that
rows sum to one, though the one-vs-rest AUC depends only on each column's ranking).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from .inputs import BinaryColumns


def roc_auc_per_column(columns: BinaryColumns) -> np.ndarray:
    """``(K,)`` ROC AUC of each column (ties count one half, as in the Mann-Whitney statistic)."""
    return np.array(
        [
            roc_auc_score(labels, scores)
            for labels, scores in zip(columns.labels, columns.scores, strict=True)
        ],
        dtype=np.float64,
    )


def average_precision_per_column(columns: BinaryColumns) -> np.ndarray:
    """``(K,)`` average precision (area under the precision-recall curve, step-wise) of each column."""
    return np.array(
        [
            average_precision_score(labels, scores)
            for labels, scores in zip(columns.labels, columns.scores, strict=True)
        ],
        dtype=np.float64,
    )
