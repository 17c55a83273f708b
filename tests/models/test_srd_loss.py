"""SRDLoss (mmfunmatch/models/losses/srd_loss.py) against hand computations:
a known projector, the teacher's batch norm without affine parameters, the
soft maximum distance, several teachers, and widths that do not fit."""
import math

import numpy as np
import pytest
import torch

from mmfunmatch.models.losses import SRDLoss, soft_max_distance

# float32 inputs, float64 hand computation: a few float32 roundings apart.
RTOL = 1e-6


def _known(loss: SRDLoss, i: int = 0) -> None:
    """Projector i := [[1, 0], [0, 2], [1, 1]] (2 -> 3), bias [0, 1, -1]."""
    with torch.no_grad():
        loss.projectors[i].weight.copy_(
            torch.tensor([[1., 0.], [0., 2.], [1., 1.]]))
        loss.projectors[i].bias.copy_(torch.tensor([0., 1., -1.]))


S = torch.tensor([[1., 2.], [-1., 0.5]])
T = torch.tensor([[0., 4., 3.], [2., 1., -1.]])
# W s + b by hand: row 0 -> [1, 5, 2], row 1 -> [-1, 2, -1.5]
PROJECTED = np.array([[1., 5., 2.], [-1., 2., -1.5]])


@pytest.mark.parametrize('exponent', [1.0, 2.0, 3.0])
def test_known_projector_no_normalisation(exponent):
    loss = SRDLoss(2, 3, exponent=exponent, normalize_teacher=False,
                   loss_weight=0.5, eps=0.)
    _known(loss)
    # |W s + b - t| = [[1, 1, 1], [3, 1, 0.5]]
    diff = np.abs(PROJECTED - T.numpy())
    assert diff.tolist() == [[1, 1, 1], [3, 1, 0.5]]
    expected = 0.5 * math.log((diff**exponent).sum())
    got = loss(S, [T])
    assert got.item() == pytest.approx(expected, rel=RTOL)


def test_teacher_batch_norm_without_affine():
    """Train mode: the teacher's features are standardised with the batch's
    mean and biased variance (eps 1e-5); the running statistics move by
    momentum 0.1 with the unbiased variance; eval mode uses them."""
    loss = SRDLoss(2, 3, exponent=2.0, loss_weight=1.0, eps=0.)
    _known(loss)
    assert not any(n.startswith('teacher_norms') for n, _ in
                   loss.named_parameters())  # no affine parameters
    t = T.numpy().astype(np.float64)
    mean, var = t.mean(0), t.var(0)  # biased
    normed = (t - mean) / np.sqrt(var + 1e-5)
    expected = math.log((np.abs(PROJECTED - normed)**2).sum())
    loss.train()
    assert loss(S, [T]).item() == pytest.approx(expected, rel=RTOL)
    bn = loss.teacher_norms[0]
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.1 * mean,
                               rtol=RTOL)
    np.testing.assert_allclose(bn.running_var.numpy(),
                               0.9 + 0.1 * t.var(0, ddof=1), rtol=RTOL)
    loss.eval()
    run_mean, run_var = 0.1 * mean, 0.9 + 0.1 * t.var(0, ddof=1)
    normed = (t - run_mean) / np.sqrt(run_var + 1e-5)
    expected = math.log((np.abs(PROJECTED - normed)**2).sum())
    assert loss(S, [T]).item() == pytest.approx(expected, rel=RTOL)


def test_several_teachers_one_projector_each_averaged():
    loss = SRDLoss(2, [3, 1], exponent=1.0, normalize_teacher=False,
                   loss_weight=2.0, eps=0.)
    _known(loss, 0)
    with torch.no_grad():
        loss.projectors[1].weight.copy_(torch.tensor([[2., -1.]]))
        loss.projectors[1].bias.fill_(0.)
    t2 = torch.tensor([[1.], [1.]])
    # teacher 1: [2 - 2, -2 - 0.5] - 1 -> |.| = [1, 3.5]
    first = math.log(np.abs(PROJECTED - T.numpy()).sum())
    second = math.log(1. + 3.5)
    got = loss(S, [T, t2])
    assert got.item() == pytest.approx(2.0 * (first + second) / 2, rel=RTOL)


def test_teacher_side_gets_no_gradient_student_and_projector_do():
    loss = SRDLoss(2, 3)
    s = S.clone().requires_grad_(True)
    t = T.clone().requires_grad_(True)
    loss(s, [t]).backward()
    assert t.grad is None
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert loss.projectors[0].weight.grad.abs().sum() > 0


def test_identical_features_give_a_finite_loss():
    assert torch.isfinite(soft_max_distance(T, T, 2.0, eps=1e-8))
    assert soft_max_distance(T, T, 2.0, eps=1e-8).item() == pytest.approx(
        math.log(1e-8))


def test_widths_that_do_not_fit_are_refused_naming_both():
    loss = SRDLoss(2, 3)
    with pytest.raises(ValueError, match=r'takes 2 student features but the '
                       r'student gives \(2, 5\); set student_channels=5'):
        loss(torch.zeros(2, 5), [T])
    with pytest.raises(ValueError, match=r'teacher 0 gives 3 features but '
                       r'that teacher gives \(2, 4\); set its '
                       r'teacher_channels to 4'):
        loss(S, [torch.zeros(2, 4)])
    with pytest.raises(ValueError, match=r'1 projector\(s\) .* features of '
                       r'2 teacher\(s\)'):
        loss(S, [T, T])
    with pytest.raises(ValueError, match='needs student_channels and '
                       'teacher_channels'):
        SRDLoss(teacher_channels=3)
    with pytest.raises(ValueError, match='exponent must be > 0'):
        SRDLoss(2, 3, exponent=0)
