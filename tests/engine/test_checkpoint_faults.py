"""A checkpoint write that fails (disk full, read-only or not writable
directory): the run stops on every rank with a message naming the directory,
the cause and what to do (exit code 6 from tools/train.py), no partial file
is left, and --resume continues from the previous checkpoint.

Faults are made without touching this machine: a file-size limit in the
training process only (RLIMIT_FSIZE: writes past it fail with EFBIG, the
same for the run as a full disk), and, where user namespaces are allowed, a
read-only bind mount (EROFS) or a user without root's override of
permission bits (EACCES) that exist only inside the training process's own
namespace (`unshare`) and vanish with it. Root ignores permission bits, so
a plain chmod is no test when the suite runs as root.
"""
import errno
import hashlib
import os
import os.path as osp
import resource
import shutil
import signal
import socket
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from mmengine.fileio import get_file_backend
from mmengine.logging import MessageHub

from mmfunmatch.apis.cli import EXIT_CHECKPOINT_WRITE
from mmfunmatch.engine.hooks import (CheckpointWriteError, SafeCheckpointHook,
                                     find_resumable_checkpoint)
from tests.conftest import REPO
from tests.helpers import (DIST_TRAIN, EPOCH_SCHEDULE, FUNMATCH,
                           assert_same_run, dist_options, finish_train,
                           subprocess_env, teacher_file, train_args)


# -- the message --------------------------------------------------------------
class _Runner(SimpleNamespace):

    def save_checkpoint(self, *args, **kwargs):
        raise OSError(self.errno, os.strerror(self.errno))


@pytest.mark.parametrize('code, cause, fix', [
    (errno.ENOSPC, 'no space left', 'Free space there'),
    (errno.EDQUOT, 'no space left', 'Free space there'),
    (errno.EFBIG, 'no space: the file would exceed', 'Raise the limit'),
    (errno.EROFS, 'the file system is read-only', 'Remount it read-write'),
    (errno.EACCES, 'permission denied', 'Make the directory writable'),
])
def test_the_error_names_directory_cause_and_fix(code, cause, fix, tmp_path):
    work = str(tmp_path)
    previous = osp.join(work, 'iter_4.pth')  # what --resume picks
    torch.save(dict(meta=dict(iter=4)), previous)
    hub = MessageHub.get_instance('test_checkpoint_faults')
    hub.update_info('last_ckpt', previous)
    runner = _Runner(errno=code, work_dir=work, message_hub=hub)
    hook = SafeCheckpointHook(interval=1)
    hook.out_dir, hook.file_backend = work, get_file_backend(work)
    hook.last_ckpt = previous
    with pytest.raises(CheckpointWriteError) as info:
        hook._save_and_point(runner, 'iter_8.pth', meta=None, by_epoch=False)
    message = str(info.value)
    assert message.startswith(f'cannot write checkpoint iter_8.pth in {work}: '
                              f'{cause}')
    assert f'({errno.errorcode[code]}: {os.strerror(code)})' in message
    assert (f'The previous checkpoint {previous} is intact and --resume '
            f'continues from it.') in message
    assert fix in message and 'then relaunch with --resume' in message
    assert (info.value.errno, info.value.directory) == (code, work)
    # Nothing points at the file that was not written.
    assert hook.last_ckpt == previous
    assert hub.get_info('last_ckpt') == previous
    assert os.listdir(work) == ['iter_4.pth']


# -- end to end ---------------------------------------------------------------
@pytest.fixture(scope='module')
def reference(tmp_path_factory, digits_root):
    """The demo run left alone (checkpoints at iterations 4, 8 and 12)."""
    tmp = tmp_path_factory.mktemp('faults')
    teacher = teacher_file(str(tmp / 'teacher.pth'))
    ref = str(tmp / 'ref')
    args = train_args(FUNMATCH, ref, digits_root, teacher, *EPOCH_SCHEDULE)
    finish_train(_run(args, ref + '.log'), ref + '.log')
    return dict(tmp=tmp, ref=ref, teacher=teacher, root=digits_root)


def _run(args, log, prefix=(), preexec_fn=None):
    with open(log, 'w') as f:
        return subprocess.Popen([*prefix, sys.executable, *args], cwd=REPO,
                                env=subprocess_env(), stdout=f,
                                stderr=subprocess.STDOUT,
                                preexec_fn=preexec_fn)


def _sha(path: str) -> str:
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def _resumable_at_4(ref: str, work: str, ckpt_dir: str) -> str:
    """A run stopped after iteration 4: its checkpoint (from the reference
    run) in ``ckpt_dir`` and ``last_checkpoint`` naming it."""
    os.makedirs(ckpt_dir, exist_ok=True)
    os.makedirs(work, exist_ok=True)
    ckpt = osp.join(ckpt_dir, 'iter_4.pth')
    shutil.copyfile(osp.join(ref, 'iter_4.pth'), ckpt)
    with open(osp.join(work, 'last_checkpoint'), 'w') as f:
        f.write(ckpt)
    return ckpt


def _fails_to_write(proc, log: str, ckpt_dir: str, previous: str,
                    cause: str, name: str) -> str:
    proc.wait(timeout=600)
    with open(log) as f:
        text = f.read()
    assert proc.returncode == EXIT_CHECKPOINT_WRITE, text[-4000:]
    print('\n' + next(line for line in text.splitlines()
                      if 'cannot write checkpoint' in line))
    assert (f'cannot write checkpoint iter_8.pth in {ckpt_dir}: {cause}'
            in text)
    assert f'({name}: ' in text
    assert f'The previous checkpoint {previous} is intact' in text
    assert 'Traceback' not in text
    # No partial file under any name, the previous checkpoint untouched and
    # still the one --resume picks.
    assert sorted(n for n in os.listdir(ckpt_dir) if '.pth' in n) == [
        'iter_4.pth'
    ]
    return text


