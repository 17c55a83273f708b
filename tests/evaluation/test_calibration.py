"""The calibration measures (mmfunmatch/evaluation/calibration.py): against
hand computations, and the label-smoothing rule on synthetic logits (on two
trained teachers: tests/projects/funmatch_paper/test_teacher_report.py)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmfunmatch.evaluation.calibration import (
    calibration, expected_calibration_error, fit_temperature,
    label_smoothing_fingerprint, nll, recommend_tau, reliability_bins)


def two_class_logits(p: float) -> list:
    """Logits whose softmax gives class 0 probability ``p``."""
    return [math.log(p / (1 - p)), 0.0]


# -- calibration -------------------------------------------------------------
def test_ece_matches_hand_computation():
    # Confidences 0.95, 0.95 (one right, one wrong) and 0.55, 0.55 (both
    # right): ECE = 0.5 * |0.5 - 0.95| + 0.5 * |1 - 0.55| = 0.45.
    logits = torch.tensor([two_class_logits(0.95)] * 2 +
                          [two_class_logits(0.55)] * 2)
    labels = torch.tensor([0, 1, 0, 0])
    probs = logits.softmax(1)
    # Identities; float32 softmax is off by a few ulp (~1e-7), far inside
    # approx's default 1e-6 relative.
    assert expected_calibration_error(probs, labels) == pytest.approx(0.45)
    bins = reliability_bins(probs, labels)
    # 0.95 lies in (14/15, 1], 0.55 in (8/15, 9/15].
    assert bins['count'].tolist() == [0] * 8 + [2] + [0] * 5 + [2]
    assert bins['accuracy'][14] == pytest.approx(0.5)
    assert bins['confidence'][8] == pytest.approx(0.55)
    assert np.isnan(bins['accuracy'][0])


def test_confidence_one_goes_to_the_last_bin():
    probs = torch.tensor([[1.0, 0.0], [0.5, 0.5]], dtype=torch.float64)
    bins = reliability_bins(probs, torch.tensor([0, 0]))
    # 0.5 lies in (7/15, 8/15].
    assert bins['count'][14] == 1 and bins['count'][7] == 1


def test_nll_matches_hand_computation():
    logits = torch.tensor([[math.log(3.0), 0.0]])
    labels = torch.tensor([0])
    # Identities, computed in float64 by nll().
    assert nll(logits, labels) == pytest.approx(-math.log(0.75))
    # At T = 2 the odds are sqrt(3) : 1.
    s3 = math.sqrt(3.0)
    assert nll(logits, labels, 2.0) == pytest.approx(-math.log(s3 / (s3 + 1)))


def calibrated_sample(n: int = 20000, num_classes: int = 10, seed: int = 0):
    """Logits and labels drawn from the logits' own softmax: calibrated.

    A seeded CPU generator in float64: the draws are bit-identical on every
    CPU (torch's per-ISA kernels only change float32 normals) and a label
    changes only if a uniform falls within an ulp of a class boundary, so
    the statistics below are fixed numbers, up to ~1e-15 (values in the
    comments); the bounds also leave room for the sampling noise."""
    g = torch.Generator().manual_seed(seed)
    logits = 2.0 * torch.randn(n, num_classes, generator=g,
                               dtype=torch.float64)
    labels = torch.multinomial(logits.softmax(1), 1, generator=g)[:, 0]
    return logits, labels


def test_calibrated_data_has_small_ece_and_unit_temperature():
    logits, labels = calibrated_sample()
    ece = expected_calibration_error(logits.softmax(1), labels)
    assert ece < 0.015  # sampling noise only (0.0070 on this sample)
    t, at_bound = fit_temperature(logits, labels)
    assert t == pytest.approx(1.0, abs=0.04) and not at_bound  # 1.0063


def test_logits_scaled_by_three_fit_temperature_three():
    logits, labels = calibrated_sample(seed=1)
    result = calibration(3.0 * logits, labels)
    # This sample: T = 3.0086, ECE 0.289 before and 0.0083 after.
    assert result['temperature'] == pytest.approx(3.0, rel=0.04)
    assert result['before']['ece'] > 0.1  # over-confident
    assert result['after']['ece'] < 0.015
    assert result['after']['nll'] < result['before']['nll']
    # Scaling does not change the top-1.
    assert result['after']['accuracy'] == result['before']['accuracy']


def test_fit_is_the_nll_minimum():
    logits, labels = calibrated_sample(n=3000, seed=2)
    logits = 0.4 * logits  # under-confident
    t, _ = fit_temperature(logits, labels)
    assert t == pytest.approx(0.4, rel=0.1)  # 0.3946 on this sample
    for other in (0.9 * t, 1.1 * t):
        assert nll(logits, labels, t) < nll(logits, labels, other)


def test_separable_data_fits_at_the_bound():
    logits = torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0]])
    t, at_bound = fit_temperature(logits, torch.tensor([0, 1]))
    # All correct: the NLL falls monotonically as T -> 0, so the golden-
    # section search ends at the lower bound 0.01 (math, not measurement).
    assert at_bound and t < 0.02


# -- the label-smoothing rule on synthetic logits -------------------------
G_STAR = math.log(91.0)  # eps = 0.1, C = 10: log(1 + 10 * 0.9 / 0.1)


def smoothed_logits(n: int = 400, num_classes: int = 10, seed: int = 0,
                    converged: bool = False):
    """Samples part-way (``c`` in [0, 1]) to the smoothing optimum: the
    further along, the closer the gap to g* and the flatter the others.

    Synthetic logits from a seeded CPU generator: the same on every CPU up
    to a few ulp of float32 ``randn`` (its vectorised kernel differs by ISA),
    which moves the statistics tested below by ~1e-9; the bounds sit 0.03 or
    more from the values (given next to each)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (n, ), generator=g)
    c = torch.ones(n) if converged else torch.rand(n, generator=g)
    logits = (0.5 * (1 - c) + 0.05)[:, None] * torch.randn(
        n, num_classes, generator=g)
    others = ~F.one_hot(labels, num_classes).bool()
    mean_others = (logits * others).sum(1) / (num_classes - 1)
    logits[torch.arange(n), labels] = mean_others + G_STAR - 1.5 * (1 - c)
    return logits, labels


