"""ExactResumeHook (mmfunmatch/engine/hooks/resume_hook.py): every random
draw is a function of its position, so a resumed run continues bitwise.
Its samplers and step reseeding on their own, its set-up of a built runner,
and a resumed iteration loop through the real runner (marked slow); the
kill and --resume through tools/train.py is in
tests/tools/test_train_resume.py."""
import itertools
import os
import os.path as osp
import random

import numpy as np
import pytest
import torch
from mmengine.dataset import DefaultSampler, InfiniteSampler
from mmengine.runner import Runner

from mmfunmatch.engine.hooks import ExactResumeHook
from mmfunmatch.engine.hooks.resume_hook import (PositionSampler,
                                                 SeededIndex,
                                                 SeedFromPosition,
                                                 StreamSampler, derive_seed)
from tests.helpers import assert_same_run, image_folder, tiny_cfg


# -- position-seeded data -----------------------------------------------------
class _Sized:

    def __len__(self):
        return 20


def _sampler(rank: int, world: int) -> DefaultSampler:
    s = DefaultSampler(_Sized(), shuffle=True, seed=3)
    s.rank, s.world_size = rank, world
    s.num_samples = 20 // world
    s.total_size = 20
    return s


def _seeded(sampler):
    return [(int(i), i.seed) for i in sampler]


def test_sample_seeds_depend_on_global_position_only():
    """The same sample gets the same slot of its step's global batch and the
    same augmentation seed whether one process (batch 4) or two ranks
    (batch 2 each) load it: rank r holds the r-th block of every step. A
    mid-epoch restart yields the same tail."""
    one = PositionSampler(_sampler(0, 1), seed=7, batch_size=4,
                          drop_last=True)
    one.set_epoch(4)
    single = _seeded(one)
    # One process: mmengine's own order, seeded by (seed, epoch, position).
    plain = _sampler(0, 1)
    plain.set_epoch(4)
    assert [i for i, _ in single] == list(plain)
    assert [s for _, s in single] == [
        derive_seed(7, 0, 4, p) for p in range(20)]
    ranks = []
    for r in (0, 1):
        s = PositionSampler(_sampler(r, 2), seed=7, batch_size=2,
                            drop_last=True)
        s.set_epoch(4)
        ranks.append(_seeded(s))
    for t in range(5):  # 5 steps of 4
        assert ranks[0][2 * t:2 * t + 2] == single[4 * t:4 * t + 2]
        assert ranks[1][2 * t:2 * t + 2] == single[4 * t + 2:4 * t + 4]
    # Epochs differ; a restart skipping 6 samples continues identically.
    one.set_epoch(5)
    assert _seeded(one) != single
    one.set_epoch(4)
    one.skip(4, 8)
    assert len(one) == 12
    assert _seeded(one) == single[8:]
    assert isinstance(next(iter(one)), SeededIndex)


def test_a_partial_last_step_is_cut_or_filled_alike_for_every_layout():
    """20 samples in steps of 6 (1 x 6 or 2 x 3): drop_last keeps 3 steps;
    without it a 4th step is filled from the start of the epoch's order (as
    mmengine's round_up pads), so every step holds a full global batch."""
    for drop_last, steps in ((True, 3), (False, 4)):
        one = PositionSampler(_sampler(0, 1), seed=1, batch_size=6,
                              drop_last=drop_last)
        order = one.global_order()
        assert len(order) == 6 * steps and len(one) == 6 * steps
        assert order[:20] == list(_sampler(0, 1))[:len(order[:20])]
        if not drop_last:
            assert order[20:] == order[:4]
        two = [PositionSampler(_sampler(r, 2), seed=1, batch_size=3,
                               drop_last=drop_last) for r in (0, 1)]
        assert [len(s) for s in two] == [3 * steps] * 2
        merged = []
        for t in range(steps):
            for s in two:
                merged += _seeded(s)[3 * t:3 * t + 3]
        assert merged == _seeded(one)


def test_the_infinite_stream_is_dealt_out_in_blocks_too():
    """IterBasedTrainLoop: mmengine's infinite index stream, step t's global
    batch split in rank blocks, started at a step without generating data;
    one process sees what it always saw."""

    def stream(rank, world, batch, start=0, n=12):
        inner = InfiniteSampler(_Sized(), shuffle=True, seed=3)
        inner.rank, inner.world_size = rank, world
        s = StreamSampler(inner, seed=7, start=start, batch_size=batch)
        return [(int(i), i.seed) for i in itertools.islice(iter(s), n)]

    single = stream(0, 1, 4, n=48)
    inner = InfiniteSampler(_Sized(), shuffle=True, seed=3)
    assert [i for i, _ in single] == list(itertools.islice(iter(inner), 48))
    assert [s for _, s in single] == [derive_seed(7, 2, p) for p in range(48)]
    two = [stream(r, 2, 2, n=24) for r in (0, 1)]
    for t in range(12):
        assert two[0][2 * t:2 * t + 2] == single[4 * t:4 * t + 2]
        assert two[1][2 * t:2 * t + 2] == single[4 * t + 2:4 * t + 4]
    # Resumed at step 5 (per-rank start = 5 x batch).
    assert stream(1, 2, 2, start=10, n=4) == two[1][10:14]
    assert stream(0, 1, 4, start=20, n=8) == single[20:28]


