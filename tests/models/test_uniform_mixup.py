"""UniformMixup (mmfunmatch/models/batch_augments/uniform_mixup.py): the
weight's distribution, the pairing (the batch or each group rolled by one),
weights as a function of (seed, step[, position]) so that processes sharing
a global batch mix as one process would, the (seed, step) state in the
preprocessor's state dict, and the errors."""
import numpy as np
import pytest
import torch

from mmfunmatch.models.batch_augments import UniformMixup


def _over_steps(mix: UniformMixup, steps: int, n: int) -> torch.Tensor:
    lams = []
    for t in range(steps):
        mix.set_position(t)
        lams.append(mix.sample_lam(n))
    return torch.cat(lams)


def test_weight_is_uniform_and_folded():
    # 16000 weights of a counter-based stream, the same on every machine.
    # The tolerances are ~9 standard errors of each statistic (0.0011,
    # 0.0034 and 0.0023), so they do not hinge on the seed.
    lams = _over_steps(UniformMixup(seed=0, per_sample=True), 4000, 4)
    assert lams.dtype == torch.float32
    assert lams.min() >= 0.5 and lams.max() <= 1.0  # folding: by definition
    # Folded U(0, 1) is U(0.5, 1): mean 0.75, quartiles 0.625 / 0.875.
    assert lams.mean().item() == pytest.approx(0.75, abs=0.01)
    assert (lams < 0.625).float().mean().item() == pytest.approx(
        0.25, abs=0.03)
    lams = _over_steps(UniformMixup(fold=False, seed=0, per_sample=True),
                       4000, 4)
    # P(no draw below 0.05) = 0.95**16000: never.
    assert lams.min() < 0.05 and lams.max() > 0.95
    assert lams.mean().item() == pytest.approx(0.5, abs=0.02)
    # One weight per batch: a new one each step, uniform as well.
    per_batch = _over_steps(UniformMixup(fold=False, seed=0), 4000, 4)
    assert per_batch.shape == (4000, )
    assert per_batch.mean().item() == pytest.approx(0.5, abs=0.05)


def test_weight_is_a_function_of_seed_and_step_only():
    """Not of how many weights were drawn before: a process that joins at
    step 7 draws step 7's weight."""
    a, b = UniformMixup(seed=5), UniformMixup(seed=5)
    for _ in range(3):
        a(torch.randn(4, 2))  # a mixes steps 0, 1, 2
    assert a.step == 3
    a.set_position(7)
    b.set_position(7)
    assert torch.equal(a.sample_lam(4), b.sample_lam(4))
    assert torch.equal(a.sample_lam(4), a.sample_lam(4))  # no advance
    b.set_position(8)
    assert not torch.equal(a.sample_lam(4), b.sample_lam(4))
    other = UniformMixup(seed=6)
    other.set_position(7)
    assert not torch.equal(a.sample_lam(4), other.sample_lam(4))
    # Per sample: the weight of global position p, whatever the offset of
    # the batch that holds it.
    ps = UniformMixup(seed=5, per_sample=True)
    ps.set_position(7, 0)
    whole = ps.sample_lam(16)
    ps.set_position(7, 8)
    assert torch.equal(ps.sample_lam(8), whole[8:])


def test_partner_is_the_batch_rolled_by_one_and_views_mix_alike():
    mix = UniformMixup(seed=1)
    # Each sample is a constant image equal to its index.
    student = torch.arange(4.).view(4, 1, 1, 1).expand(4, 3, 2, 2).clone()
    teacher = torch.arange(4.).view(4, 1, 1, 1).expand(4, 3, 5, 5) * 10
    (s, t), scores = mix([student, teacher], None)
    lam = mix.last_lam.item()
    partner = torch.tensor([3., 0., 1., 2.])  # sample i mixes with i - 1
    assert mix.last_partner.tolist() == [3, 0, 1, 2]
    expected = lam * torch.arange(4.) + (1 - lam) * partner
    # The library's formula, w * x + (1 - w) * partner, in the same float32
    # operations: equal up to rounding on any CPU.
    assert torch.allclose(s[:, 0, 0, 0], expected)
    assert torch.allclose(t[:, 0, 0, 0], 10 * expected)  # same lam, partner
    assert scores is None
    # Indexing the partner copies values: bitwise what rolling gives.
    x = torch.randn(5, 3, 4, 4)
    mix.set_position(3)
    lam = mix.sample_lam(5)
    out, _ = mix(x)
    assert torch.equal(out, lam * x + (1 - lam) * x.roll(1, 0))


def test_groups_roll_within_themselves():
    mix = UniformMixup(seed=0, group_size=2)
    assert mix.partners(6).tolist() == [1, 0, 3, 2, 5, 4]
    mix = UniformMixup(seed=0, group_size=3)
    assert mix.partners(6).tolist() == [2, 0, 1, 5, 3, 4]
    x = torch.arange(6.).view(6, 1)
    out, _ = mix(x)
    lam = mix.last_lam.item()
    partner = torch.tensor([2., 0., 1., 5., 3., 4.])
    assert torch.allclose(out[:, 0], lam * torch.arange(6.) +
                          (1 - lam) * partner)


@pytest.mark.parametrize('group_size,per_sample', [(8, False), (4, True),
                                                   (2, False)])
