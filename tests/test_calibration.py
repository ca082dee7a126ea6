"""Calibration by equal-count bins and the expected calibration error, checked by hand."""
import numpy as np
import pytest

from composer.calibration import calibration


def test_deciles_and_ece_by_hand():
    scores = np.arange(20) / 20  # 0.00 .. 0.95, two rows per decile
    labels = np.array([0, 0, 0, 1] * 5)
    cal = calibration(labels, scores)
    assert list(cal.counts) == [2] * 10 and cal.n == 20
    np.testing.assert_allclose(cal.predicted, [(2 * b + 0.5) / 20 for b in range(10)])
    np.testing.assert_allclose(cal.observed, [0.0, 0.5] * 5)
    assert cal.ece == pytest.approx(np.mean(np.abs(cal.predicted - cal.observed)))


def test_a_calibrated_score_has_a_small_ece_and_a_shifted_one_a_large_one():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 200_000)
    y = (rng.uniform(0, 1, len(p)) < p).astype(int)
    assert calibration(y, p).ece < 0.01
    assert calibration(y, p * 0.5).ece == pytest.approx(0.25, abs=0.01)


def test_fewer_rows_than_bins_and_no_rows():
    cal = calibration([1, 0, 1], [0.9, 0.2, 0.6])
    assert list(cal.counts) == [1, 1, 1]
    assert np.isnan(calibration([], []).ece)
    with pytest.raises(ValueError):
        calibration([1, 0], [0.5])
