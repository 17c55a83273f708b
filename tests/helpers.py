"""Reliability of long runs (docs/reliability.md): exact resume after SIGKILL,
atomic checkpoints, bad images, non-finite steps, untrusted files, config
errors. Real runner, real files, real kills; the end-to-end runs use
tools/train.py in a subprocess and are marked slow."""
import copy
import os
import os.path as osp
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import DefaultSampler
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import Runner
from PIL import Image

import mmfunmatch  # noqa: F401  (registers everything, applies compat)
from mmfunmatch.apis.validate import ConfigError, validate_config
from mmfunmatch.compat import load_runner_checkpoint
from mmfunmatch.datasets.transforms import (CorruptImageError,
                                            SafeLoadImageFromFile)
from mmfunmatch.engine.hooks import (NonFiniteError, find_resumable_checkpoint,
                                     is_complete_checkpoint)
from mmfunmatch.engine.hooks.checkpoint_hook import _prune
from mmfunmatch.engine.hooks.resume_hook import PositionSampler, SeededIndex
from tests.conftest import REPO, tiny_classifier

DEMO = osp.join(REPO, 'configs', 'funmatch', 'demo')
FUNMATCH = osp.join(DEMO, 'digits_funmatch_student.py')
LABEL = osp.join(DEMO, 'digits_label_student.py')


def _env() -> dict:
    # The launch scripts call `python`: make it this interpreter (a venv that
    # was not activated, as under `make test`).
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ['PATH']
    return dict(os.environ, PATH=path, PYTHONPATH=REPO, OMP_NUM_THREADS='1',
                MKL_NUM_THREADS='1')


def _truncate(src: str, dst: str, fraction: float = 0.5) -> None:
    with open(src, 'rb') as f:
        data = f.read()
    with open(dst, 'wb') as f:
        f.write(data[:int(len(data) * fraction)])


# -- atomic checkpoints and picking the newest complete one -------------------
_WRITER = textwrap.dedent('''
    import importlib.util, sys, torch
    # compat.py alone (not the whole package, for a fast start): its patch
    # makes mmengine's file writes atomic.
    spec = importlib.util.spec_from_file_location('compat', sys.argv[3])
    compat = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compat)
    compat._atomic_local_put()
    from mmengine.runner.checkpoint import save_checkpoint
    big = torch.zeros(int(sys.argv[2]) // 4)  # written for a while
    save_checkpoint(dict(state_dict=dict(w=big), meta=dict(iter=2)),
                    sys.argv[1])
''')


def test_kill_during_checkpoint_write_leaves_only_complete_files(tmp_path):
    """SIGKILL mmengine's own save_checkpoint in the middle of its write."""
    work = str(tmp_path)
    good = osp.join(work, 'iter_1.pth')
    torch.save(dict(state_dict=dict(w=torch.ones(3)), meta=dict(iter=1)),
               good)
    with open(osp.join(work, 'last_checkpoint'), 'w') as f:
        f.write(good)
    target = osp.join(work, 'iter_2.pth')
    proc = subprocess.Popen(
        [sys.executable, '-c', _WRITER, target, str(200 * 2**20),
         osp.join(REPO, 'mmfunmatch', 'compat.py')],
        env=_env(), cwd=REPO)
    deadline = time.time() + 120
    tmp = None
    while tmp is None and time.time() < deadline and proc.poll() is None:
        tmp = next((n for n in os.listdir(work) if '.tmp-' in n), None)
    assert tmp is not None, 'the writer never showed its temporary file'
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not osp.exists(target), 'a partial file under the final name'
    assert osp.exists(osp.join(work, tmp))
    assert not is_complete_checkpoint(osp.join(work, tmp))
    assert find_resumable_checkpoint(work) == good
    assert load_runner_checkpoint(good)['meta']['iter'] == 1


def test_truncated_or_stale_checkpoints_are_never_picked(tmp_path):
    work = str(tmp_path)
    old, new = osp.join(work, 'epoch_1.pth'), osp.join(work, 'epoch_2.pth')
    torch.save(dict(state_dict=dict(w=torch.ones(300))), old)
    # What mmengine's in-place writer leaves when killed: the newest file
    # cut short, and last_checkpoint already naming it.
    _truncate(old, new, 0.9)
    with open(osp.join(work, 'last_checkpoint'), 'w') as f:
        f.write(new)
    assert is_complete_checkpoint(old) and not is_complete_checkpoint(new)
    assert find_resumable_checkpoint(work) == old
    # last_checkpoint empty or naming a deleted file.
    for text in ('', osp.join(work, 'epoch_9.pth')):
        with open(osp.join(work, 'last_checkpoint'), 'w') as f:
            f.write(text)
        assert find_resumable_checkpoint(work) == old
    # best_*.pth hold no optimizer state: never a resume point.
    torch.save(dict(state_dict={}), osp.join(work, 'best_acc_epoch_3.pth'))
    assert find_resumable_checkpoint(work) == old
    os.remove(old)
    os.remove(new)
    assert find_resumable_checkpoint(work) is None


