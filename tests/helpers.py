"""Helpers shared by the reliability tests (one copy each): the demo configs,
a 16-image folder and a run on it in this process, tools/train.py in a
subprocess, a free port for a process group, and the bitwise comparison of
two runs' checkpoints."""
import os
import os.path as osp
import socket
import subprocess
import sys

import numpy as np
import torch
from mmengine.config import Config
from PIL import Image

from mmfunmatch.compat import load_runner_checkpoint
from tests.conftest import REPO, tiny_classifier

DEMO = osp.join(REPO, 'configs', 'funmatch', 'demo')
FUNMATCH = osp.join(DEMO, 'digits_funmatch_student.py')
LABEL = osp.join(DEMO, 'digits_label_student.py')

EPOCH_SCHEDULE = [
    'train_cfg.max_epochs=2', 'param_scheduler.0.end=1',
    'param_scheduler.1.begin=1', 'param_scheduler.1.end=2'
]


def subprocess_env() -> dict:
    """The environment of a tool run in a subprocess."""
    # The launch scripts call `python`: make it this interpreter (a venv that
    # was not activated, as under `make test`).
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ['PATH']
    return dict(os.environ, PATH=path, PYTHONPATH=REPO, OMP_NUM_THREADS='1',
                MKL_NUM_THREADS='1')


def free_port() -> int:
    """A TCP port free on this machine now, for a process group's master."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def truncate(src: str, dst: str, fraction: float = 0.5) -> None:
    """Write the first ``fraction`` of ``src`` to ``dst`` (what a killed
    writer leaves)."""
    with open(src, 'rb') as f:
        data = f.read()
    with open(dst, 'wb') as f:
        f.write(data[:int(len(data) * fraction)])


# -- a 16-image folder and a run on it in this process ------------------------
def image_folder(root, n_per_class: int = 8, corrupt: bool = False) -> str:
    """Two classes of random 16 px images; with ``corrupt``, a/0.png is cut
    short (16 files either way, so no sample is dropped by drop_last)."""
    rng = np.random.default_rng(1)
    for c in ('a', 'b'):
        os.makedirs(osp.join(root, c), exist_ok=True)
        for i in range(n_per_class):
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), np.uint8)).save(
                osp.join(root, c, f'{i}.png'))
    if corrupt:
        path = osp.join(root, 'a', '0.png')
        truncate(path, path)
    return root


def tiny_cfg(work_dir: str, data_root: str, name: str, **loader) -> Config:
    """A width-4 ResNet-18 classifier on a 16-image folder, with the
    runtime defaults of every mmfunmatch config, run in this process:
    4 iterations per epoch, 2 epochs, a checkpoint every 3 iterations and
    every epoch."""
    cfg = Config.fromfile(LABEL)
    cfg.work_dir = work_dir
    cfg.experiment_name = name
    cfg.model = tiny_classifier(width=4, num_classes=2)
    cfg.model.data_preprocessor = dict(
        type='ClsDataPreprocessor', mean=[127.5] * 3, std=[127.5] * 3,
        to_rgb=True)
    cfg.train_dataloader.update(
        dict(batch_size=4, num_workers=0, persistent_workers=False), **loader)
    cfg.train_dataloader.dataset.update(
        data_root=data_root, data_prefix='', pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='RandomResizedCrop', scale=16, backend='cv2'),
            dict(type='PackInputs')
        ])
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
    cfg.train_cfg = dict(by_epoch=True, max_epochs=2)
    cfg.param_scheduler = None
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.update(interval=1, iter_interval=3,
                                        max_keep_ckpts=-1)
    cfg.randomness = dict(seed=0, deterministic=True)
    cfg.log_level = 'WARNING'
    return cfg


# -- tools/train.py on the FunMatch demo, in a subprocess ---------------------
def teacher_file(path: str) -> str:
    """A teacher weight file (plain state dict) for the demo's teacher."""
    from mmpretrain.registry import MODELS
    cfg = Config.fromfile(FUNMATCH)
    torch.manual_seed(123)
    teacher = MODELS.build(cfg.teacher_model)
    teacher.init_weights()
    with torch.no_grad():  # a confident teacher: larger logits
        teacher.head.fc.weight.mul_(20)
    torch.save(teacher.state_dict(), path)
    return path


