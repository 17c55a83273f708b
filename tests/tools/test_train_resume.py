"""Exact resume after SIGKILL, end to end (docs/reliability.md): tools/train.py
on the FunMatch demo in a subprocess, killed mid-epoch, resumed with
--resume past a truncated checkpoint, ends bitwise like the run left alone.
Real runner, real files, real kills; marked slow."""
import os
import os.path as osp
import signal
import time

import pytest

from mmfunmatch.compat import load_runner_checkpoint
from mmfunmatch.engine.hooks import (find_resumable_checkpoint,
                                     is_complete_checkpoint)
from tests.helpers import (EPOCH_SCHEDULE, FUNMATCH, assert_same_run,
                           finish_train, start_train, teacher_file,
                           train_args, truncate)

pytestmark = pytest.mark.slow


def _kill_when(proc, log, path, timeout=600) -> None:
    """SIGKILL a running training as soon as ``path`` exists."""
    deadline = time.time() + timeout
    while not osp.exists(path):
        assert proc.poll() is None, open(log).read()[-4000:]
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_sigkill_mid_epoch_then_resume_is_bitwise_exact(tmp_path, digits_root):
    """tools/train.py on the FunMatch demo (mixup, 2 dataloader workers),
    SIGKILLed after its mid-epoch checkpoint at iteration 8 (epoch 2, batch
    2 of 6), resumed with --resume: the same student, optimizer state and
    mixup generator as the run left alone."""
    teacher = teacher_file(str(tmp_path / 'teacher.pth'))
    ref, work = str(tmp_path / 'ref'), str(tmp_path / 'killed')
    args = train_args(FUNMATCH, work, digits_root, teacher, *EPOCH_SCHEDULE)
    ref_proc = start_train(
        train_args(FUNMATCH, ref, digits_root, teacher, *EPOCH_SCHEDULE),
        ref + '.log')
    _kill_when(start_train(args, work + '.log'), work + '.log',
               osp.join(work, 'iter_8.pth'))
    # What a kill while saving leaves behind: a newer file cut short, with
    # last_checkpoint naming it, and a stray temporary file.
    newest = find_resumable_checkpoint(work)
    assert osp.basename(newest) in ('iter_8.pth', 'epoch_1.pth')
    truncate(newest, osp.join(work, 'iter_11.pth'))
    with open(osp.join(work, 'last_checkpoint'), 'w') as f:
        f.write(osp.join(work, 'iter_11.pth'))
    truncate(newest, osp.join(work, 'iter_11.pth.tmp-4242'))
    assert find_resumable_checkpoint(work) == newest

    log = finish_train(start_train(args + ['--resume'], work + '.resume.log'),
                       work + '.resume.log')
    finish_train(ref_proc, ref + '.log')
    assert f'--resume: continuing from {newest}' in log
    assert 'skipping incomplete checkpoint' in log
    assert not osp.exists(osp.join(work, 'iter_11.pth.tmp-4242'))
    if newest.endswith('iter_8.pth'):
        assert 'Resuming inside epoch 2: skipping its first 2 batches' in log
    assert_same_run(osp.join(ref, 'epoch_2.pth'),
                    osp.join(work, 'epoch_2.pth'))
    # Teachers are rebuilt from their own file, never saved.
    for name in os.listdir(work):
        if is_complete_checkpoint(osp.join(work, name)):
            keys = load_runner_checkpoint(osp.join(work, name))['state_dict']
            # The student, and the mixup generator beside it.
            assert 'data_preprocessor._extra_state' in keys
            assert all(k.startswith('student.') for k in keys
                       if k != 'data_preprocessor._extra_state')