def test_retention_keeps_last_k_plus_every_mth(tmp_path):
    for step in range(1, 13):
        (tmp_path / f'iter_{step}.pth').write_bytes(b'x')
    removed = _prune(str(tmp_path), 'iter_{}.pth', keep_last=2, keep_every=5,
                     protect=[])
    left = sorted(int(re.findall(r'\d+', n)[0]) for n in os.listdir(tmp_path))
    assert left == [5, 10, 11, 12]
    assert len(removed) == 8


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


# -- bad images ---------------------------------------------------------------
def _write_modes(folder) -> dict:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    files = {}
    for name, img in (
            ('grey.png', Image.fromarray(rgb[..., 0])),
            ('rgba.png', Image.fromarray(np.dstack([rgb, rgb[..., :1]]))),
            ('cmyk.jpg', Image.fromarray(rgb).convert('CMYK')),
            ('palette.png', Image.fromarray(rgb).convert('P')),
            ('grey16.png',
             Image.fromarray(rgb[..., 0].astype(np.uint16) * 257)),
            ('rgb.jpg', Image.fromarray(rgb))):
        path = str(folder / name)
        img.save(path)
        files[name] = path
    return files


def test_colour_modes_are_converted(tmp_path):
    files = _write_modes(tmp_path)
    load = SafeLoadImageFromFile()
    for name, path in files.items():
        img = load(dict(img_path=path))['img']
        assert img.shape == (12, 10, 3) and img.dtype == np.uint8, name
        with Image.open(path) as pil:
            mode = pil.mode
            rgb = np.asarray(pil.convert('RGB')) if mode != 'I;16' else None
        if rgb is not None:  # BGR, as OpenCV decodes
            np.testing.assert_array_equal(img, rgb[..., ::-1], err_msg=name)
    grey16 = load(dict(img_path=files['grey16.png']))['img']
    grey8 = load(dict(img_path=files['grey.png']))['img']
    np.testing.assert_array_equal(grey16, grey8)
    white = SafeLoadImageFromFile(alpha_background=(255, 255, 255))
    assert white(dict(img_path=files['rgba.png']))['img'].mean() > \
        load(dict(img_path=files['rgba.png']))['img'].mean()


def test_corrupt_images_stop_by_default_and_are_skipped_on_request(tmp_path):
    files = _write_modes(tmp_path)
    bad = {
        'truncated.jpg': lambda p: _truncate(files['rgb.jpg'], p),
        'truncated.png': lambda p: _truncate(files['rgba.png'], p),
        'not_an_image.png': lambda p: open(p, 'wb').write(b'\x89PNG' * 9),
    }
    skip = SafeLoadImageFromFile(skip_corrupt=True)
    for i, (name, make) in enumerate(bad.items(), 1):
        path = str(tmp_path / name)
        make(path)
        with pytest.raises(CorruptImageError, match=re.escape(path)):
            SafeLoadImageFromFile()(dict(img_path=path))
        assert skip(dict(img_path=path)) is None
        assert skip.num_skipped == i


def _image_folder(root, n_per_class: int = 8, corrupt: bool = False) -> str:
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
        _truncate(path, path)
    return root


def _tiny_cfg(work_dir: str, data_root: str, name: str, **loader) -> Config:
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


@pytest.mark.slow
def test_a_corrupt_file_stops_the_run_naming_it_or_is_skipped(tmp_path):
    root = _image_folder(str(tmp_path / 'data'), corrupt=True)
    broken = osp.join(root, 'a', '0.png')
    for loader in ('LoadImageFromFile', 'SafeLoadImageFromFile'):
        cfg = _tiny_cfg(str(tmp_path / loader), root, f'stop_{loader}')
        cfg.train_dataloader.dataset.pipeline[0] = dict(type=loader)
        with pytest.raises(Exception, match=re.escape(broken)):
            Runner.from_cfg(cfg).train()
    # Skipped: counted across two dataloader workers, training completes.
    cfg = _tiny_cfg(str(tmp_path / 'skip'), root, 'skip', num_workers=2,
                    persistent_workers=True)
    cfg.train_dataloader.dataset.pipeline[0] = dict(
        type='SafeLoadImageFromFile', skip_corrupt=True)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 8
    load = runner.train_dataloader.dataset.pipeline.transforms[1]
    assert isinstance(load, SafeLoadImageFromFile)
    assert load.num_skipped >= 2  # drawn once per epoch (and maybe as a
    # random replacement)
    with open(osp.join(runner.log_dir, f'{runner.timestamp}.log')) as f:
        log = f.read()
    assert f'skipped corrupt image {broken}' in log


