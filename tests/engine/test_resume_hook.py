"""ExactResumeHook (mmfunmatch/engine/hooks/resume_hook.py): every random
draw is a function of its position, so a resumed run continues bitwise.
Its sampler on its own, and a resumed iteration loop through the real
runner (marked slow); the kill and --resume through tools/train.py is in
tests/tools/test_train_resume.py."""
import os
import os.path as osp

import pytest
from mmengine.dataset import DefaultSampler
from mmengine.runner import Runner

from mmfunmatch.engine.hooks.resume_hook import PositionSampler, SeededIndex
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
