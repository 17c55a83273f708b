"""Resuming on another number of processes at the same global batch,
through the real launchers (tools/dist_train.sh, one node, two processes,
gloo on CPU; tools/train.py for one process) on the FunMatch demo with
mixup (UniformMixup, group_size=8) and SyncBN.

One run of 2 processes x 8 (12 steps of 16, 6 per epoch) is the reference.
A single process x 16 resumes from its mid-epoch checkpoint at step 4
(2 -> 1); two processes x 8 resume from that run's mid-epoch checkpoint at
step 8 (1 -> 2). A recording hook writes, for every step and every slot of
the global batch, the sample's dataset index, a hash of its crop (the raw
uint8 student view), a hash of the mixed student and teacher inputs
(float32), the mixing weight and the partner's dataset index.

- Data side, bitwise: every step the resumed runs train holds the samples,
  crops, weights, partners and mixed inputs of the reference, slot by
  slot; epoch 1 (reference steps 1-4 + resumed steps 5-6) holds every one
  of the 96 images exactly once.
- Weights, not bitwise: one process sums the batch's gradient in one pass,
  two processes sum 8 each and average them with an all_reduce, and SyncBN
  sums the statistics in another order. These float32 rounding differences
  (relative ~1e-7 per sum, ~1e-6 through a forward and backward pass) go
  through Adam, which turns an element's relative gradient error into about
  the same relative error of its step, except for elements whose gradient
  is at rounding level: their step can change sign, but with eps 1e-6
  (tests/helpers.py dist_options) it is ~1e-3 of the learning rate. Bound
  (the same as test_dist.py's): the resumed run and the uninterrupted one
  are apart by under 1 % of how far the weights moved since the resume,
  ~1000x the relative rounding accumulated over 8 steps. The mixup state
  (seed, step) and the step counters are bitwise equal.
- A different global batch (1 x 8 resuming 2 x 8) is refused before any
  step with exit code 2 and a message that says how to continue.
"""
import glob
import hashlib
import json
import os
import os.path as osp
import shutil
import sys

import pytest
import torch
from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS

from mmfunmatch.compat import load_runner_checkpoint
from tests.conftest import REPO
from tests.helpers import (DIST_TRAIN, FUNMATCH, dist_options, finish_train,
                           free_port, launch, teacher_file)

GROUP = 8
STEPS_PER_EPOCH = 6
TRAIN = osp.join(REPO, 'tools', 'train.py')


def _digest(x: torch.Tensor) -> str:
    return hashlib.sha256(x.detach().cpu().contiguous().numpy().tobytes()
                          ).hexdigest()[:16]


@HOOKS.register_module()
class DrawRecorder(Hook):
    """Writes what every step mixed, one JSON line per rank and step, to
    ``<work_dir>/draws_rank<r>.jsonl`` (a forward hook on the data
    preprocessor: it sees the real inputs and outputs)."""

    priority = 'LOWEST'

    def before_train(self, runner) -> None:
        model = getattr(runner.model, 'module', runner.model)
        pre = model.data_preprocessor
        rank, world = get_dist_info()
        path = osp.join(runner.work_dir, f'draws_rank{rank}.jsonl')

        def record(module, args, kwargs, output):
            training = kwargs.get('training', args[1] if len(args) > 1
                                  else False)
            if not training:
                return
            raw = args[0]['inputs']['student']
            raw = raw if isinstance(raw, torch.Tensor) else torch.stack(raw)
            mixup = module.batch_augment
            ids = [int(s.sample_idx) for s in output['data_samples']]
            lam = mixup.last_lam.tolist()
            samples = [[
                ids[i], _digest(raw[i]),
                _digest(output['inputs']['student'][i]),
                _digest(output['inputs']['teachers'][0][i]),
                lam[i if len(lam) > 1 else 0],
                ids[int(mixup.last_partner[i])]
            ] for i in range(len(ids))]
            with open(path, 'a') as f:
                f.write(json.dumps(dict(
                    iter=runner.iter, rank=rank, world=world,
                    samples=samples)) + '\n')

        pre.register_forward_hook(record, with_kwargs=True)


def _config(tmp) -> str:
    """The demo config with mixup groups of 8 and the recorder."""
    path = osp.join(tmp, 'recorded.py')
    with open(path, 'w') as f:
        f.write(f"""_base_ = [{FUNMATCH!r}]
custom_imports = dict(
    imports=['mmfunmatch', 'tests.tools.test_resume_world_size'],
    allow_failed_imports=False)
custom_hooks = [dict(type='DrawRecorder')]
model = dict(data_preprocessor=dict(batch_augments=dict(group_size={GROUP})))
""")
    return path


def _options(work, root, teacher, per_rank_batch):
    return [o for o in dist_options(work, root, teacher, per_rank_batch)
            if o != 'model.data_preprocessor.batch_augments=None']


def _two_processes(cfg, work, root, teacher, *extra):
    cmd = ['bash', DIST_TRAIN, cfg, '2',
           *_options(work, root, teacher, 8), *extra]
    return launch(cmd, work + '.log', PORT=str(free_port()))


def _one_process(cfg, work, root, teacher, batch, *extra):
    return launch([sys.executable, TRAIN, cfg,
                   *_options(work, root, teacher, batch), *extra],
                  work + '.log')


