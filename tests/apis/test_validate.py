"""The config checks (mmfunmatch/apis/validate.py): each mistake is caught
before anything is built, with a message that names the fix; and the
schedule against the run length: a warm-up longer than
the run is named in the project's own words, from the config where the
config fixes the run length, and through the real runner where it takes the
data set's length; ``fit_warmup`` shortens such a warm-up to the run."""
import glob
import math
import os.path as osp
import re

import pytest
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.registry import RUNNERS

from mmfunmatch.apis.cli import train_config
from mmfunmatch.apis.validate import ConfigError, validate_config
from mmfunmatch.models.teacher_spec import teacher_specs
from mmfunmatch.utils import dataset_chain
from tests.conftest import REPO

CONFIGS = osp.join(REPO, 'configs', 'funmatch')
MAIN = osp.join(CONFIGS, 'r50_bit152x2_imagenet.py')
CUSTOM = osp.join(CONFIGS, 'r50_bit152x2_custom_128px.py')
DEMO = osp.join(CONFIGS, 'demo', 'digits_funmatch_student.py')

# Small pre-activation ResNetV2s in place of BiT-R152x2 and BiT-R50x1 (the
# student keeps its config's class and init_cfg).
TINY = dict(model_name='resnetv2_18', channels=(16, 32, 64, 128),
            stem_chs=16)


# -- config errors, before anything is built ----------------------------------
def _funmatch_cfg(root: str) -> Config:
    cfg = Config.fromfile(DEMO)
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


# -- the schedule against the run length --------------------------------------
def _offline(cfg: Config, root: str) -> Config:
    """No teacher file, every data root ``root``: only the schedule is at
    fault."""
    for t in teacher_specs(cfg.model.get('teachers') or []):
        cfg.merge_from_dict({f'{t.key}.checkpoint': None})
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset_chain(cfg[split].dataset)[-1].data_root = root
    return cfg


def _ann_file(digits_root: str, path: str, n: int) -> str:
    """``n`` digits of ``train_small`` as an ImageNet annotation file."""
    files = sorted(glob.glob(osp.join(digits_root, 'train_small', '*',
                                      '*.png')))[:n]
    with open(path, 'w') as f:
        for p in files:
            label = osp.basename(osp.dirname(p))
            f.write(f'{label}/{osp.basename(p)} {label}\n')
    return path


def smoke_config(tmp_path, digits_root, *options: str) -> Config:
    """The issue's smoke run of the main recipe (one epoch on a small folder:
    16 images, batch 2, so 8 iterations), through tools/train.py's command
    line, with small models at 32 px."""
    ann = _ann_file(digits_root, str(tmp_path / 'train.txt'), 16)
    cfg = train_config([
        MAIN, '--work-dir', str(tmp_path / 'work'), '--no-validate',
        '--cfg-options', 'train_cfg.max_epochs=1',
        'model.teachers.bit.checkpoint=None', 'model.teachers.bit.size=32',
        f'train_dataloader.dataset.data_root={digits_root}',
        'train_dataloader.dataset.data_prefix=train_small',
        f'train_dataloader.dataset.ann_file={ann}',
        'train_dataloader.dataset.pipeline.1.student_size=32',
        'train_dataloader.dataset.pipeline.1.teacher_sizes=[32]',
        f'test_dataloader.dataset.data_root={digits_root}',
        'test_dataloader.dataset.pipeline.1.student_size=32',
        'test_dataloader.dataset.pipeline.1.teacher_sizes=[32]',
        'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'train_dataloader.pin_memory=False', *options
    ])
    cfg.model.teachers.bit.model.update(TINY)
    cfg.model.student.update(TINY)
    cfg.default_hooks.checkpoint = None
    return cfg


class _Record(Hook):
    """The student's head when training starts and the lr of every step."""

    def __init__(self) -> None:
        self.head = None
        self.lrs = []

    def before_train(self, runner) -> None:
        fc = runner.model.student.model.get_classifier()
        self.head = (fc.weight.detach().clone(), fc.bias.detach().clone())

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self.lrs.append(runner.optim_wrapper.get_lr()['lr'][0])


# -- through the runner: the length depends on the data set -------------------
def test_warmup_longer_than_the_run_is_named_before_any_step(
        tmp_path, digits_root):
    cfg = smoke_config(tmp_path, digits_root)
    # The config check cannot know the run length: the epoch has as many
    # steps as the folder has batches.
    assert cfg.runner_type == 'CheckedRunner'
    runner = RUNNERS.build(cfg)
    with pytest.raises(ConfigError) as err:
        runner.train()
    message = str(err.value)
    for fragment in (
            'param_scheduler.0 (LinearLR) warms up for 5000 iterations',
            'the whole run is 8 iterations (train_cfg.max_epochs=1 x 8 '
            'iterations per epoch: 16 training images, batch 2)',
            'param_scheduler.1 (CosineAnnealingLR), which starts when the '
            'warm-up ends, would never act',
            'Set param_scheduler.0.end and param_scheduler.1.begin to fewer '
            'than 8 (e.g. 1) or lengthen the run (train_cfg.max_epochs)',
            '--cfg-options fit_warmup=0.1'):
        assert fragment in message, message
    assert runner.iter == 0