# -- non-finite steps ---------------------------------------------------------
@HOOKS.register_module(force=True)
class _InjectNonFinite(Hook):
    """Test fault: at one iteration, make the logits (so the loss) or the
    gradients non-finite, recording the weights before the step."""

    priority = 'VERY_LOW'

    def __init__(self, at_iter: int, kind: str) -> None:
        self.at_iter, self.kind = at_iter, kind
        self.before = None
        self._handle = None

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        if runner.iter + 1 != self.at_iter:
            return
        model = runner.model
        self.before = copy.deepcopy(dict(model.named_parameters()))
        if self.kind == 'loss':
            self._handle = model.head.fc.register_forward_hook(
                lambda m, i, out: out * float('inf'))
        else:
            self._handle = model.head.fc.weight.register_hook(
                lambda g: torch.full_like(g, float('nan')))


@pytest.mark.slow
@pytest.mark.parametrize('kind', ['loss', 'grad'])
def test_a_non_finite_step_stops_the_run_before_it_reaches_the_weights(
        kind, tmp_path):
    root = _image_folder(str(tmp_path / 'data'))
    work = str(tmp_path / 'work')
    cfg = _tiny_cfg(work, root, f'nan_{kind}')
    cfg.custom_hooks = [dict(type='_InjectNonFinite', at_iter=6, kind=kind)]
    runner = Runner.from_cfg(cfg)
    with pytest.raises(NonFiniteError, match='at iteration 6 ') as info:
        runner.train()
    assert ('non-finite loss (nan)' in str(info.value)) == (kind == 'loss')
    inject = next(h for h in runner.hooks if isinstance(h, _InjectNonFinite))
    # The optimizer never ran: every parameter as before the faulty step
    # (BatchNorm statistics of its forward pass are buffers, not weights).
    after = dict(runner.model.named_parameters())
    assert all(torch.equal(after[k], v) for k, v in inject.before.items())
    last = find_resumable_checkpoint(work)
    assert last == osp.join(work, 'epoch_1.pth') and last in str(info.value)
    ckpt = load_runner_checkpoint(last)
    assert ckpt['meta']['iter'] == 4
    assert all(torch.isfinite(v.float()).all()
               for v in ckpt['state_dict'].values())
    assert not any(re.match(r'(iter|epoch)_(\d+)', n) and int(
        re.findall(r'\d+', n)[0]) >= 6 for n in os.listdir(work))


@pytest.mark.slow
def test_skip_mode_drops_the_step_and_counts_it(tmp_path):
    root = _image_folder(str(tmp_path / 'data'))
    cfg = _tiny_cfg(str(tmp_path / 'work'), root, 'nan_skip')
    cfg.default_hooks.nonfinite.action = 'skip'
    cfg.custom_hooks = [dict(type='_InjectNonFinite', at_iter=5, kind='grad')]
    runner = Runner.from_cfg(cfg)
    runner.train()
    inject = next(h for h in runner.hooks if isinstance(h, _InjectNonFinite))
    assert runner.iter == 8
    assert runner.message_hub.get_info('nonfinite_skipped') == 1
    assert all(torch.isfinite(v.float()).all()
               for v in runner.model.state_dict().values())
    assert inject.before is not None


# -- untrusted files ----------------------------------------------------------
class _Payload:

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