def cross_entropy_logits(n: int = 400, num_classes: int = 10, seed: int = 0):
    """Spread non-target logits; samples differ in scale (feature norm)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (n, ), generator=g)
    logits = 1.5 * torch.randn(n, num_classes, generator=g)
    logits[torch.arange(n), labels] = 9.0
    return logits * (0.5 + torch.rand(n, 1, generator=g)), labels


def test_partly_converged_smoothing_is_flagged():
    logits, labels = smoothed_logits()
    fp = label_smoothing_fingerprint(logits, labels)
    assert fp['flagged'], fp['reason']
    assert fp['uniformity_median'] > 0.95  # 0.985
    assert fp['gap_spread_corr'] < -0.5  # -0.894
    assert recommend_tau(fp, 1.7)[0] == 1.0


def test_implied_eps_inverts_the_smoothing_gap():
    logits, labels = smoothed_logits(converged=True)
    fp = label_smoothing_fingerprint(logits, labels)
    # Constructed at the gap g* exactly: off by float32 rounding (5e-9 rel.).
    assert fp['gap_median'] == pytest.approx(G_STAR, rel=1e-4)
    assert fp['eps_implied'] == pytest.approx(0.1, rel=1e-3)
    assert fp['uniformity_median'] > 0.99  # 0.9996


def test_cross_entropy_shape_is_not_flagged_at_any_temperature():
    logits, labels = cross_entropy_logits()
    fp = label_smoothing_fingerprint(logits, labels)
    # Seeded synthetic logits (see smoothed_logits): 0.734 and +0.714.
    assert not fp['flagged'] and fp['uniformity_median'] < 0.9
    assert fp['gap_spread_corr'] > 0.5
    # Divided by a temperature the non-target probabilities get flat, but
    # the gap and the spread still grow together: not flagged.
    cooled = label_smoothing_fingerprint(logits / 6.0, labels)
    assert cooled['uniformity_median'] > 0.95  # 0.989
    # Ranks do not change under scaling: an identity.
    assert cooled['gap_spread_corr'] == pytest.approx(fp['gap_spread_corr'])
    assert not cooled['flagged'] and 'small logit scale' in cooled['reason']


def test_untrained_model_is_not_flagged():
    g = torch.Generator().manual_seed(0)
    logits = 0.05 * torch.randn(500, 10, generator=g)
    labels = logits.argmax(1)  # score it on the images it "gets right"
    fp = label_smoothing_fingerprint(logits, labels)
    # Logits of scale 0.05: uniformity 1 - O(0.05^2) (0.9997 here).
    assert fp['uniformity_median'] > 0.99 and not fp['flagged']


def test_too_few_correct_predictions_are_undetermined():
    logits, labels = smoothed_logits(n=15)
    fp = label_smoothing_fingerprint(logits, labels)
    assert not fp['flagged'] and fp['reason'].startswith('undetermined')


def test_tau_for_a_plain_teacher_follows_its_temperature():
    fp = dict(flagged=False)
    assert recommend_tau(fp, 0.5)[0] == 1.0
    assert recommend_tau(fp, 1.8)[0] == 2.0
    assert recommend_tau(fp, 4.0)[0] == 5.0