def test_fit_warmup_shortens_the_warmup_and_the_decay_ends_at_the_last_step(
        tmp_path, digits_root):
    cfg = smoke_config(tmp_path, digits_root, 'fit_warmup=0.25')
    runner = RUNNERS.build(cfg)
    record = _Record()
    runner.register_hook(record)
    runner.train()
    assert runner.iter == 8
    warm, cos = runner.param_schedulers
    assert (type(warm).__name__, warm.begin, warm.end) == ('LinearLR', 0, 2)
    assert (type(cos).__name__, cos.begin, cos.end) == (
        'CosineAnnealingLR', 2, 8)
    lrs = record.lrs
    assert len(lrs) == 8
    assert lrs[0] == pytest.approx(0.03 * 1e-4)
    assert lrs[2] == pytest.approx(0.03)  # the peak, when the warm-up ends
    # Then the cosine over the 6 steps left, to 0 at the end of the run.
    assert lrs[2:] == pytest.approx(
        [0.015 * (1 + math.cos(math.pi * k / 6)) for k in range(6)])
    # Item 3 through the runner: the student starts from a zero head.
    weight, bias = record.head
    assert not weight.any() and not bias.any()


def test_fit_warmup_in_epochs_ends_the_decay_with_the_run(tmp_path,
                                                          digits_root):
    """The demo's warm-up is in epochs (converted to iterations): 25 of 250
    epochs. Run for 2 epochs with fit_warmup it lasts 1 epoch, and the
    cosine, set to end at epoch 250, ends at the run's last step."""
    cfg = _offline(Config.fromfile(DEMO), digits_root)
    cfg.merge_from_dict({
        'train_cfg.max_epochs': 2, 'fit_warmup': 0.1,
        'train_dataloader.dataset.indices': 64,
        'train_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False,
        'default_hooks.checkpoint': None,
        'runner_type': 'CheckedRunner', 'val_cfg': None,
        'val_dataloader': None, 'val_evaluator': None,
        'work_dir': str(tmp_path / 'work')})
    validate_config(cfg)  # fit_warmup: left to the runner
    runner = RUNNERS.build(cfg)
    runner.train()
    assert runner.iter == 4  # 64 images, batch 32, 2 epochs
    warm, cos = runner.param_schedulers
    assert (warm.begin, warm.end, cos.begin, cos.end) == (0, 2, 2, 4)


# -- from the config alone ----------------------------------------------------
def test_step_loop_warmup_longer_than_the_run(tmp_path):
    cfg = _offline(Config.fromfile(CUSTOM), str(tmp_path))
    cfg.train_cfg.max_iters = 100
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    message = str(err.value)
    for fragment in (
            'param_scheduler.0 (LinearLR) warms up for 1500 iterations, but '
            'the whole run is 100 iterations (train_cfg.max_iters)',
            'Set param_scheduler.0.end and param_scheduler.1.begin to fewer '
            'than 100 (e.g. 10) or lengthen the run (train_cfg.max_iters)'):
        assert fragment in message, message
    assert message.count('\n  - ') == 1  # nothing else is wrong

    cfg.fit_warmup = 0.1  # the runner will shorten it: no error
    validate_config(cfg)


def test_epoch_warmup_longer_than_the_run(tmp_path):
    cfg = _offline(Config.fromfile(DEMO), str(tmp_path))
    cfg.train_cfg.max_epochs = 2
    with pytest.raises(ConfigError, match=(
            r'param_scheduler\.0 \(LinearLR\) warms up for 25 epochs, but '
            r'the whole run is 2 epochs \(train_cfg\.max_epochs\)')):
        validate_config(cfg)


def test_a_run_too_short_for_any_warmup(tmp_path):
    cfg = _offline(Config.fromfile(CUSTOM), str(tmp_path))
    cfg.train_cfg.max_iters = 1
    cfg.fit_warmup = 0.5
    with pytest.raises(ConfigError, match=(
            'A run of 1 iteration has no room for a warm-up: lengthen the '
            r'run \(train_cfg\.max_iters\) or remove param_scheduler\.0 and '
            r'set param_scheduler\.1\.begin=0')):
        validate_config(cfg)


def test_a_scheduler_after_the_run_without_a_warmup(tmp_path):
    cfg = _offline(Config.fromfile(CUSTOM), str(tmp_path))
    cfg.param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=False,
                                begin=200)]
    cfg.train_cfg.max_iters = 100
    with pytest.raises(ConfigError, match=(
            r'param_scheduler\.0 \(CosineAnnealingLR\) begins at iteration '
            r'200, but the whole run is 100 iterations')):
        validate_config(cfg)


@pytest.mark.parametrize('fraction', [0, 1, 1.5, 'yes', True])
def test_fit_warmup_must_be_a_fraction(fraction, tmp_path):
    cfg = _offline(Config.fromfile(CUSTOM), str(tmp_path))
    cfg.fit_warmup = fraction
    with pytest.raises(ConfigError,
                       match='fit_warmup must be a fraction of the run'):
        validate_config(cfg)


@pytest.mark.parametrize('path', sorted(
    p for p in glob.glob(osp.join(CONFIGS, '**', '*.py'), recursive=True)
    if osp.basename(p) != '_base_.py'), ids=lambda p: osp.relpath(p, CONFIGS))
def test_shipped_schedules_fit_their_runs(path, tmp_path):
    validate_config(_offline(Config.fromfile(path), str(tmp_path)))

