import pytest
import torch

from mmfunmatch.models.batch_augments import UniformMixup


def test_weight_is_uniform_and_folded():
    # torch.rand from a seeded CPU generator: the same 16000 draws on every
    # CPU. The tolerances are also ~9 standard errors of each statistic
    # (0.0011, 0.0034 and 0.0023), so they do not hinge on this seed.
    mix = UniformMixup(seed=0)
    lams = torch.cat([mix.sample_lam(4) for _ in range(4000)])
    assert lams.min() >= 0.5 and lams.max() <= 1.0  # folding: by definition
    # Folded U(0, 1) is U(0.5, 1): mean 0.75, quartiles 0.625 / 0.875.
    assert lams.mean().item() == pytest.approx(0.75, abs=0.01)  # 0.7479
    assert (lams < 0.625).float().mean().item() == pytest.approx(
        0.25, abs=0.03)  # 0.256
    unfolded = UniformMixup(fold=False, seed=0)
    lams = torch.cat([unfolded.sample_lam(4) for _ in range(4000)])
    # P(no draw below 0.05) = 0.95**16000: never.
    assert lams.min() < 0.05 and lams.max() > 0.95
    assert lams.mean().item() == pytest.approx(0.5, abs=0.02)  # 0.4953


def test_partner_is_the_batch_rolled_by_one_and_views_mix_alike():
    mix = UniformMixup(seed=1)
    # Each sample is a constant image equal to its index.
    student = torch.arange(4.).view(4, 1, 1, 1).expand(4, 3, 2, 2).clone()
    teacher = torch.arange(4.).view(4, 1, 1, 1).expand(4, 3, 5, 5) * 10
    (s, t), scores = mix([student, teacher], None)
    lam = mix.last_lam.item()
    partner = torch.tensor([3., 0., 1., 2.])  # sample i mixes with i - 1
    expected = lam * torch.arange(4.) + (1 - lam) * partner
    # The library's formula, w * x + (1 - w) * partner, in the same float32
    # operations: equal up to rounding on any CPU.
    assert torch.allclose(s[:, 0, 0, 0], expected)
    assert torch.allclose(t[:, 0, 0, 0], 10 * expected)  # same lam, partner
    assert scores is None


def test_scores_mix_with_the_images():
    mix = UniformMixup(seed=2)
    x = torch.randn(3, 1, 2, 2)
    score = torch.eye(3)
    out, mixed = mix(x, score)
    lam = mix.last_lam.item()
    assert torch.allclose(mixed, lam * score + (1 - lam) * score.roll(1, 0))
    assert torch.allclose(out, lam * x + (1 - lam) * x.roll(1, 0))


def test_per_sample_weights():
    mix = UniformMixup(per_sample=True, seed=3)
    x = torch.arange(5.).view(5, 1)
    out, _ = mix(x)
    lam = mix.last_lam
    assert lam.shape == (5, ) and len(set(lam.tolist())) == 5
    assert torch.allclose(out[:, 0], lam * x[:, 0] +
                          (1 - lam) * x[:, 0].roll(1))


def test_generator_state_round_trip():
    a = UniformMixup(seed=4)
    a.sample_lam(1)
    state = a.get_rng_state()
    expected = [a.sample_lam(1).item() for _ in range(3)]
    b = UniformMixup(seed=99)
    b.set_rng_state(state)
    assert [b.sample_lam(1).item() for _ in range(3)] == expected


def test_generator_is_part_of_the_preprocessor_state_dict():
    """Checkpoints carry the mixup generator with the weights (mmengine's
    own save and load path), so a resumed run needs no hook for it."""
    from mmengine.runner.checkpoint import load_state_dict, weights_to_cpu

    from mmfunmatch.models.data_preprocessors import FunMatchDataPreprocessor
    a = FunMatchDataPreprocessor(batch_augments=dict(type='UniformMixup',
                                                     seed=1))
    a.batch_augment.sample_lam(1)
    state = weights_to_cpu(a.state_dict())  # what mmengine saves
    assert state['_extra_state'].dtype == torch.uint8
    expected = [a.batch_augment.sample_lam(1).item() for _ in range(3)]
    b = FunMatchDataPreprocessor(batch_augments=dict(type='UniformMixup',
                                                     seed=2))
    load_state_dict(b, state, strict=True)
    assert [b.batch_augment.sample_lam(1).item() for _ in range(3)] == expected
    # Without a stateful augment: an empty entry, and loading it is a no-op.
    plain = FunMatchDataPreprocessor()
    assert plain.state_dict()['_extra_state'].numel() == 0
    load_state_dict(b, plain.state_dict(), strict=True)
    assert b.batch_augment.sample_lam(1).item() != expected[0]


def test_batch_of_one_is_a_clear_error():
    with pytest.raises(ValueError, match='drop_last=True'):
        UniformMixup()(torch.randn(1, 3, 4, 4))
    with pytest.raises(ValueError, match='same samples'):
        UniformMixup()([torch.randn(2, 3), torch.randn(3, 3)])