def train_args(config, work, root, teacher, *extra):
    """tools/train.py on the FunMatch demo, 96 images of train_small,
    batch 16: 6 iterations per epoch, 12 in all, two dataloader workers."""
    return [
        osp.join(REPO, 'tools', 'train.py'), config, '--work-dir', work,
        '--no-validate', '--cfg-options',
        f'model.teachers.0.checkpoint={teacher}',
        f'train_dataloader.dataset.data_root={root}',
        f'val_dataloader.dataset.data_root={root}',
        f'test_dataloader.dataset.data_root={root}',
        'train_dataloader.dataset.indices=96',
        'train_dataloader.batch_size=16',
        'train_dataloader.num_workers=2', 'randomness.deterministic=True',
        'default_hooks.logger.interval=1',
        'default_hooks.checkpoint.iter_interval=4',
        'default_hooks.checkpoint.max_keep_ckpts=-1', *extra
    ]


def start_train(args, log):
    """Start ``python *args`` (e.g. :func:`train_args`) in the repository,
    its output to the file ``log``."""
    with open(log, 'w') as f:
        return subprocess.Popen([sys.executable, *args], cwd=REPO,
                                env=subprocess_env(), stdout=f,
                                stderr=subprocess.STDOUT)


def finish_train(proc, log, timeout=600) -> str:
    """Wait for ``proc``; it must succeed. Returns its log."""
    proc.wait(timeout=timeout)
    with open(log) as f:
        text = f.read()
    assert proc.returncode == 0, text[-4000:]
    return text


def assert_same_run(ref: str, resumed: str) -> None:
    """Two checkpoints at the same iteration with bitwise equal weights,
    buffers and optimizer state."""
    a, b = load_runner_checkpoint(ref), load_runner_checkpoint(resumed)
    assert a['meta']['iter'] == b['meta']['iter']
    assert a['state_dict'].keys() == b['state_dict'].keys()
    for k, v in a['state_dict'].items():
        assert torch.equal(v, b['state_dict'][k]), k
    sa, sb = a['optimizer']['state'], b['optimizer']['state']
    assert sa.keys() == sb.keys()
    for i in sa:
        for name, v in sa[i].items():
            assert torch.equal(v, sb[i][name]), (i, name)


# -- multi-process runs through tools/dist_train.sh ------------------------
DIST_TRAIN = osp.join(REPO, 'tools', 'dist_train.sh')


def dist_options(work, root, teacher, per_rank_batch):
    """6 iterations per epoch, 2 epochs, checkpoints at 4, 6, 8, 12.

    Adam's eps is 1e-6 instead of the demo's 1e-8: with 1e-8 a gradient
    element at rounding level (~1e-9) takes a full lr step of random sign,
    so how far two layouts drift apart depended on the CPU's kernels (0.02 %
    to 1.2 % after 12 steps across ATEN_CPU_CAPABILITY / ONEDNN_MAX_CPU_ISA
    settings); with 1e-6 such a step is ~1e-3 of lr (0.04-0.05 % on all,
    with the strided per-rank layout; test_dist now compares at step 8).
    """
    return [
        '--work-dir', work, '--no-validate', '--cfg-options',
        f'model.teachers.0.checkpoint={teacher}',
        f'train_dataloader.dataset.data_root={root}',
        f'test_dataloader.dataset.data_root={root}',
        'train_dataloader.dataset.indices=96',
        f'train_dataloader.batch_size={per_rank_batch}',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'model.data_preprocessor.batch_augments=None', 'sync_bn=torch',
        'env_cfg.dist_cfg.timeout=60', 'randomness.deterministic=True',
        'default_hooks.logger.interval=1',
        'default_hooks.checkpoint.iter_interval=4',
        'default_hooks.checkpoint.max_keep_ckpts=-1',
        'optim_wrapper.optimizer.eps=1e-6', *EPOCH_SCHEDULE
    ]


def launch(cmd, log, **env):
    """Start ``cmd`` in its own session, output to ``log``."""
    with open(log, 'w') as f:
        return subprocess.Popen(cmd, cwd=REPO,
                                env=dict(subprocess_env(), **env),
                                stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True)


def two_nodes(work, root, teacher, log, *extra, **env):
    """tools/dist_train.sh as two nodes of one process each on loopback;
    ``env``: more environment variables for both (e.g. MAX_RESTARTS)."""
    port = str(free_port())
    cmd = ['bash', DIST_TRAIN, FUNMATCH, '1',
           *dist_options(work, root, teacher, 8), *extra]
    return [
        launch(cmd, f'{log}.node{rank}.log', NNODES='2',
                NODE_RANK=str(rank), MASTER_ADDR='127.0.0.1', PORT=port,
                **env)
        for rank in (0, 1)
    ]


def children(pid: int):
    """PIDs whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open(f'/proc/{entry}/stat') as f:
                    fields = f.read().rsplit(')', 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found
