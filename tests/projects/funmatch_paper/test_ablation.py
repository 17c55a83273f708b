"""tools/ablation_study.py: smoke tests through the real tools/train.py (one
setting, one seed, a couple of iterations; a second invocation redoes
nothing; the harder split with the teacher trained by the driver), and the
plan of the harder split (configs/funmatch/fewshot/) without training."""
import csv
import glob
import json
import math
import os
import os.path as osp
import subprocess
import sys

import pytest
from mmengine.config import Config

from projects.funmatch_paper.ablation import (ABLATION_CONFIGS, Study,
                                              config_path, main, setting_of)
from projects.funmatch_paper.digits import write_fewshot
from tests.conftest import REPO

FEWSHOT = osp.join(REPO, 'configs', 'funmatch', 'fewshot')
FEWSHOT_SETTINGS = ('funmatch', 'same/ic', 'fix/rs', 'label')


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


@pytest.mark.slow  # tools/train.py and two driver start-ups
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


# -- the harder split (configs/funmatch/fewshot/) -----------------------------
@pytest.mark.parametrize('setting, base', [
    ('funmatch', osp.join(ABLATION_CONFIGS, 'digits_funmatch.py')),
    ('same/ic', osp.join(ABLATION_CONFIGS, 'digits_same_ic.py')),
    ('fix/rs', osp.join(ABLATION_CONFIGS, 'digits_fix_rs.py')),
    ('label', osp.join(REPO, 'configs', 'funmatch', 'demo',
                       'digits_label_student.py')),
])
def test_fewshot_configs_change_only_the_data_and_the_teacher(setting, base):
    path = config_path(setting, FEWSHOT)
    assert setting_of(path) == setting
    cfg = Config.fromfile(path).to_dict()
    ref = Config.fromfile(base).to_dict()
    for key in ('few_prefix', 'teacher_prefix', 'fewshot_teacher'):
        cfg.pop(key)
    ref['train_dataloader']['dataset']['data_prefix'] = 'train_few10'
    ref['model']['teachers'][0]['checkpoint'] = (
        'work_dirs/fewshot/teacher/epoch_20.pth')
    assert cfg == ref


def test_fewshot_teacher_config_trains_on_the_rest_only():
    cfg = Config.fromfile(osp.join(FEWSHOT, 'digits_teacher.py')).to_dict()
    ref = Config.fromfile(osp.join(REPO, 'configs', 'funmatch', 'demo',
                                   'digits_teacher.py')).to_dict()
    for key in ('few_prefix', 'teacher_prefix', 'fewshot_teacher'):
        cfg.pop(key)
    ref['train_dataloader']['dataset']['data_prefix'] = 'train_rest10'
    assert cfg == ref


def test_fewshot_plan_counts_the_students_images(digits_root, tmp_path):
    write_fewshot(digits_root, 10)
    work = str(tmp_path / 'study')
    study = Study(work, digits_root,
                  [config_path(s, FEWSHOT) for s in FEWSHOT_SETTINGS],
                  seeds=[0, 1], epochs=[5, 50],
                  teacher_config=osp.join(FEWSHOT, 'digits_teacher.py'))
    # The students' and the teacher's folders are both train_*10.
    assert study.fewshot_sizes() == [10]
    runs = study.plan()
    assert len(runs) == 4 * 2 * 2
    assert [r.setting for r in runs[:4]] == list(FEWSHOT_SETTINGS)
    # 100 images at batch 32, the last partial batch dropped: 3 steps.
    assert {r.iters_per_epoch for r in runs} == {3}
    assert {r.iters for r in runs if r.epochs == 50} == {150}
    # The teacher config's 20 epochs decide where its checkpoint lands.
    assert study.teacher_path() == osp.join(work, 'teacher', 'epoch_20.pth')
    # Seed-major: every length of seed 0, then seed 1.
    study.seed_major = True
    assert [(r.seed, r.epochs) for r in study.plan()] == (
        [(0, 5)] * 4 + [(0, 50)] * 4 + [(1, 5)] * 4 + [(1, 50)] * 4)


def test_a_setting_without_a_config_is_named(capsys, tmp_path):
    code = main(['--config-dir', FEWSHOT, '--settings', 'same/ic', 'fix/cc',
                 '--work-dir', str(tmp_path / 'w'), '--dry-run'])
    assert code == 2
    err = capsys.readouterr().err
    assert 'digits_fix_cc.py' in err and '--config-dir' in err
    assert not os.path.exists(tmp_path / 'w')  # refused before any work


@pytest.mark.slow  # trains a teacher and a student through tools/train.py
def test_fewshot_study_trains_its_teacher_on_the_rest(tmp_path):
    root = str(tmp_path / 'digits')  # written by the driver
    work = str(tmp_path / 'study')
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.run(
        [sys.executable, 'tools/ablation_study.py', '--work-dir', work,
         '--data-root', root, '--config-dir', FEWSHOT, '--settings', 'label',
         '--seeds', '0', '--epochs', '2', '--teacher-epochs', '2',
         '--jobs', '1', '--threads', '1', '--val-points', '1',
         '--cfg-options',
         'train_dataloader.dataset.indices=32'],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'trained 1 runs' in proc.stdout
    # The driver wrote the split its configs read.
    for split, n in (('train_few10', 100), ('train_rest10', 1197)):
        assert len(glob.glob(osp.join(root, split, '*', '*.png'))) == n
    # The teacher was trained with the few-shot teacher config: on the rest.
    teacher_dir = osp.join(work, 'teacher')
    dumped = Config.fromfile(osp.join(teacher_dir, 'digits_teacher.py'))
    assert dumped.train_dataloader.dataset.data_prefix == 'train_rest10'
    assert osp.isfile(osp.join(teacher_dir, 'epoch_2.pth'))
    with open(osp.join(work, 'ablation_runs.csv')) as f:
        [row] = list(csv.DictReader(f))
    assert (row['setting'], row['iters']) == ('label', '2')
    run_dir = osp.join(work, 'runs', 'label', 'ep2', 'seed0')
    train, val = logged(run_dir)
    # The label-only student logs its cross-entropy as its loss, and its
    # validation the KL to the teacher.
    assert float(row['train_distill_loss']) == train[-1]['loss']
    assert float(row['val_kl']) == val[-1]['teacher/kl']
    assert os.path.getsize(osp.join(work, 'ablation_val_kl.png')) > 1000
