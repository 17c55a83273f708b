"""The replay store end to end (docs/replay.md): tools/label_teacher.py
writes it, tools/train.py trains from it. Real runner, real image files,
real dataloader workers, real SIGKILL; marked slow.

- From an fp32 store the student ends bitwise equal to the online one.
- A run whose teacher file or pipeline differs, or that asks for more
  epochs than stored without cycling, is refused before its first step,
  naming the key; a damaged shard stops the run naming the shard.
- A labelling run killed with SIGKILL resumes without redoing finished
  shards and ends with the bytes of an uninterrupted run.
- Two processes (torchrun for the labelling, tools/dist_train.sh for the
  students): the student from the store is bitwise the online one too.
- Cycling replays stored epoch e mod E: its per-step check (sample, crop,
  flip, mixup weight and partner equal to the stored ones) passes, at
  another student size.
"""
import os
import os.path as osp
import shutil
import signal
import sys
import time

import pytest
import torch

from tests.conftest import REPO
from tests.helpers import (DIST_TRAIN, EPOCH_SCHEDULE, FUNMATCH,
                           assert_same_run, finish_train, free_port, launch,
                           start_train, teacher_file, train_args)

pytestmark = pytest.mark.slow

LABEL = osp.join(REPO, 'tools', 'label_teacher.py')
REPLAY = osp.join(REPO, 'configs', 'funmatch', 'replay',
                  'digits_replay_student.py')
STORED_EPOCHS = 8


def options(root, teacher):
    """train_args' --cfg-options: 96 images, batch 16 (6 steps per epoch),
    two dataloader workers, 2 epochs."""
    args = train_args(FUNMATCH, 'unused', root, teacher, *EPOCH_SCHEDULE)
    return args[args.index('--cfg-options') + 1:]


def label_args(store, root, teacher, epochs=STORED_EPOCHS):
    return [LABEL, FUNMATCH, store, '--epochs', str(epochs),
            '--cfg-options', *options(root, teacher)]


def replay_args(work, store, root, teacher, *extra):
    args = train_args(REPLAY, work, root, teacher, *EPOCH_SCHEDULE)
    return args + [f'model.store={store}', *extra]


def shard_files(store):
    return sorted(n for n in os.listdir(store)
                  if n.endswith(('.safetensors', '.sha256', '.json')))


@pytest.fixture(scope='module')
def made(tmp_path_factory, digits_root):
    """An uninterrupted 8-epoch store, and the online run of 2 epochs."""
    tmp = tmp_path_factory.mktemp('replay')
    teacher = teacher_file(str(tmp / 'teacher.pth'))
    store, online = str(tmp / 'store'), str(tmp / 'online')
    procs = [(start_train(label_args(store, digits_root, teacher),
                          store + '.log'), store + '.log'),
             (start_train(train_args(FUNMATCH, online, digits_root, teacher,
                                     *EPOCH_SCHEDULE), online + '.log'),
              online + '.log')]
    for proc, log in procs:
        finish_train(proc, log)
    return dict(tmp=tmp, teacher=teacher, store=store, online=online,
                root=digits_root)


def test_student_from_the_store_is_bitwise_the_online_student(made):
    work = str(made['tmp'] / 'replayed')
    finish_train(
        start_train(replay_args(work, made['store'], made['root'],
                                made['teacher']), work + '.log'),
        work + '.log')
    assert_same_run(osp.join(made['online'], 'epoch_2.pth'),
                    osp.join(work, 'epoch_2.pth'))


def test_refusals_name_what_differs(made):
    """Each refused run stops before its first step (no iteration logged)
    with exit code 2; the damaged shard after epoch 1, naming the file."""
    tmp, root, store = made['tmp'], made['root'], made['store']
    other_teacher = str(tmp / 'other_teacher.pth')
    state = torch.load(made['teacher'], weights_only=True)
    state['head.fc.bias'] = state['head.fc.bias'] + 1
    torch.save(state, other_teacher)
    damaged = str(tmp / 'damaged')
    shutil.copytree(store, damaged)
    shard = osp.join(damaged, 'epoch_00001_rank_000.safetensors')
    data = bytearray(open(shard, 'rb').read())
    data[-5] ^= 1
    open(shard, 'wb').write(bytes(data))

    cases = dict(
        teacher=(replay_args(str(tmp / 'r1'), store, root, other_teacher),
                 'model.teachers.0.checkpoint_sha256: store'),
        pipeline=(replay_args(str(tmp / 'r2'), store, root, made['teacher'],
                              'train_dataloader.dataset.pipeline.1.scale='
                              '(0.5,1.0)'),
                  'train_dataloader.dataset.pipeline: store'),
        epochs=(replay_args(str(tmp / 'r3'), store, root, made['teacher'],
                            'train_cfg.max_epochs=9'),
                'holds 8 epochs. Label more'),
        damaged=(replay_args(str(tmp / 'r4'), damaged, root,
                             made['teacher']),
                 'epoch_00001_rank_000.safetensors is corrupt'),
    )
    procs = {k: start_train(a, str(tmp / f'{k}.log'))
             for k, (a, _) in cases.items()}
    for name, proc in procs.items():
        proc.wait(timeout=600)
        with open(tmp / f'{name}.log') as f:
            text = f.read()
        assert proc.returncode == 2, (name, text[-3000:])
        assert cases[name][1] in text, (name, text[-3000:])
        trained = 'Epoch(train) [1]' in text
        assert trained == (name == 'damaged'), name
        if name == 'damaged':  # epoch 1 trained, epoch 2 never started
            assert 'Epoch(train) [2]' not in text


