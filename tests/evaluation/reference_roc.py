"""Independent reference implementations for the evaluation tests.

Written from the original papers' definitions with explicit loops over (positive, negative) pairs, so
they share nothing with the midrank (Sun & Xu) implementation under test.
"""

from __future__ import annotations

import math

import numpy as np


def psi_matrix(positive_scores: np.ndarray, negative_scores: np.ndarray) -> np.ndarray:
    """Mann-Whitney kernel psi(x, y) = 1 if x > y, 1/2 if x == y, 0 otherwise, by double loop."""
    out = np.zeros((len(positive_scores), len(negative_scores)))
    for i, x in enumerate(positive_scores):
        for j, y in enumerate(negative_scores):
            out[i, j] = 1.0 if x > y else 0.5 if x == y else 0.0
    return out


def delong_1988(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and covariance matrix of k scores (rows of ``scores``) by DeLong et al. (1988), eq. for S.

    V10_r(X_i) = mean_j psi(X_i, Y_j), V01_r(Y_j) = mean_i psi(X_i, Y_j);
    S10[r, s] = sum_i (V10_r(X_i) - A_r)(V10_s(X_i) - A_s) / (m - 1), likewise S01 over negatives;
    S = S10 / m + S01 / n.
    """
    scores = np.atleast_2d(scores)
    y = np.asarray(labels).astype(bool)
    k = scores.shape[0]
    m, n = int(y.sum()), int((~y).sum())
    v10 = np.zeros((k, m))
    v01 = np.zeros((k, n))
    auc = np.zeros(k)
    for r in range(k):
        psi = psi_matrix(scores[r, y], scores[r, ~y])
        auc[r] = psi.sum() / (m * n)
        v10[r] = psi.sum(axis=1) / n
        v01[r] = psi.sum(axis=0) / m
    s10 = np.zeros((k, k))
    s01 = np.zeros((k, k))
    for r in range(k):
        for s in range(k):
            s10[r, s] = sum((v10[r, i] - auc[r]) * (v10[s, i] - auc[s]) for i in range(m)) / (m - 1)
            s01[r, s] = sum((v01[r, j] - auc[r]) * (v01[s, j] - auc[s]) for j in range(n)) / (n - 1)
    return auc, s10 / m + s01 / n


def obuchowski_1997(labels: np.ndarray, scores: np.ndarray, clusters: np.ndarray) -> tuple[float, float]:
    """AUC and its variance for clustered data (Obuchowski 1997, Biometrics 53: 567-578), by loops.

    V10(X_ij) = (1/N) sum over all negatives psi(X_ij, Y); V10(X_i.) = sum over the positives of cluster i;
    S10 = I10 / ((I10 - 1) M) sum_i (V10(X_i.) - m_i A)^2, S01 likewise,
    S11 = I / (I - 1) sum_i (V10(X_i.) - m_i A)(V01(Y_i.) - n_i A),
    var = S10 / M + S01 / N + 2 S11 / (M N).
    """
    y = np.asarray(labels).astype(bool)
    pos_idx, neg_idx = np.flatnonzero(y), np.flatnonzero(~y)
    big_m, big_n = len(pos_idx), len(neg_idx)
    psi = psi_matrix(scores[pos_idx], scores[neg_idx])
    auc = psi.sum() / (big_m * big_n)
    ids = list(dict.fromkeys(clusters.tolist()))
    v10_c, v01_c, m_c, n_c = [], [], [], []
    for cid in ids:
        in_c = clusters == cid
        v10 = sum(psi[a].sum() / big_n for a, i in enumerate(pos_idx) if in_c[i])
        v01 = sum(psi[:, b].sum() / big_m for b, j in enumerate(neg_idx) if in_c[j])
        v10_c.append(v10)
        v01_c.append(v01)
        m_c.append(int(in_c[pos_idx].sum()))
        n_c.append(int(in_c[neg_idx].sum()))
    i10 = sum(1 for v in m_c if v > 0)
    i01 = sum(1 for v in n_c if v > 0)
    big_i = len(ids)
    s10 = i10 / ((i10 - 1) * big_m) * sum((v - mi * auc) ** 2 for v, mi in zip(v10_c, m_c, strict=True))
    s01 = i01 / ((i01 - 1) * big_n) * sum((v - ni * auc) ** 2 for v, ni in zip(v01_c, n_c, strict=True))
    s11 = (
        big_i
        / (big_i - 1)
        * sum((a - mi * auc) * (b - ni * auc) for a, b, mi, ni in zip(v10_c, v01_c, m_c, n_c, strict=True))
    )
    return auc, s10 / big_m + s01 / big_n + 2 * s11 / (big_m * big_n)


def normal_two_sided_p(z: float) -> float:
    """Two-sided normal p-value via the complementary error function (not scipy)."""
    return math.erfc(abs(z) / math.sqrt(2.0))
