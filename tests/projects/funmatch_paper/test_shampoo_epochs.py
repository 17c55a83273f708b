"""tools/shampoo_epochs.py: the epochs-to-match arithmetic, the Shampoo demo
config, and a smoke run of the driver through the real tools/train.py."""
import csv
import copy
import os
import os.path as osp
import subprocess
import sys

import pytest
from mmengine.config import Config

from projects.funmatch_paper.shampoo_epochs import (OPTIMIZERS,
                                                    epochs_to_match,
                                                    final_top1,
                                                    summary_markdown)
from tests.conftest import REPO


def rows(cells):
    return [dict(setting=name, epochs=e, seed=s, val_top1=acc)
            for (name, e, s), acc in cells.items()]


def test_final_top1_is_the_mean_over_seeds():
    top1 = final_top1(rows({('AdamW', 100, 0): 90.0, ('AdamW', 100, 1): 92.0,
                            ('Shampoo', 50, 0): 91.0}))
    assert top1 == {'AdamW': {100: 91.0}, 'Shampoo': {50: 91.0}}


def test_epochs_to_match_takes_the_shortest_schedule_that_reaches():
    top1 = {'AdamW': {25: 80.0, 50: 85.0, 100: 90.0},
            # 50 epochs fall short, 25 and 100 reach: not monotone, and the
            # answer is still the shortest schedule that reaches.
            'Shampoo': {25: 90.0, 50: 89.9, 100: 93.0}}
    match = epochs_to_match(top1)
    assert match == dict(target=90.0, reference_epochs=100, epochs=25,
                         ratio=4.0)
    assert '4.00x fewer epochs' in summary_markdown(top1, match, 1.5)
    assert '1.50x' in summary_markdown(top1, match, 1.5)


def test_epochs_to_match_says_when_never_reached():
    top1 = {'AdamW': {10: 95.0}, 'Shampoo': {10: 94.8, 5: 90.0}}
    match = epochs_to_match(top1)
    assert match['epochs'] is None and match['ratio'] is None
    assert 'No Shampoo schedule reached' in summary_markdown(top1, match,
                                                             None)
    with pytest.raises(ValueError, match='both AdamW and Shampoo'):
        epochs_to_match({'AdamW': {10: 95.0}})


def test_study_needs_one_name_per_config(tmp_path):
    from projects.funmatch_paper.ablation import Study
    with pytest.raises(ValueError, match='1 names for 2 configs'):
        Study(str(tmp_path), str(tmp_path), [c for _, c in OPTIMIZERS],
              names=['AdamW'])
    assert not os.listdir(tmp_path)  # refused before writing anything


def test_shampoo_config_differs_in_the_optimizer_only():
    adamw, shampoo = (Config.fromfile(c) for _, c in OPTIMIZERS)
    assert shampoo.optim_wrapper.optimizer.type == 'Shampoo'
    assert adamw.optim_wrapper.optimizer.type == 'AdamW'
    lr = adamw.optim_wrapper.optimizer.lr
    assert shampoo.optim_wrapper.optimizer.lr == lr
    a, s = copy.deepcopy(adamw._cfg_dict), copy.deepcopy(shampoo._cfg_dict)
    a['optim_wrapper'].pop('optimizer')
    s['optim_wrapper'].pop('optimizer')
    assert a == s


@pytest.mark.slow
def test_driver_writes_the_comparison(digits_root, tmp_path):
    from tests.projects.funmatch_paper.test_ablation import save_teacher
    teacher = str(tmp_path / 'teacher.pth')
    save_teacher(teacher)
    work = str(tmp_path / 'study')
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.run(
        [sys.executable, 'tools/shampoo_epochs.py', '--work-dir', work,
         '--data-root', digits_root, '--epochs', '2', '--teacher', teacher,
         '--jobs', '1', '--val-points', '1'],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(osp.join(work, 'shampoo_epochs_runs.csv')) as f:
        runs = list(csv.DictReader(f))
    assert sorted(r['setting'] for r in runs) == ['AdamW', 'Shampoo']
    assert all(r['epochs'] == '2' for r in runs)
    with open(osp.join(work, 'shampoo_epochs_summary.md')) as f:
        summary = f.read()
    assert '| AdamW |' in summary and '| Shampoo |' in summary
    assert 'time per iteration' in summary
    png = osp.join(work, 'shampoo_epochs_val_top1.png')
    assert os.path.getsize(png) > 1000