def test_two_processes_mix_as_one_process(group_size, per_sample):
    """A global batch of 16 mixed by one process equals, bit for bit, its
    two halves mixed by two processes at offsets 0 and 8 (what
    ExactResumeHook sets), for every step."""
    x = torch.randn(16, 3, 4, 4)
    one = UniformMixup(seed=3, group_size=group_size, per_sample=per_sample)
    ranks = [UniformMixup(seed=3, group_size=group_size,
                          per_sample=per_sample) for _ in range(2)]
    for step in range(5):
        one.set_position(step, 0)
        whole, _ = one(x)
        halves = []
        for r, mix in enumerate(ranks):
            mix.set_position(step, 8 * r)
            halves.append(mix(x[8 * r:8 * (r + 1)])[0])
        assert torch.equal(torch.cat(halves), whole)
        lam, partner = one.decide(16, step=step, offset=0)
        assert torch.equal(whole, lam.view(-1, 1, 1, 1) * x +
                           (1 - lam.view(-1, 1, 1, 1)) * x[partner])
    # Pairing within each process batch (group_size=None, the paper's) does
    # depend on the split: sample 8 mixes with 15 on the second process,
    # with 7 in one process.
    default = UniformMixup(seed=3)
    assert default.partners(16)[8] == 7 and default.partners(8)[0] == 7


def test_decide_neither_mixes_nor_moves():
    mix = UniformMixup(seed=2, group_size=2)
    mix.set_position(4, 2)
    lam, partner = mix.decide(4, step=9, offset=6)
    assert (mix.step, mix.offset) == (4, 2)
    mix.set_position(9, 6)
    assert torch.equal(mix.sample_lam(4), lam)
    assert partner.tolist() == [1, 0, 3, 2] and partner.dtype == torch.int64
    out, _ = mix(torch.randn(4, 2))
    assert mix.step == 10 and torch.equal(mix.last_lam, lam)


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


def test_state_round_trip():
    a = UniformMixup(seed=4)
    a(torch.randn(2, 1))
    state = a.get_rng_state()
    assert state.tolist() == [4, 1]
    expected = [a(torch.randn(2, 1)) and a.last_lam.item() for _ in range(3)]
    b = UniformMixup(seed=99)
    b.set_rng_state(state)
    assert [b(torch.randn(2, 1)) and b.last_lam.item()
            for _ in range(3)] == expected


def test_state_of_an_older_checkpoint_is_ignored_with_a_warning():
    """Before (seed, step), the state was a torch.Generator's (uint8)."""
    import logging

    from mmengine.logging import MMLogger
    mix = UniformMixup(seed=4)
    mix.set_position(3)
    logger = MMLogger.get_current_instance()
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        mix.set_rng_state(torch.Generator().get_state())
    finally:
        logger.removeHandler(handler)
    assert (mix.seed, mix.step) == (4, 3)
    assert 'older mmfunmatch' in records[0].getMessage()
    assert records[0].levelno == logging.WARNING


def test_state_is_part_of_the_preprocessor_state_dict():
    """Checkpoints carry the mixup seed and step with the weights
    (mmengine's own save and load path)."""
    from mmengine.runner.checkpoint import load_state_dict, weights_to_cpu

    from mmfunmatch.models.data_preprocessors import FunMatchDataPreprocessor
    a = FunMatchDataPreprocessor(batch_augments=dict(type='UniformMixup',
                                                     seed=1))
    a.batch_augment(torch.randn(2, 3))
    state = weights_to_cpu(a.state_dict())  # what mmengine saves
    assert state['_extra_state'].tolist() == [1, 1]
    b = FunMatchDataPreprocessor(batch_augments=dict(type='UniformMixup',
                                                     seed=2))
    load_state_dict(b, state, strict=True)
    assert (b.batch_augment.seed, b.batch_augment.step) == (1, 1)
    # Without a stateful augment: an empty entry, and loading it is a no-op.
    plain = FunMatchDataPreprocessor()
    assert plain.state_dict()['_extra_state'].numel() == 0
    load_state_dict(b, plain.state_dict(), strict=True)
    assert (b.batch_augment.seed, b.batch_augment.step) == (1, 1)


def test_default_seed_comes_from_torch_and_is_kept():
    torch.manual_seed(0)
    a = UniformMixup()
    torch.manual_seed(0)
    assert UniformMixup().seed == a.seed
    assert 0 <= a.seed < 2**62 and isinstance(a.seed, int)
    assert np.int64(a.seed) == a.get_rng_state()[0].item()


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match='drop_last=True'):
        UniformMixup()(torch.randn(1, 3, 4, 4))
    with pytest.raises(ValueError, match='same samples'):
        UniformMixup()([torch.randn(2, 3), torch.randn(3, 3)])
    for bad in (1, 0, 2.0, True):
        with pytest.raises(ValueError, match='group_size must be an int of '
                           'at least 2'):
            UniformMixup(group_size=bad)
    with pytest.raises(ValueError, match='group_size=4 must divide the '
                       'batch of 6 samples'):
        UniformMixup(group_size=4)(torch.randn(6, 2))
    mix = UniformMixup(group_size=4)
    mix.set_position(0, offset=2)  # a group would start on another rank
    with pytest.raises(ValueError, match='its offset 2 in the global batch'):
        mix(torch.randn(4, 2))


def test_a_group_size_that_does_not_divide_the_batch_is_a_config_error(
        tmp_path):
    """tools/train.py checks it before anything is built."""
    from mmengine.config import Config

    from mmfunmatch.apis.validate import ConfigError, validate_config
    from tests.helpers import FUNMATCH
    cfg = Config.fromfile(FUNMATCH)
    cfg.model.teachers[0].checkpoint = None
    for split in ('train', 'val', 'test'):
        cfg[f'{split}_dataloader'].dataset.data_root = str(tmp_path)
    cfg.model.data_preprocessor.batch_augments.group_size = 8
    validate_config(cfg)  # 8 divides the demo's batch of 32
    cfg.model.data_preprocessor.batch_augments.group_size = 12
    with pytest.raises(ConfigError, match=r'batch_augments.group_size=12 '
                       r'must be at least 2 and divide train_dataloader.'
                       r'batch_size \(per process, 32\)'):
        validate_config(cfg)