@pytest.mark.slow
def test_pickle_payloads_are_refused_as_teacher_and_on_resume(tmp_path,
                                                               digits_root):
    marker = str(tmp_path / 'pwned')
    evil_teacher = str(tmp_path / 'teacher.pth')
    torch.save(dict(state_dict=dict(w=torch.ones(1)), x=_Payload(marker)),
               evil_teacher)
    from mmfunmatch.apis.cli import train_config
    cfg = train_config([
        FUNMATCH, '--work-dir', str(tmp_path / 'fm'), '--cfg-options',
        f'model.teachers.0.checkpoint={evil_teacher}',
        f'train_dataloader.dataset.data_root={digits_root}',
        f'val_dataloader.dataset.data_root={digits_root}',
        f'test_dataloader.dataset.data_root={digits_root}'
    ])
    with pytest.raises(RuntimeError, match='refusing to load'):
        Runner.from_cfg(cfg)
    assert not osp.exists(marker)

    # Resume: a real checkpoint, then the same with a payload slipped in.
    root = _image_folder(str(tmp_path / 'data'))
    work = str(tmp_path / 'work')
    cfg = _tiny_cfg(work, root, 'resume_clean')
    cfg.train_cfg.max_epochs = 1
    Runner.from_cfg(cfg).train()
    ckpt = osp.join(work, 'epoch_1.pth')
    cfg = _tiny_cfg(work, root, 'resume_clean_2')
    cfg.update(resume=True, load_from=ckpt)
    resumed = Runner.from_cfg(cfg)
    resumed.train()  # the project's own checkpoints load (allowlist)
    assert resumed.iter == 8
    data = torch.load(ckpt, weights_only=False)
    data['meta']['note'] = _Payload(marker)
    torch.save(data, ckpt)
    cfg = _tiny_cfg(work, root, 'resume_evil')
    cfg.update(resume=True, load_from=ckpt)
    with pytest.raises(RuntimeError, match='refusing to load'):
        Runner.from_cfg(cfg).train()
    assert not osp.exists(marker)


# -- config errors, before anything is built ----------------------------------
def _funmatch_cfg(root: str) -> Config:
    cfg = Config.fromfile(FUNMATCH)
    cfg.model.teachers[0].checkpoint = None
    for split in ('train', 'val', 'test'):
        cfg[f'{split}_dataloader'].dataset.data_root = root
    return cfg


def _student_view(cfg: Config) -> dict:
    return next(s for s in cfg.train_dataloader.dataset.pipeline
                if s['type'] == 'ConsistentView')


@pytest.mark.parametrize('break_it, fix', [
    (lambda c: c.model.student.head.update(num_classes=7),
     'Set the student head num_classes=10'),
    (lambda c: _student_view(c).update(teacher_sizes=[24]),
     'model.teachers.0.size is 16; make them equal'),
    (lambda c: c.model.student.backbone.update(img_size=32),
     'set student_size to 32'),
    (lambda c: c.train_dataloader.update(batch_size=1),
     'mixup needs at least 2 images per batch'),
    (lambda c: c.train_dataloader.update(drop_last=False),
     'Set train_dataloader.drop_last=True'),
    (lambda c: _student_view(c).update(mode='same/xx'),
     "unknown ConsistentView mode 'same/xx'"),
    (lambda c: c.train_dataloader.dataset.update(data_root='/nonexistent'),
     'python tools/prepare_digits.py /nonexistent'),
    (lambda c: c.model.teachers[0].update(checkpoint='/nonexistent.pth'),
     'Set model.teachers.0.checkpoint'),
], ids=['classes', 'teacher_size', 'student_size', 'mixup_batch_1',
        'mixup_drop_last', 'ablation_mode', 'data_root', 'teacher_file'])
def test_config_errors_are_caught_before_building(break_it, fix, tmp_path):
    root = str(tmp_path)  # exists; nothing is read from it
    cfg = _funmatch_cfg(root)
    validate_config(cfg)  # the unbroken config passes
    break_it(cfg)
    with pytest.raises(ConfigError, match=re.escape(fix)):
        validate_config(cfg)


# -- exact resume after SIGKILL, end to end -----------------------------------
def _teacher_file(path: str) -> str:
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


EPOCH_SCHEDULE = [
    'train_cfg.max_epochs=2', 'param_scheduler.0.end=1',
    'param_scheduler.1.begin=1', 'param_scheduler.1.end=2'
]


def _train_args(config, work, root, teacher, *extra):
    """tools/train.py on the FunMatch demo, 96 images of train_small,
    batch 16: 6 iterations per epoch, 12 in all, two dataloader workers."""
    return [
        osp.join(REPO, 'tools', 'train.py'), config, '--work-dir', work,
        '--no-validate', '--cfg-options',
        f'model.teachers.0.checkpoint={teacher}',
        f'train_dataloader.dataset.data_root={root}',
        f'test_dataloader.dataset.data_root={root}',
        'train_dataloader.dataset.indices=96',
        'train_dataloader.batch_size=16',
        'train_dataloader.num_workers=2', 'randomness.deterministic=True',
        'default_hooks.logger.interval=1',
        'default_hooks.checkpoint.iter_interval=4',
        'default_hooks.checkpoint.max_keep_ckpts=-1', *extra
    ]


