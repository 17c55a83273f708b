"""ExactResumeHook (mmfunmatch/engine/hooks/resume_hook.py): every random
draw is a function of its position, so a resumed run continues bitwise.
Its samplers and step reseeding on their own, its set-up of a built runner,
and a resumed iteration loop through the real runner (marked slow); the
kill and --resume through tools/train.py is in
tests/tools/test_train_resume.py."""
import os
import os.path as osp
import random

import numpy as np
import pytest
import torch
from mmengine.dataset import DefaultSampler
from mmengine.runner import Runner

from mmfunmatch.engine.hooks import ExactResumeHook
from mmfunmatch.engine.hooks.resume_hook import (PositionSampler,
                                                 SeededIndex,
                                                 SeedFromPosition,
                                                 StreamSampler)
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


def test_sample_seeds_depend_on_global_position_only():
    """The same sample gets the same augmentation seed whether one process
    or two ranks load it, and a mid-epoch restart yields the same tail."""
    one = PositionSampler(_sampler(0, 1), seed=7)
    one.set_epoch(4)
    single = [(int(i), i.seed) for i in one]
    ranks = []
    for r in (0, 1):
        s = PositionSampler(_sampler(r, 2), seed=7)
        s.set_epoch(4)
        ranks.append([(int(i), i.seed) for i in s])
    assert sorted(single) == sorted(ranks[0] + ranks[1])
    assert ranks[0] == single[0::2] and ranks[1] == single[1::2]
    # Epochs differ; a restart skipping 6 samples continues identically.
    one.set_epoch(5)
    assert [(int(i), i.seed) for i in one] != single
    one.set_epoch(4)
    one.skip(4, 6)
    assert len(one) == 14
    assert [(int(i), i.seed) for i in one] == single[6:]
    assert isinstance(next(iter(one)), SeededIndex)


# -- the hook -----------------------------------------------------------------
class _Runner:
    """What ExactResumeHook reads of a runner whose loop it does not
    support: it then only reseeds the steps."""

    def __init__(self, seed: int, iteration: int) -> None:
        self.seed, self.iter = seed, iteration
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