@pytest.mark.slow
def test_a_full_disk_stops_the_run_and_resume_continues_exactly(reference):
    """The resumed demo run may write no file larger than half a checkpoint
    (RLIMIT_FSIZE in its own process; logs stay below it): the iteration-8
    checkpoint fails with EFBIG. Then --resume without the limit continues
    from iteration 4 and ends bitwise like the run left alone."""
    tmp, ref = reference['tmp'], reference['ref']
    work = str(tmp / 'full')
    previous = _resumable_at_4(ref, work, work)
    before = _sha(previous)
    limit = os.path.getsize(previous) // 2
    args = train_args(FUNMATCH, work, reference['root'],
                       reference['teacher'], *EPOCH_SCHEDULE) + ['--resume']

    def small_disk():
        # Without SIGXFSZ ignored the kernel kills the writer instead of
        # failing its write; a full disk sends no signal.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    _fails_to_write(_run(args, work + '.log', preexec_fn=small_disk),
                    work + '.log', work, previous, 'no space', 'EFBIG')
    assert _sha(previous) == before
    assert find_resumable_checkpoint(work) == previous

    log = finish_train(_run(args, work + '.resume.log'), work + '.resume.log')
    assert f'--resume: continuing from {previous}' in log
    assert_same_run(osp.join(ref, 'epoch_2.pth'),
                    osp.join(work, 'epoch_2.pth'))


def _unshare_works(*flags) -> bool:
    try:
        return subprocess.run(['unshare', *flags, 'true'],
                              capture_output=True).returncode == 0
    except OSError:
        return False


# Runs the command with the checkpoint directory ($1) bind-mounted read-only
# in a mount namespace of its own: nothing outside sees the mount, and it is
# gone when the command ends.
_READ_ONLY = ('mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && '
              'shift && exec "$@"')


@pytest.mark.slow
@pytest.mark.parametrize('fault', ['read_only', 'not_writable'])
def test_a_read_only_or_not_writable_checkpoint_dir_stops_the_run(
        fault, reference):
    """Checkpoints in their own directory (default_hooks.checkpoint.out_dir,
    logs stay in the work directory), which the resumed run cannot write:
    read-only (EROFS), or without write permission for a user that is not
    root (EACCES; `unshare --user` drops root's override of permission
    bits)."""
    flags = ['-r', '-m'] if fault == 'read_only' else ['-U']
    if not _unshare_works(*flags):
        pytest.skip(f'unshare {" ".join(flags)} is not allowed here')
    tmp, ref = reference['tmp'], reference['ref']
    work, out = str(tmp / fault), str(tmp / f'{fault}_ckpts')
    ckpt_dir = osp.join(out, fault)  # mmengine adds the work dir's name
    previous = _resumable_at_4(ref, work, ckpt_dir)
    before = _sha(previous)
    args = train_args(FUNMATCH, work, reference['root'],
                       reference['teacher'], *EPOCH_SCHEDULE,
                       f'default_hooks.checkpoint.out_dir={out}')
    args.append('--resume')
    if fault == 'read_only':
        prefix = ['unshare', *flags, 'sh', '-c', _READ_ONLY, 'sh', ckpt_dir]
        cause, name = 'the file system is read-only', 'EROFS'
    else:
        os.chmod(ckpt_dir, 0o555)
        prefix = ['unshare', *flags]
        cause, name = 'permission denied', 'EACCES'
    try:
        _fails_to_write(_run(args, work + '.log', prefix=prefix),
                        work + '.log', ckpt_dir, previous, cause, name)
    finally:
        os.chmod(ckpt_dir, 0o755)
    with open('/proc/self/mounts') as f:
        assert ckpt_dir not in f.read()  # the mount never existed here
    assert _sha(previous) == before
    assert find_resumable_checkpoint(work) == previous


@pytest.mark.slow
def test_two_nodes_stop_together_when_rank_0_cannot_write(reference):
    """Two nodes on tools/dist_train.sh from scratch, files limited to half a
    checkpoint: rank 0 cannot write iter_4.pth; rank 1 (which writes
    nothing) learns it in the same step and stops with the same message
    instead of waiting for rank 0 in the next collective."""
    tmp, ref = reference['tmp'], reference['ref']
    work = str(tmp / 'two_nodes')
    limit = os.path.getsize(osp.join(ref, 'iter_4.pth')) // 2

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    with socket.socket() as sock:  # a free port for the process group
        sock.bind(('127.0.0.1', 0))
        port = str(sock.getsockname()[1])
    cmd = ['bash', DIST_TRAIN, FUNMATCH, '1',
           *dist_options(work, reference['root'], reference['teacher'], 8)]
    nodes = []
    for rank in (0, 1):
        with open(f'{work}.node{rank}.log', 'w') as f:
            nodes.append(subprocess.Popen(
                cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT,
                env=dict(subprocess_env(), NNODES='2', NODE_RANK=str(rank),
                         MASTER_ADDR='127.0.0.1', PORT=port),
                preexec_fn=small_disk))
    logs = []
    for rank, proc in enumerate(nodes):
        proc.wait(timeout=600)
        with open(f'{work}.node{rank}.log') as f:
            logs.append(f.read())
        assert proc.returncode != 0, logs[-1][-3000:]
    for rank, text in enumerate(logs):
        assert (f'rank {rank}: training stopped: cannot write checkpoint '
                f'iter_4.pth in {work}: no space') in text, text[-3000:]
        assert ('No checkpoint of this run was written yet; --resume starts '
                'from scratch.') in text
        assert 'lost contact' not in text
    assert not [n for n in os.listdir(work) if '.pth' in n]
