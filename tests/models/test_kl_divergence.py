import math

import pytest
import torch

from mmfunmatch.models.losses import KLDivergenceT


def hand_kl(s, t, tau):
    """tau^2 * sum_c p_t (log p_t - log p_s), averaged over rows, by hand."""
    total = 0.
    for srow, trow in zip(s.tolist(), t.tolist()):
        zs = [v / tau for v in srow]
        zt = [v / tau for v in trow]
        ls = math.log(sum(math.exp(v) for v in zs))
        lt = math.log(sum(math.exp(v) for v in zt))
        total += sum(
            math.exp(b - lt) * ((b - lt) - (a - ls)) for a, b in zip(zs, zt))
    return tau**2 * total / len(s)


def float32_bound(s, t, tau):
    """How far the float32 loss may be from the exact value on any CPU.

    Each term p_t (log p_t - log p_s) goes through about eight float32
    roundings (the division by tau, the log-softmax's subtraction, exp, sum
    and log, the difference, product and sums), each of at most one unit
    roundoff u = 2**-24 of the magnitudes involved: |log p| and the scaled
    logits. Summing them: 8 u tau^2 (sum_c p_t (|log p_t| + |log p_s|) +
    max |logits / tau|). Rounding differs between CPUs (vectorised exp/log,
    summation order), but stays within this.
    """
    xs, xt = s.double() / tau, t.double() / tau
    lt, ls = xt.log_softmax(1), xs.log_softmax(1)
    size = ((lt.exp() * (lt.abs() + ls.abs())).sum(1).mean() +
            xt.abs().max() + xs.abs().max())
    return 8 * 2.0**-24 * tau**2 * size.item()


@pytest.mark.parametrize('tau', [1.0, 2.0, 5.0])
def test_value_matches_hand_computation(tau):
    s = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    t = torch.tensor([[0.5, 2.5, 0.0], [1.0, 1.0, 1.0]])
    loss = KLDivergenceT(tau=tau)(s, t)
    # 4e-6, 1e-5 and 4e-5 (of a loss ~0.8); 1e-7 to 4e-7 measured.
    assert loss.item() == pytest.approx(hand_kl(s, t, tau),
                                        abs=float32_bound(s, t, tau))


def test_known_value_and_zero_at_match():
    # Two classes: teacher p = (0.5, 0.5), student logits (0, log 3) so
    # q = (0.25, 0.75): KL = 0.5 log 2 + 0.5 log(2/3).
    s = torch.tensor([[0.0, math.log(3.0)]])
    t = torch.zeros(1, 2)
    expected = 0.5 * math.log(2.0) + 0.5 * math.log(2.0 / 3.0)
    assert KLDivergenceT()(s, t).item() == pytest.approx(
        expected, abs=float32_bound(s, t, 1.0))
    # Identical inputs: log p_t - log p_s is exactly 0, so is the loss.
    assert KLDivergenceT()(t, t).item() == pytest.approx(0.0, abs=1e-7)


def test_weight_and_reductions():
    s, t = torch.randn(4, 5), torch.randn(4, 5)
    base = KLDivergenceT(tau=2.0)(s, t)
    # Identities between reductions of the same per-sample values: one or
    # two float32 roundings (~1e-7) apart, for any inputs.
    assert KLDivergenceT(tau=2.0, loss_weight=3.0)(s, t).item() == \
        pytest.approx(3 * base.item(), rel=1e-6)
    per_sample = KLDivergenceT(tau=2.0, reduction='none')(s, t)
    assert per_sample.shape == (4, )
    assert per_sample.mean().item() == pytest.approx(base.item(), rel=1e-6)
    assert KLDivergenceT(tau=2.0, reduction='sum')(s, t).item() == \
        pytest.approx(4 * base.item(), rel=1e-5)
    assert KLDivergenceT(tau=2.0, reduction='mean')(s, t).item() == \
        pytest.approx(base.item() / 5, rel=1e-5)


def test_gradient_flows_to_student_only():
    s = torch.randn(3, 4, requires_grad=True)
    t = torch.randn(3, 4, requires_grad=True)
    KLDivergenceT()(s, t).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


def test_shape_mismatch_is_an_error_not_a_broadcast():
    with pytest.raises(ValueError, match=r'\(4, 10, 1, 1\).*Flatten'):
        KLDivergenceT()(torch.randn(4, 10), torch.randn(4, 10, 1, 1))
    with pytest.raises(ValueError, match='same number of classes'):
        KLDivergenceT()(torch.randn(4, 10), torch.randn(4, 7))


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_low_precision_inputs_are_computed_in_fp32(dtype):
    # Logits of this size overflow exp() in fp16; the loss must stay finite
    # and equal the fp32 value of the same (rounded) inputs.
    s = (torch.randn(8, 100) * 30).to(dtype)
    t = (torch.randn(8, 100) * 30).to(dtype)
    loss = KLDivergenceT(tau=1.0)(s, t)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    ref = KLDivergenceT(tau=1.0)(s.float(), t.float())
    # Both compute in fp32 from the same (rounded) values: the same ops on
    # the same numbers, equal on any CPU.
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)


def test_bad_config_values():
    with pytest.raises(ValueError, match='tau'):
        KLDivergenceT(tau=0)
    with pytest.raises(ValueError, match='reduction'):
        KLDivergenceT(reduction='avg')
