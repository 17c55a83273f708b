"""SRD and BYOT end to end through tools/train.py on scikit-learn's digits:
the SRD student resumes bitwise (projector and its optimizer state
included), MMRazor's own BYOT config runs as an MMRazor user would run it,
and our BYOT trains, validates every head and exports the plain network.
Real runner, real files; marked slow."""
import os.path as osp
import shutil

import pytest
import torch

from mmfunmatch.compat import load_runner_checkpoint
from tests.conftest import REPO
from tests.helpers import (EPOCH_SCHEDULE, assert_same_run, finish_train,
                           start_train, teacher_file, train_args)

pytestmark = pytest.mark.slow
CONFIGS = osp.join(REPO, 'configs', 'funmatch')
SRD = osp.join(CONFIGS, 'srd', 'digits_funmatch_srd_student.py')


def _run(args, log):
    return finish_train(start_train(args, log), log)


def test_srd_student_resumes_bitwise_with_its_projector(tmp_path,
                                                        digits_root):
    """12 iterations left alone against a run resumed from the first's
    iteration-4 checkpoint: the same student, projector, teacher
    normalisation statistics and optimizer state at the end."""
    teacher = teacher_file(str(tmp_path / 'teacher.pth'))
    ref, resumed = str(tmp_path / 'ref'), str(tmp_path / 'resumed')
    _run(train_args(SRD, ref, digits_root, teacher, *EPOCH_SCHEDULE),
         ref + '.log')
    ckpt = load_runner_checkpoint(osp.join(ref, 'epoch_2.pth'))
    keys = set(ckpt['state_dict'])
    assert {'feature_loss.projectors.0.weight',
            'feature_loss.teacher_norms.0.running_var'} <= keys
    assert not any(k.startswith('teachers.') for k in keys)
    # The projector trains: Adam holds state for it (student + 2 tensors).
    n_student = sum(k.startswith('student.') and 'running' not in k
                    and 'num_batches' not in k for k in keys)
    assert len(ckpt['optimizer']['state']) == n_student + 2

    start = osp.join(resumed, 'iter_4.pth')
    shutil.copytree(ref, resumed, ignore=shutil.ignore_patterns(
        'epoch_*', 'iter_8*', 'iter_12*', 'last_checkpoint'))
    log = _run(train_args(SRD, resumed, digits_root, teacher,
                          *EPOCH_SCHEDULE) + ['--resume', start],
               resumed + '.log')
    assert 'loss_feature' in log
    assert_same_run(osp.join(ref, 'epoch_2.pth'),
                    osp.join(resumed, 'epoch_2.pth'))


def test_mmrazor_byot_config_runs_through_tools_train(tmp_path,
                                                      digits_root):
    """MMRazor's byot_resnet18_8xb16_cifar100.py, inherited by a thin
    config that only swaps in the digits folder and 10 classes."""
    work = str(tmp_path / 'razor')
    args = [osp.join(REPO, 'tools', 'train.py'),
            osp.join(CONFIGS, 'byot', 'mmrazor_byot_resnet18_digits.py'),
            '--work-dir', work, '--cfg-options', 'train_cfg.max_epochs=1',
            f'train_dataloader.dataset.data_root={digits_root}',
            f'val_dataloader.dataset.data_root={digits_root}',
            f'test_dataloader.dataset.data_root={digits_root}',
            'train_dataloader.dataset.indices=32',
            'val_dataloader.dataset.indices=32',
            'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False',
            'val_dataloader.num_workers=0',
            'val_dataloader.persistent_workers=False']
    log = _run(args, work + '.log')
    for term in ('distill.loss_fet_1', 'distill.loss_label_2',
                 'distill.loss_softl_3', 'student.loss'):
        assert term in log, term
    assert 'student.accuracy/top1' in log  # SelfDistillValLoop ran
    state = load_runner_checkpoint(osp.join(work, 'epoch_1.pth'))
    assert any(k.startswith('distiller.connectors.loss_s1_sfeat')
               for k in state['state_dict'])


def test_our_byot_trains_reports_every_head_and_exports(tmp_path,
                                                        digits_root):
    from mmfunmatch.apis.export import export_student
    work = str(tmp_path / 'byot')
    args = [osp.join(REPO, 'tools', 'train.py'),
            osp.join(CONFIGS, 'byot', 'byot_resnet18_w8_digits.py'),
            '--work-dir', work, '--cfg-options',
            f'train_dataloader.dataset.data_root={digits_root}',
            f'val_dataloader.dataset.data_root={digits_root}',
            f'test_dataloader.dataset.data_root={digits_root}',
            'train_dataloader.dataset.indices=64',
            'val_dataloader.dataset.indices=100', *EPOCH_SCHEDULE,
            'train_cfg.val_interval=2']
    log = _run(args, work + '.log')
    for key in ('accuracy/top1', 'aux/head1_top1', 'aux/head2_top1',
                'aux/head3_top1', 'loss_kl_3', 'loss_feature_1'):
        assert key in log, key
    weights, _ = export_student(osp.join(work, 'epoch_2.pth'),
                                str(tmp_path / 'out'))
    saved = torch.load(weights, weights_only=True)['state_dict']
    assert saved and all(not k.startswith('aux_heads') for k in saved)
    full = load_runner_checkpoint(osp.join(work, 'epoch_2.pth'))
    assert any(k.startswith('aux_heads.') for k in full['state_dict'])
