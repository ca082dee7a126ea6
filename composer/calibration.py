"""Calibration of predicted probabilities: predicted against observed positive rate by bin, and
the expected calibration error (ECE).

The bins are equal-count bins of the sorted predictions (deciles by default), so every bin holds
about n / bins rows and no bin is empty where scores crowd into a narrow range, as a recommender's
low click rates make them. ``ECE = sum_b (n_b / n) |mean prediction_b - positive rate_b|``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Calibration:
    predicted: np.ndarray  # mean prediction per bin
    observed: np.ndarray  # positive rate per bin
    counts: np.ndarray  # rows per bin
    ece: float  # expected calibration error

    @property
    def n(self) -> int:
        return int(self.counts.sum())


def calibration(labels, scores, bins: int = 10) -> Calibration:
    """Calibration of ``scores`` against 0/1 ``labels`` in ``bins`` equal-count bins (fewer when
    there are fewer rows than bins). No rows: empty arrays and a NaN ECE."""
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(y) != len(s):
        raise ValueError(f"calibration: {len(y)} labels for {len(s)} scores")
    if len(y) == 0:
        empty = np.zeros(0)
        return Calibration(empty, empty, np.zeros(0, dtype=int), float("nan"))
    order = np.argsort(s, kind="stable")
    parts = np.array_split(order, min(bins, len(order)))
    predicted = np.array([s[p].mean() for p in parts])
    observed = np.array([y[p].mean() for p in parts])
    counts = np.array([len(p) for p in parts])
    ece = float(np.sum(counts / counts.sum() * np.abs(predicted - observed)))
    return Calibration(predicted, observed, counts, ece)