def test_labelling_killed_resumes_to_the_same_bytes(made):
    killed = str(made['tmp'] / 'killed')
    args = label_args(killed, made['root'], made['teacher'])
    proc = start_train(args, killed + '.log')
    third = osp.join(killed, 'epoch_00002_rank_000.safetensors')
    deadline = time.time() + 600
    while not osp.exists(third):
        assert proc.poll() is None, open(killed + '.log').read()[-3000:]
        assert time.time() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {n: os.stat(osp.join(killed, n)).st_mtime_ns
            for n in shard_files(killed)}
    assert shard_files(made['store']) != sorted(done)  # really cut short
    log = finish_train(start_train(args, killed + '.2.log'),
                       killed + '.2.log')
    first = sum(n.endswith('.safetensors') and n.startswith('epoch')
                for n in done)
    assert f'continuing at epoch {first}.' in log
    for name, mtime in done.items():  # finished shards not written again
        if name.startswith('epoch'):
            assert os.stat(osp.join(killed, name)).st_mtime_ns == mtime
    assert shard_files(killed) == shard_files(made['store'])
    for name in shard_files(killed) + ['manifest.json']:
        with open(osp.join(killed, name), 'rb') as a, open(
                osp.join(made['store'], name), 'rb') as b:
            assert a.read() == b.read(), name


def test_cycling_replays_the_stored_epochs_at_another_student_size(made):
    work = str(made['tmp'] / 'cycled')
    args = replay_args(work, made['store'], made['root'], made['teacher'],
                       'model.cycle=True', 'train_cfg.max_epochs=10',
                       'param_scheduler.1.end=10',
                       'train_dataloader.dataset.pipeline.1.student_size=12',
                       'default_hooks.checkpoint.iter_interval=1000')
    log = finish_train(start_train(args, work + '.log'), work + '.log')
    assert 'Epoch(train) [10][6/6]' in log


def test_two_processes_label_and_replay_bitwise(made):
    """2 processes x 8 images per step, no dataloader workers."""
    tmp, root, teacher = made['tmp'], made['root'], made['teacher']
    opts = [o for o in options(root, teacher)
            if not o.startswith(('train_dataloader.batch_size',
                                 'train_dataloader.num_workers'))]
    opts += ['train_dataloader.batch_size=8',
             'train_dataloader.num_workers=0',
             'train_dataloader.persistent_workers=False']
    store = str(tmp / 'store2')
    label = launch([sys.executable, '-m', 'torch.distributed.run',
                    '--nproc-per-node', '2', '--master-port',
                    str(free_port()), LABEL, FUNMATCH, store, '--launcher',
                    'pytorch', '--cfg-options', *opts], store + '.log')
    online = launch(['bash', DIST_TRAIN, FUNMATCH, '2', '--work-dir',
                     str(tmp / 'online2'), '--cfg-options', *opts],
                    str(tmp / 'online2.log'), PORT=str(free_port()))
    finish_train(label, store + '.log')
    assert sorted(n for n in os.listdir(store) if n.startswith('epoch_')
                  and n.endswith('.safetensors')) == [
        f'epoch_0000{e}_rank_00{r}.safetensors'
        for e in (0, 1) for r in (0, 1)]
    replay = launch(['bash', DIST_TRAIN, REPLAY, '2', '--work-dir',
                     str(tmp / 'replay2'), '--cfg-options', *opts,
                     f'model.store={store}'], str(tmp / 'replay2.log'),
                    PORT=str(free_port()))
    finish_train(online, str(tmp / 'online2.log'))
    finish_train(replay, str(tmp / 'replay2.log'))
    assert_same_run(str(tmp / 'online2' / 'epoch_2.pth'),
                    str(tmp / 'replay2' / 'epoch_2.pth'))