def _draws(work):
    """{step: the global batch's records, slot by slot}."""
    lines = []
    for path in glob.glob(osp.join(work, 'draws_rank*.jsonl')):
        with open(path) as f:
            lines += [json.loads(line) for line in f]
    steps = {}
    for line in sorted(lines, key=lambda d: (d['iter'], d['rank'])):
        steps.setdefault(line['iter'], []).extend(line['samples'])
    return steps


def _resume_dir(work, checkpoint):
    os.makedirs(work)
    path = osp.join(work, osp.basename(checkpoint))
    shutil.copy(checkpoint, path)
    return path


def _floats(path):
    state = load_runner_checkpoint(path)['state_dict']
    return {k: v.double() for k, v in state.items() if v.is_floating_point()}


def _apart_over_moved(a, b, start):
    a, b, s = _floats(a), _floats(b), _floats(start)
    moved = sum(((a[k] - s[k])**2).sum() for k in a).sqrt()
    apart = sum(((a[k] - b[k])**2).sum() for k in a).sqrt()
    return float(apart / moved)


@pytest.mark.slow
def test_resume_on_another_number_of_processes(tmp_path, digits_root):
    teacher = teacher_file(str(tmp_path / 'teacher.pth'))
    cfg = _config(str(tmp_path))
    ref = str(tmp_path / 'two_ref')
    finish_train(_two_processes(cfg, ref, digits_root, teacher), ref + '.log',
                 timeout=900)
    meta = load_runner_checkpoint(osp.join(ref, 'iter_4.pth'))['meta']
    assert meta['exact_resume'] == dict(
        global_batch=16, batch_size=8, world_size=2, group_size=GROUP,
        epoch_length=STEPS_PER_EPOCH)
    expected = _draws(ref)
    assert sorted(expected) == list(range(12))
    assert all(len(batch) == 16 for batch in expected.values())

    # A new global batch is refused before the first step.
    bad = str(tmp_path / 'one_x8')
    at4 = _resume_dir(bad, osp.join(ref, 'iter_4.pth'))
    proc = _one_process(cfg, bad, digits_root, teacher, 8, '--resume', at4)
    proc.wait(timeout=600)
    log = open(bad + '.log').read()
    assert proc.returncode == 2, log[-3000:]
    assert ('the checkpoint was trained with a global batch of 2 '
            'process(es) x 8 = 16, this run has 1 process(es) x 8 = 8. To '
            'continue the run, keep the global batch: set '
            'train_dataloader.batch_size=16 (per process) with 1 process. '
            ) in ' '.join(log.split())
    assert 'load_from=CHECKPOINT' in log
    assert not glob.glob(osp.join(bad, 'draws_rank*.jsonl'))  # no step ran

    # 2 -> 1, from the middle of epoch 1.
    one = str(tmp_path / 'one_resumed')
    at4 = _resume_dir(one, osp.join(ref, 'iter_4.pth'))
    log = finish_train(
        _one_process(cfg, one, digits_root, teacher, 16, '--resume', at4),
        one + '.log')
    assert 'Resuming on 1 process(es) x 16 = 16 (checkpoint: 2 process(es) ' \
        'x 8 = 16)' in ' '.join(log.split())
    got = _draws(one)
    assert sorted(got) == list(range(4, 12))
    for step in got:
        assert got[step] == expected[step], step
    epoch1 = [s[0] for t in range(4) for s in expected[t]]
    epoch1 += [s[0] for t in (4, 5) for s in got[t]]
    assert sorted(epoch1) == list(range(96))  # none skipped, none twice

    # 1 -> 2, from the middle of epoch 2 of the one-process run.
    two = str(tmp_path / 'two_resumed')
    at8 = _resume_dir(two, osp.join(one, 'iter_8.pth'))
    finish_train(
        _two_processes(cfg, two, digits_root, teacher, '--resume', at8),
        two + '.log', timeout=900)
    got2 = _draws(two)
    assert sorted(got2) == list(range(8, 12))
    for step in got2:
        assert got2[step] == expected[step], step

    # Weights: within the bounds of the docstring; mixup state and
    # counters bitwise.
    at8 = _apart_over_moved(osp.join(ref, 'iter_8.pth'),
                            osp.join(one, 'iter_8.pth'),
                            osp.join(ref, 'iter_4.pth'))
    ratio_21 = _apart_over_moved(osp.join(ref, 'epoch_2.pth'),
                                 osp.join(one, 'epoch_2.pth'),
                                 osp.join(ref, 'iter_4.pth'))
    ratio_12 = _apart_over_moved(osp.join(one, 'epoch_2.pth'),
                                 osp.join(two, 'epoch_2.pth'),
                                 osp.join(one, 'iter_8.pth'))
    print(f'apart / moved: 2 -> 1 after 4 steps {at8:.2e}, after 8 '
          f'{ratio_21:.2e}; 1 -> 2 after 4 steps {ratio_12:.2e}')
    assert at8 < 0.01 and ratio_21 < 0.01 and ratio_12 < 0.01
    ends = [load_runner_checkpoint(osp.join(w, 'epoch_2.pth'))
            for w in (ref, one, two)]
    for end in ends[1:]:
        assert end['meta']['iter'] == 12 and end['meta']['epoch'] == 2
        assert torch.equal(
            end['state_dict']['data_preprocessor._extra_state'],
            ends[0]['state_dict']['data_preprocessor._extra_state'])
