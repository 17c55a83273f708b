"""Smoke test of tools/ablation_study.py: one setting, one seed, a couple of
iterations, through the real tools/train.py; a second invocation redoes
nothing."""
import csv
import glob
import json
import math
import os
import os.path as osp
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow  # tools/train.py and two driver start-ups


def save_teacher(path):
    """The demo teacher architecture with its initial weights: the plumbing
    is under test here, not the distillation (which tools/train.py's own
    end-to-end test covers)."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'funmatch', 'demo',
                                   '_base_.py'))
    torch.manual_seed(0)
    model = MODELS.build(cfg.teacher_model)
    model.init_weights()
    torch.save(dict(state_dict=model.state_dict()), path)


def run_study(work, root, md, teacher):
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.run(
        [sys.executable, 'tools/ablation_study.py', '--work-dir', work,
         '--data-root', root, '--settings', 'same/ic', '--seeds', '0',
         '--epochs', '2', '--teacher', teacher, '--jobs', '1',
         '--val-points', '1', '--md', md, '--cfg-options',
         # 32 images at batch 32: one iteration per epoch, two in all.
         'train_dataloader.dataset.indices=32'],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def sessions(work_dir):
    """mmengine writes one timestamped folder per tools/train.py start."""
    return glob.glob(osp.join(work_dir, '2*', 'vis_data'))


def logged(run_dir):
    """The run's own records: mmengine's scalars.json (one session)."""
    [path] = [osp.join(s, 'scalars.json') for s in sessions(run_dir)]
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return ([r for r in records if 'loss' in r],
            [r for r in records if 'accuracy/top1' in r])


def test_study_writes_outputs_and_resumes(digits_root, tmp_path):
    work = str(tmp_path / 'study')
    md = str(tmp_path / 'table.md')
    teacher = str(tmp_path / 'teacher.pth')
    save_teacher(teacher)
    out = run_study(work, digits_root, md, teacher)
    assert 'trained 1 runs' in out

    with open(osp.join(work, 'ablation_runs.csv')) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1
    row = rows[0]
    assert (row['setting'], row['seed'], row['epochs']) == ('same/ic', '0',
                                                            '2')
    assert row['iters'] == '2'
    # An untrained teacher and two steps: the values themselves mean nothing
    # (reported only); the row must be what the run logged.
    print(f"val top-1 {row['val_top1']}, agreement {row['agreement']}, "
          f"train distill loss {row['train_distill_loss']}")
    run_dir = osp.join(work, 'runs', 'same_ic', 'ep2', 'seed0')
    train, val = logged(run_dir)
    assert val[-1]['step'] == 2  # the final epoch's validation
    assert float(row['val_top1']) == val[-1]['accuracy/top1']
    assert float(row['agreement']) == val[-1]['teacher/agreement']
    assert float(row['train_distill_loss']) == train[-1]['loss_distill']
    assert math.isfinite(float(row['train_distill_loss']))
    # A percentage of the val images: a whole number of them.
    n_val = len(glob.glob(osp.join(digits_root, 'val', '*', '*.png')))
    correct = float(row['val_top1']) * n_val / 100
    assert n_val > 0 and abs(correct - round(correct)) < 1e-3, correct
    for name in ('ablation_val_top1.png', 'ablation_train_loss.png'):
        assert os.path.getsize(osp.join(work, name)) > 1000
    with open(md) as f:
        table = f.read()
    assert '| same/ic |' in table and 'top-1 (%) 2 ep' in table

    ckpt = osp.join(run_dir, 'epoch_2.pth')
    stamp = os.path.getmtime(ckpt)
    assert len(sessions(run_dir)) == 1

    # Again: nothing is trained, the outputs are rewritten from the records.
    out = run_study(work, digits_root, md, teacher)
    assert 'trained 0 runs' in out and '0 to run' in out
    assert os.path.getmtime(ckpt) == stamp
    assert len(sessions(run_dir)) == 1
    with open(osp.join(work, 'ablation_runs.csv')) as f:
        assert list(csv.DictReader(f)) == rows