# -- the hook -----------------------------------------------------------------
class _Runner:
    """What ExactResumeHook reads of a runner whose loop it does not
    support: it then only reseeds the steps."""

    def __init__(self, seed: int, iteration: int) -> None:
        self.seed, self.iter = seed, iteration
        self.model = None
        self._randomness_cfg = {}
        self.train_loop = object()
        self.warnings = []
        self.logger = self

    def warning(self, message: str) -> None:
        self.warnings.append(message)


def _draws():
    return (random.random(), float(np.random.rand()), torch.rand(3))


def _same(a, b) -> bool:
    return a[:2] == b[:2] and torch.equal(a[2], b[2])


def test_exact_resume_hook_seeds_each_step_from_seed_and_iteration():
    hook = ExactResumeHook()
    runner = _Runner(seed=7, iteration=3)
    hook.before_train(runner)
    assert runner.warnings == [
        'ExactResumeHook: object is not supported; only steps are reseeded.']
    hook.before_train_iter(runner, 0)
    first = _draws()
    torch.manual_seed(999)  # whatever ran before: python, numpy, torch
    random.seed(999)
    np.random.seed(999)
    hook.before_train_iter(runner, 0)
    assert _same(_draws(), first)  # the same step draws the same numbers
    runner.iter = 4
    hook.before_train_iter(runner, 0)
    assert not _same(_draws(), first)  # the next step, others
    other = _Runner(seed=8, iteration=3)
    hook.before_train(other)
    hook.before_train_iter(other, 0)
    assert not _same(_draws(), first)  # another seed, others

    # reseed_steps=False leaves the generators alone.
    off = ExactResumeHook(reseed_steps=False)
    off.before_train(_Runner(seed=7, iteration=3))
    torch.manual_seed(999)
    random.seed(999)
    np.random.seed(999)
    off.before_train_iter(_Runner(seed=7, iteration=3), 0)
    assert not _same(_draws(), first)


def test_exact_resume_hook_sets_up_a_mid_epoch_resume(tmp_path):
    """On a built runner positioned 2 batches into epoch 2 (as after
    loading a mid-epoch checkpoint): the sampler is wrapped to skip those
    batches' samples, the pipeline seeds each sample, once; a checkpoint
    further into the epoch than it has batches is refused."""
    root = image_folder(str(tmp_path / 'data'))
    runner = Runner.from_cfg(tiny_cfg(str(tmp_path / 'work'), root, 'setup'))
    hook = next(h for h in runner.hooks if isinstance(h, ExactResumeHook))
    loop = runner.train_loop  # 16 images, batch 4: 4 batches per epoch
    loop._epoch, loop._iter = 1, 4 + 2
    hook.before_train(runner)
    sampler = loop.dataloader.batch_sampler.sampler
    assert isinstance(sampler, PositionSampler)
    sampler.set_epoch(1)
    assert len(sampler) == 16 - 2 * 4
    assert len(list(sampler)) == 8
    sampler.set_epoch(2)  # the next epoch is whole again
    assert len(sampler) == 16
    hook.before_train(runner)  # again (another resume): nothing doubled
    transforms = loop.dataloader.dataset.pipeline.transforms
    assert sum(isinstance(t, SeedFromPosition) for t in transforms) == 1
    assert isinstance(transforms[0], SeedFromPosition)
    assert loop.dataloader.batch_sampler.sampler is sampler

    loop._iter = 4 + 5
    with pytest.raises(RuntimeError, match='cannot resume: the checkpoint is '
                       '5 iterations into epoch 2, which has only 4 '
                       'batches now'):
        hook.before_train(runner)