def _start(args, log):
    with open(log, 'w') as f:
        return subprocess.Popen([sys.executable, *args], cwd=REPO,
                                env=_env(), stdout=f,
                                stderr=subprocess.STDOUT)


def _finish(proc, log, timeout=600) -> str:
    proc.wait(timeout=timeout)
    with open(log) as f:
        text = f.read()
    assert proc.returncode == 0, text[-4000:]
    return text


def _kill_when(proc, log, path, timeout=600) -> None:
    """SIGKILL a running training as soon as ``path`` exists."""
    deadline = time.time() + timeout
    while not osp.exists(path):
        assert proc.poll() is None, open(log).read()[-4000:]
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _assert_same_run(ref: str, resumed: str) -> None:
    a, b = load_runner_checkpoint(ref), load_runner_checkpoint(resumed)
    assert a['meta']['iter'] == b['meta']['iter']
    for k, v in a['state_dict'].items():
        assert torch.equal(v, b['state_dict'][k]), k
    sa, sb = a['optimizer']['state'], b['optimizer']['state']
    assert sa.keys() == sb.keys()
    for i in sa:
        for name, v in sa[i].items():
            assert torch.equal(v, sb[i][name]), (i, name)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_is_bitwise_exact(tmp_path, digits_root):
    """tools/train.py on the FunMatch demo (mixup, 2 dataloader workers),
    SIGKILLed after its mid-epoch checkpoint at iteration 8 (epoch 2, batch
    2 of 6), resumed with --resume: the same student, optimizer state and
    mixup generator as the run left alone."""
    teacher = _teacher_file(str(tmp_path / 'teacher.pth'))
    ref, work = str(tmp_path / 'ref'), str(tmp_path / 'killed')
    args = _train_args(FUNMATCH, work, digits_root, teacher, *EPOCH_SCHEDULE)
    ref_proc = _start(
        _train_args(FUNMATCH, ref, digits_root, teacher, *EPOCH_SCHEDULE),
        ref + '.log')
    _kill_when(_start(args, work + '.log'), work + '.log',
               osp.join(work, 'iter_8.pth'))
    # What a kill while saving leaves behind: a newer file cut short, with
    # last_checkpoint naming it, and a stray temporary file.
    newest = find_resumable_checkpoint(work)
    assert osp.basename(newest) in ('iter_8.pth', 'epoch_1.pth')
    _truncate(newest, osp.join(work, 'iter_11.pth'))
    with open(osp.join(work, 'last_checkpoint'), 'w') as f:
        f.write(osp.join(work, 'iter_11.pth'))
    _truncate(newest, osp.join(work, 'iter_11.pth.tmp-4242'))
    assert find_resumable_checkpoint(work) == newest

    log = _finish(_start(args + ['--resume'], work + '.resume.log'),
                  work + '.resume.log')
    _finish(ref_proc, ref + '.log')
    assert f'--resume: continuing from {newest}' in log
    assert 'skipping incomplete checkpoint' in log
    assert not osp.exists(osp.join(work, 'iter_11.pth.tmp-4242'))
    if newest.endswith('iter_8.pth'):
        assert 'Resuming inside epoch 2: skipping its first 2 batches' in log
    _assert_same_run(osp.join(ref, 'epoch_2.pth'),
                     osp.join(work, 'epoch_2.pth'))
    # Teachers are rebuilt from their own file, never saved.
    for name in os.listdir(work):
        if is_complete_checkpoint(osp.join(work, name)):
            keys = load_runner_checkpoint(osp.join(work, name))['state_dict']
            # The student, and the mixup generator beside it.
            assert 'data_preprocessor._extra_state' in keys
            assert all(k.startswith('student.') for k in keys
                       if k != 'data_preprocessor._extra_state')


@pytest.mark.slow
def test_iteration_loop_resumes_exactly_without_replaying_data(tmp_path):
    """IterBasedTrainLoop + InfiniteSampler (the small-data configs): a
    resume from iteration 4 ends bitwise like the run left alone, even with
    another number of dataloader workers, and mmengine's replay of the 4
    finished iterations loads no data."""
    root = _image_folder(str(tmp_path / 'data'))

    def cfg_for(work, name, workers):
        cfg = _tiny_cfg(work, root, name, num_workers=workers,
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
    _assert_same_run(osp.join(ref, 'iter_8.pth'), osp.join(work, 'iter_8.pth'))