def test_checkpoints_record_the_layout_and_a_resume_must_keep_the_global_batch(
        tmp_path):
    """meta['exact_resume'] holds the global batch, per-process batch,
    process count, mixup group size and epoch length. On resume (iteration
    > 0) another process count with the same global batch is accepted; a
    new global batch, group size or epoch length is refused before the
    first step, with the ways to continue. load_from alone is not checked."""
    from mmfunmatch.apis.validate import ConfigError
    root = image_folder(str(tmp_path / 'data'))
    cfg = tiny_cfg(str(tmp_path / 'work'), root, 'layout')
    cfg.model.data_preprocessor.batch_augments = dict(
        augments=dict(type='UniformMixup', group_size=2, seed=0))
    runner = Runner.from_cfg(cfg)
    hook = next(h for h in runner.hooks if isinstance(h, ExactResumeHook))
    loop = runner.train_loop
    hook.before_train(runner)
    checkpoint = dict(meta=dict())
    hook.before_save_checkpoint(runner, checkpoint)
    layout = dict(global_batch=4, batch_size=4, world_size=1, group_size=2,
                  epoch_length=4)
    assert checkpoint['meta']['exact_resume'] == layout

    def resume_from(at, **saved):
        hook.after_load_checkpoint(
            runner, dict(meta=dict(exact_resume=dict(layout, **saved))))
        loop._epoch, loop._iter = 0, at
        hook.before_train(runner)

    resume_from(2, world_size=2, batch_size=2)  # 2 x 2 -> 1 x 4: accepted
    mixup = runner.model.data_preprocessor.batch_augments.augments[0]
    hook.before_train_iter(runner, 0)
    assert (mixup.step, mixup.offset) == (2, 0)
    with pytest.raises(ConfigError) as err:
        resume_from(2, global_batch=8, world_size=2)
    assert str(err.value) == (
        'cannot resume at iteration 2: the checkpoint was trained with a '
        'global batch of 2 process(es) x 4 = 8, this run has 1 process(es) '
        'x 4 = 4. To continue the run, keep the global batch: set '
        'train_dataloader.batch_size=8 (per process) with 1 process. To '
        "train on with the new batch, start a new run from the checkpoint's "
        'weights without --resume (--cfg-options load_from=CHECKPOINT): the '
        'optimizer state, schedule and data order then start afresh.')
    with pytest.raises(ConfigError, match='mixed in groups of 4 .* this run '
                       'in groups of 2. Set model.data_preprocessor.'
                       'batch_augments.group_size=4'):
        resume_from(2, group_size=4)
    with pytest.raises(ConfigError, match="epochs had 5 steps, this run's "
                       'have 4'):
        resume_from(2, epoch_length=5)
    resume_from(0, global_batch=8)  # load_from: a new run, not checked

    # A mixup group that would span processes is refused before a step.
    cfg.model.data_preprocessor.batch_augments.augments.group_size = 8
    runner = Runner.from_cfg(cfg)
    hook = next(h for h in runner.hooks if isinstance(h, ExactResumeHook))
    with pytest.raises(ConfigError, match='group_size=8 must divide the '
                       'batch of 4 samples'):
        hook.before_train(runner)


# -- a resumed iteration loop, through the runner -----------------------------
@pytest.mark.slow
def test_exact_resume_hook_resumes_an_iteration_loop_without_replaying_data(
        tmp_path):
    """IterBasedTrainLoop + InfiniteSampler (the small-data configs): a
    resume from iteration 4 ends bitwise like the run left alone, even with
    another number of dataloader workers, and mmengine's replay of the 4
    finished iterations loads no data."""
    root = image_folder(str(tmp_path / 'data'))

    def cfg_for(work, name, workers):
        cfg = tiny_cfg(work, root, name, num_workers=workers,
                       persistent_workers=workers > 0)
        cfg.train_dataloader.sampler = dict(type='InfiniteSampler')
        cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=8)
        cfg.default_hooks.checkpoint.update(by_epoch=False, interval=4)
        return cfg

    ref = str(tmp_path / 'ref')
    Runner.from_cfg(cfg_for(ref, 'iter_ref', workers=2)).train()
    work = str(tmp_path / 'resumed')
    os.makedirs(work)
    resume_from = osp.join(work, 'iter_4.pth')
    with open(osp.join(ref, 'iter_4.pth'), 'rb') as f, \
            open(resume_from, 'wb') as g:
        g.write(f.read())
    cfg = cfg_for(work, 'iter_resumed', workers=0)
    cfg.update(resume=True, load_from=resume_from)
    runner = Runner.from_cfg(cfg)
    loads = []
    runner.train_dataloader.dataset.pipeline.transforms.insert(
        0, lambda results: loads.append(results['img_path']) or results)
    runner.train()
    assert runner.iter == 8
    assert len(loads) == 4 * 4  # 4 iterations of 4 images, no replay
    assert_same_run(osp.join(ref, 'iter_8.pth'), osp.join(work, 'iter_8.pth'))
    # The hook did it: the index stream started at the checkpoint's
    # position, and the pipeline seeds each sample.
    stream = runner.train_loop.dataloader.batch_sampler.sampler
    assert isinstance(stream, StreamSampler) and stream.start == 4 * 4
    assert isinstance(runner.train_dataloader.dataset.pipeline.transforms[0],
                      SeedFromPosition)
