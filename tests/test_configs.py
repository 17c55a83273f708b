"""Every config under configs/funmatch (demo/ aside) builds and trains one
step through MMEngine's runner on a tiny data set in the layout it reads, and
holds the settings it claims: the paper's recipe and numbers, one crop per
image at every model's resolution, the ensemble target, the evaluation crop,
unlabelled out-of-domain images.

Reduced for speed through config options only: images at a quarter of their
size, a batch of 2, the 236 M-parameter R152x2 teacher swapped for a small
ResNetV2 (``test_main_config_builds_the_real_models`` builds the real one).
"""
import copy
import glob
import os
import os.path as osp
from typing import Dict, List

import cv2
import mat4py
import numpy as np
import pytest
import torch
from mmcv.transforms import CenterCrop
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmpretrain.datasets.transforms import ResizeEdge
from mmpretrain.registry import MODELS, TRANSFORMS
from mmpretrain.structures import DataSample

import mmfunmatch  # noqa: F401
from mmfunmatch.apis.validate import validate_config
from mmfunmatch.datasets.stored_teacher import (sample_key,
                                                save_stored_teacher)
from mmfunmatch.models.losses import KLDivergenceT
from mmfunmatch.models.teacher_spec import teacher_specs

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG_DIR = osp.join(REPO, 'configs', 'funmatch')
MAIN = osp.join(CONFIG_DIR, 'r50_bit152x2_imagenet.py')
# Left to their own tests: demo/ (tests/projects/funmatch_paper/), replay/
# (students of a replay store, which need a labelled store to build:
# tests/replay/test_configs.py, tests/tools/test_label_teacher.py), byot/
# (no teacher, no distillation loss: tests/tools/test_train_distillers.py),
# fewshot/ (the harder split's study, with its teacher and label-only rows:
# tests/projects/funmatch_paper/test_ablation.py).
CONFIGS = sorted(
    p for p in glob.glob(osp.join(CONFIG_DIR, '**', '*.py'), recursive=True)
    if not any(f'{os.sep}{d}{os.sep}' in p
               for d in ('demo', 'replay', 'byot', 'fewshot')))

# A small pre-activation ResNetV2 in place of BiT-R152x2 (0.7 M parameters).
TINY_TEACHER = dict(type='TimmClassifier', model_name='resnetv2_18',
                    pretrained=False, channels=(16, 32, 64, 128),
                    stem_chs=16)

init_default_scope('mmpretrain')


def rel(path: str) -> str:
    return osp.relpath(path, CONFIG_DIR)


def load(path: str) -> Config:
    return Config.fromfile(path)


# -- tiny data sets in each layout the configs read ---------------------------
def _write_image(path: str, seed: int, size=(48, 64)) -> None:
    """A smooth random colour image, not square (crops matter)."""
    rng = np.random.RandomState(seed)
    small = rng.randint(0, 256, (6, 8, 3)).astype(np.uint8)
    os.makedirs(osp.dirname(path), exist_ok=True)
    cv2.imwrite(path, cv2.resize(small, size[::-1],
                                 interpolation=cv2.INTER_LINEAR))


def _write_lines(path: str, lines: List[str]) -> None:
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')


def write_layout(dataset: dict, root: str) -> None:
    """Two images per split, two classes, in the layout ``dataset`` reads."""
    kind = dataset['type']
    if kind == 'ImageNet':  # class folders + meta/<split>.txt
        for split in ('train', 'val'):
            lines = []
            for c in range(2):
                name = f'n0000000{c}/{split}_{c}.JPEG'
                _write_image(osp.join(root, split, name), c)
                lines.append(f'{name} {c}')
            _write_lines(osp.join(root, 'meta', f'{split}.txt'), lines)
    elif kind == 'CustomDataset':  # <prefix>/<class>/<image>
        prefix = dataset.get('data_prefix', '')
        prefix = prefix.get('img_path', '') if isinstance(prefix,
                                                          dict) else prefix
        for c in range(2):
            _write_image(osp.join(root, prefix, str(c), f'{c}.png'), c)
    elif kind == 'Flowers102':  # jpg/ + imagelabels.mat + setid.mat
        for i in range(1, 7):
            _write_image(osp.join(root, 'jpg', 'image_%05d.jpg' % i), i)
        mat4py.savemat(osp.join(root, 'imagelabels.mat'),
                       dict(labels=[1, 2, 1, 2, 1, 2]))
        mat4py.savemat(osp.join(root, 'setid.mat'),
                       dict(trnid=[1, 2], valid=[3, 4], tstid=[5, 6]))
    elif kind == 'OxfordIIITPet':  # images/ + annotations/<split>.txt
        for split in ('trainval', 'test'):
            lines = []
            for c, breed in enumerate(('Abyssinian', 'american_bulldog')):
                name = f'{breed}_{split}'
                _write_image(osp.join(root, 'images', name + '.jpg'), c)
                lines.append(f'{name} {c + 1} {c + 1} 1')
            _write_lines(osp.join(root, 'annotations', f'{split}.txt'), lines)
    elif kind == 'Food101':  # images/<class>/<id>.jpg + meta/<split>.txt
        for split in ('train', 'test'):
            lines = []
            for c, food in enumerate(('apple_pie', 'baklava')):
                _write_image(osp.join(root, 'images', food, f'{split}.jpg'), c)
                lines.append(f'{food}/{split}')
            _write_lines(osp.join(root, 'meta', f'{split}.txt'), lines)
    elif kind == 'SUN397':  # SUN397/<l>/<class>/ + Partitions/
        for split, part in (('train', 'Training_01'), ('test', 'Testing_01')):
            lines = []
            for c, scene in enumerate(('abbey', 'airplane_cabin')):
                name = f'/a/{scene}/sun_{split}.jpg'
                _write_image(osp.join(root, 'SUN397') + name, c)
                lines.append(name)
            _write_lines(osp.join(root, 'Partitions', f'{part}.txt'), lines)
    else:
        raise NotImplementedError(kind)


def _datasets(cfg: Config) -> List[dict]:
    """Innermost dataset dicts of every dataloader (wrappers unwrapped)."""
    found = []
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        ds = (cfg.get(split) or {}).get('dataset')
        while ds is not None:
            found.append(ds)
            ds = ds.get('dataset')
    return [d for d in found if 'dataset' not in d]


def _shrink(size):
    """A quarter of the ImageNet/small-set sizes; the 16 px demo stays."""
    if isinstance(size, (list, tuple)):
        return type(size)(_shrink(s) for s in size)
    return size // 4 if size >= 64 else size


def tiny_options(cfg: Config) -> Dict[str, object]:
    """The cfg options that make one training step cheap."""
    opts = {}
    for t in teacher_specs(cfg.model.get('teachers') or []):
        opts[f'{t.key}.checkpoint'] = None
        if t.size:
            opts[f'{t.key}.size'] = _shrink(t.size)
        if t.model.get('model_name') == 'resnetv2_152x2_bit':
            opts[f'{t.key}.model'] = dict(
                TINY_TEACHER, num_classes=t.model['num_classes'])
    if cfg.model.get('feature_loss'):
        # The stand-in teacher is narrower than BiT-R152x2's 4096 features:
        # SRDLoss takes the widths from the models instead.
        opts['model.feature_loss.student_channels'] = None
        opts['model.feature_loss.teacher_channels'] = None
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        opts[f'{split}.batch_size'] = 2
        opts[f'{split}.num_workers'] = 0
        opts[f'{split}.persistent_workers'] = False
        opts[f'{split}.pin_memory'] = False
    return opts


def tiny_config(path: str, tmp: str) -> Config:
    """``path`` reduced to one cheap step on tiny data written under tmp."""
    cfg = load(path)
    cfg.merge_from_dict(tiny_options(cfg))
    for ds in _datasets(cfg):
        for step in ds.get('pipeline', []):
            if step['type'] == 'ConsistentView':
                step['student_size'] = _shrink(step['student_size'])
                step['teacher_sizes'] = _shrink(list(step['teacher_sizes']))
    roots = {}
    for ds in _datasets(cfg):
        key = (ds['type'], ds.get('data_root'))
        if key not in roots:
            roots[key] = osp.join(tmp, f'data{len(roots)}')
        write_layout(ds, roots[key])
        ds['data_root'] = roots[key]
    by_epoch = cfg.train_cfg.get('by_epoch', True)
    cfg.train_cfg = dict(by_epoch=by_epoch, val_interval=1,
                         **{'max_epochs' if by_epoch else 'max_iters': 1})
    # Schedulers that start after the first step never act in it (and a
    # cosine without `end` would end at step 1, before its start).
    cfg.param_scheduler = [
        s for s in cfg.param_scheduler if s.get('begin', 0) < 1]
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.log_processor = dict(by_epoch=by_epoch)
    cfg.work_dir = osp.join(tmp, 'work')
    cfg.launcher = 'none'
    stored = cfg.train_dataloader.dataset
    if stored.get('type') == 'StoredTeacherDataset':
        _write_stored_teacher(cfg, osp.join(tmp, 'teacher.npz'))
    return cfg


def _write_stored_teacher(cfg: Config, path: str) -> None:
    """Stand-in stored outputs for every training image (values are tested
    against the tool in tests/datasets/test_stored_teacher.py)."""
    from mmpretrain.registry import DATASETS
    inner = copy.deepcopy(cfg.train_dataloader.dataset.dataset)
    inner['pipeline'] = []
    ds = DATASETS.build(inner)
    keys = [sample_key(ds.get_data_info(i)['img_path'], ds.data_root)
            for i in range(len(ds))]
    classes = cfg.model.student.head.num_classes
    logits = np.random.RandomState(0).randn(len(keys), classes)
    save_stored_teacher(path, keys, logits.astype(np.float32))
    cfg.train_dataloader.dataset.teacher_file = path


# -- every config: one training step and one validation -----------------------
def test_the_config_family_is_complete():
    names = {rel(p) for p in CONFIGS}
    expected = {
        'r50_bit152x2_imagenet.py',
        'r50_bit152x2_imagenet_shampoo.py',
        'r50_160_bit152x2_224_imagenet.py',
        'r50_bit152x2_384_imagenet.py',
        'r50_bit152x2_ens224_384_imagenet.py',
        'mobilenet_v3_large_gn_bit152x2_imagenet.py',
        'r50_bit152x2_custom_128px.py',
        'r50_bit152x2_flowers102_128px_1m_ep.py',
        'r50_bit152x2_flowers102_128px_1k_ep.py',
        'r50_bit152x2_pets_128px_30k_ep.py',
        'r50_bit152x2_pets_128px_300_ep.py',
        'r50_bit152x2_food101_128px_3k_ep.py',
        'r50_bit152x2_food101_128px_100_ep.py',
        'r50_bit152x2_sun397_128px_3k_ep.py',
        'r50_bit152x2_sun397_128px_100_ep.py',
        'r50_bit152x2_pets_128px_from_food101_images.py',
    } | {
        f'ablation/digits_{m}.py'
        for m in ('fix_rs', 'fix_cc', 'fix_ic_ens', 'ind_rc', 'ind_ic',
                  'same_rc', 'same_ic', 'funmatch')
    } | {'srd/digits_funmatch_srd_student.py',
         'srd/r50_bit152x2_srd_imagenet.py'}
    assert names == expected


# One of each kind stays in the quick run (-m "not slow"): the main ImageNet
# config, the small-data base, out-of-domain images, stored teacher targets
# and the demo ablation; the others take 4-9 s each.
QUICK = {'r50_bit152x2_imagenet.py', 'r50_bit152x2_custom_128px.py',
         'r50_bit152x2_pets_128px_from_food101_images.py',
         'ablation/digits_fix_ic_ens.py', 'ablation/digits_funmatch.py'}


@pytest.mark.parametrize('path', [
    pytest.param(p, id=rel(p),
                 marks=() if rel(p) in QUICK else pytest.mark.slow)
    for p in CONFIGS
])
def test_config_trains_one_step(path, tmp_path):
    cfg = tiny_config(path, str(tmp_path))
    validate_config(cfg)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 1
    scalars = runner.message_hub.log_scalars
    assert np.isfinite(scalars['train/loss_distill'].current())
    assert 'val/accuracy/top1' in scalars
    assert 'val/teacher/agreement' in scalars
    metrics = runner.test()  # the test split and evaluators build and run
    assert {'accuracy/top1', 'teacher/agreement'} <= set(metrics)
    # Only the student trains (and SRD's projector, where there is one).
    model = runner.model
    names = {id(p): n for n, p in model.named_parameters()}
    optimised = {names[id(p)] for g in runner.optim_wrapper.param_groups
                 for p in g['params'] if id(p) in names}
    trained = ('student.', 'feature_loss.') if model.feature_loss else (
        'student.', )
    assert optimised == {n for n in names.values() if n.startswith(trained)}
    assert not any(p.requires_grad for p in model.teachers.parameters())


@pytest.mark.slow
def test_shampoo_config_is_the_papers_and_decays_to_the_last_step(tmp_path):
    path = osp.join(CONFIG_DIR, 'r50_bit152x2_imagenet_shampoo.py')
    cfg = load(path)
    # Only the optimizer and its schedule differ from the main recipe; the
    # optimizer keeps its paper defaults (none of AdamW's values leak in).
    assert cfg.optim_wrapper.optimizer == dict(type='Shampoo', lr=0.03)
    assert cfg.optim_wrapper.clip_grad == dict(max_norm=1.0)
    warm, poly = cfg.param_scheduler
    assert (warm.type, warm.end, poly.type, poly.begin, poly.power) == (
        'LinearLR', 1800, 'PolyLR', 1800, 2.0)
    assert 'end' not in poly
    # In a real run the decay, given no end, reaches 0 at the run's last
    # step: here a 1-step warm-up, then the decay over the rest of 3 epochs.
    cfg = tiny_config(path, str(tmp_path))
    cfg.train_cfg.max_epochs = 3
    cfg.param_scheduler = [dict(warm, end=1), dict(poly, begin=1)]
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 3  # one step per epoch
    assert type(runner.optim_wrapper.optimizer).__name__ == 'Shampoo'
    assert runner.optim_wrapper.optimizer.defaults['weight_decay'] == 0.000375
    assert runner.optim_wrapper.get_lr()['lr'][0] == pytest.approx(0.0)


@pytest.mark.slow
def test_main_config_builds_the_real_models():
    """BiT-M-R152x2 teacher and BiT-R50x1 student at their real size."""
    cfg = load(MAIN)
    cfg.model.teachers.bit.checkpoint = None
    model = MODELS.build(cfg.model)
    n = [sum(p.numel() for p in m.parameters())
         for m in (model.teachers[0], model.student)]
    assert n[0] == pytest.approx(236e6, rel=0.01)  # paper: 236 M
    assert n[1] == pytest.approx(25.5e6, rel=0.01)  # paper: 25.5 M
    assert model.teachers[0].model.num_classes == 1000
    assert not any(p.requires_grad for p in model.teachers.parameters())


# -- the main config is the paper's recipe ------------------------------------
def test_main_config_is_the_papers_recipe():
    cfg = load(MAIN)
    m = cfg.model
    assert m.type == 'FunMatchDistiller'
    assert m.student.model_name == 'resnetv2_50x1_bit'
    assert m.student.pretrained is False
    teachers = teacher_specs(m.teachers)
    assert [t.model.model_name for t in teachers] == ['resnetv2_152x2_bit']
    assert teachers[0].size == 224
    assert teachers[0].checkpoint == cfg.teacher_checkpoint
    assert m.distill_loss == dict(type='KLDivergenceT', tau=1.0)
    assert m.data_preprocessor.batch_augments.type == 'UniformMixup'
    assert m.get('label_loss') is None
    # Inception crop + flip, the same view for both.
    train_view = cfg.train_dataloader.dataset.pipeline[1]
    assert train_view.mode == 'same/ic'
    assert (train_view.student_size, train_view.teacher_sizes) == (224, [224])
    assert train_view.scale == (0.05, 1.0)
    assert train_view.ratio == pytest.approx((3 / 4, 4 / 3))
    assert train_view.flip_prob == 0.5
    val_view = cfg.val_dataloader.dataset.pipeline[1]
    assert val_view.mode == 'eval' and val_view.crop_frac == 224 / 256
    assert cfg.train_dataloader.dataset.type == 'ImageNet'
    assert cfg.train_dataloader.dataset.data_root == 'data/imagenet'
    # Batch 4096 = 128 per GPU x 32 GPUs; the lr scales from 4096.
    assert cfg.train_dataloader.batch_size * 32 == 4096
    assert cfg.auto_scale_lr.base_batch_size == 4096
    for split in ('train_dataloader', 'val_dataloader'):
        assert cfg[split].pin_memory and cfg[split].persistent_workers
    # Adam(0.9, 0.999, 1e-8), lr 0.03, decoupled wd 3e-4 (= lr x 0.01),
    # clip 1.0, 5000 warm-up steps then cosine to 0, 1200 epochs.
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.lr, opt.betas, opt.eps) == ('AdamW', 0.03,
                                                      (0.9, 0.999), 1e-8)
    assert opt.lr * opt.weight_decay == pytest.approx(3e-4)
    assert cfg.optim_wrapper.clip_grad == dict(max_norm=1.0)
    assert cfg.optim_wrapper.constructor == 'FunMatchOptimWrapperConstructor'
    warm, cos = cfg.param_scheduler
    assert (warm.type, warm.end, warm.by_epoch) == ('LinearLR', 5000, False)
    assert (cos.type, cos.begin, cos.eta_min) == ('CosineAnnealingLR', 5000,
                                                  0.0)
    assert 'end' not in cos  # ends at the last step of any length
    assert cfg.train_cfg.max_epochs == 1200
    assert {e.type for e in cfg.val_evaluator} == {'Accuracy',
                                                   'TeacherAgreement'}
    assert cfg.val_evaluator[0].topk == (1, 5)


def _flatten(obj, prefix=''):
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(_flatten(v, f'{prefix}{k}.'))
        return out
    if isinstance(obj, (list, tuple)):
        out = {f'{prefix}len': len(obj)}
        for i, v in enumerate(obj):
            out.update(_flatten(v, f'{prefix}{i}.'))
        return out
    return {prefix[:-1]: obj}


def _changed(path: str, parent: str = MAIN) -> Dict[str, tuple]:
    """The leaves of a resolved config that differ from its parent's:
    {'a.b.1.c': (parent's value, child's value)}."""
    a, b = _flatten(load(parent).to_dict()), _flatten(load(path).to_dict())
    return {k: (a.get(k, '<none>'), b.get(k, '<none>'))
            for k in a.keys() | b.keys()
            if a.get(k, '<none>') != b.get(k, '<none>')}


@pytest.mark.parametrize('name, allowed', [
    ('r50_160_bit152x2_224_imagenet.py', ('student_size', 'teacher_sizes')),
    ('r50_bit152x2_384_imagenet.py',
     ('teacher', 'model.teachers', 'teacher_sizes')),
    ('r50_bit152x2_ens224_384_imagenet.py',
     ('teacher', 'model.teachers', 'teacher_sizes')),
    ('mobilenet_v3_large_gn_bit152x2_imagenet.py',
     ('model.student', 'mobilenet_v3_large_gn_model')),
])
def test_imagenet_family_overrides_one_thing(name, allowed):
    changed = _changed(osp.join(CONFIG_DIR, name))
    assert changed
    unexpected = [k for k in changed if not any(a in k for a in allowed)]
    assert not unexpected, unexpected


# -- the small data sets: the paper's best (T, lr, wd) per schedule length ----
# file -> (classes, train images, epochs, T, lr, wd, paper top-1)
SMALL = {
    'flowers102_128px_1m_ep': (102, 1020, 1_000_000, 1, 3e-4, 1e-5, 96.93),
    'flowers102_128px_1k_ep': (102, 1020, 1000, 10, 3e-3, 1e-3, 77.51),
    'pets_128px_30k_ep': (37, 3680, 30_000, 2, 3e-3, 1e-5, 91.06),
    'pets_128px_300_ep': (37, 3680, 300, 2, 1e-2, 1e-5, 82.75),
    'food101_128px_3k_ep': (101, 75750, 3000, 5, 1e-2, 1e-4, 87.20),
    'food101_128px_100_ep': (101, 75750, 100, 10, 1e-2, 1e-3, 83.29),
    'sun397_128px_3k_ep': (397, 19850, 3000, 10, 1e-2, 3e-5, 74.26),
    'sun397_128px_100_ep': (397, 19850, 100, 10, 1e-2, 1e-3, 68.28),
}


@pytest.mark.parametrize('name', sorted(SMALL))
def test_small_data_config_matches_the_paper(name):
    classes, images, epochs, tau, lr, wd, top1 = SMALL[name]
    path = osp.join(CONFIG_DIR, f'r50_bit152x2_{name}.py')
    cfg = load(path)
    assert f'{top1:.2f}' in open(path).read()  # the paper's number, quoted
    m = cfg.model
    assert m.student.num_classes == classes
    teachers = teacher_specs(m.teachers)
    assert [t.model.num_classes for t in teachers] == [classes]
    assert [t.size for t in teachers] == [128]
    assert teachers[0].checkpoint.endswith('128.npz')
    assert m.distill_loss.tau == tau
    assert m.data_preprocessor.batch_augments.type == 'UniformMixup'
    opt = cfg.optim_wrapper.optimizer
    assert opt.lr == lr and opt.lr * opt.weight_decay == pytest.approx(wd)
    # Batch 512 = 64 x 8 GPUs, big_vision's number of steps, 1500 warm-up.
    assert cfg.train_dataloader.batch_size * 8 == 512
    assert cfg.train_dataloader.sampler.type == 'InfiniteSampler'
    assert cfg.train_cfg.max_iters == epochs * images // 512
    assert cfg.param_scheduler[0].end == 1500
    assert cfg.param_scheduler[1].begin == 1500
    views = [s for s in cfg.train_dataloader.dataset.pipeline
             if s.type == 'ConsistentView']
    assert views[0].student_size == 128 and views[0].mode == 'same/ic'
    val_view = cfg.val_dataloader.dataset.pipeline[1]
    assert val_view.crop_frac == pytest.approx(128 / 160)


# -- views --------------------------------------------------------------------
@pytest.fixture(scope='module')
def photo_path(tmp_path_factory):
    """A real photograph (scikit-image's cat, 300 x 451) on disk."""
    from skimage import data
    path = str(tmp_path_factory.mktemp('photo') / 'chelsea.png')
    cv2.imwrite(path, cv2.cvtColor(data.chelsea(), cv2.COLOR_RGB2BGR))
    return path


def _run_pipeline(steps: List[dict], path: str) -> dict:
    results = dict(img_path=path)
    for step in steps:
        results = TRANSFORMS.build(step)(results)
    return results


def test_cross_resolution_views_come_from_one_crop(photo_path):
    """T224 -> S160: the teacher gets 224 px and the student 160 px
    renderings of the same crop and flip."""
    cfg = load(osp.join(CONFIG_DIR, 'r50_160_bit152x2_224_imagenet.py'))
    steps = copy.deepcopy(cfg.train_dataloader.dataset.pipeline)
    np.random.seed(3)
    results = _run_pipeline(steps[:2], photo_path)
    assert results['img'].shape == (160, 160, 3)
    assert [t.shape for t in results['teacher_imgs']] == [(224, 224, 3)]
    assert results['teacher_crop_bboxes'] == [results['crop_bbox']]
    # Same content: the 224 px view brought to 160 px is the 160 px view.
    teacher_at_160 = cv2.resize(results['teacher_imgs'][0], (160, 160),
                                interpolation=cv2.INTER_AREA)
    # The crops come from numpy's seeded legacy generator (the same on every
    # CPU); what is left is resampling: 2.04 grey levels here (the same with
    # cv2.setUseOptimized(False)), 33.4 for the other crop. A CPU's resize
    # kernels change pixels by at most one level, too little to cross either.
    diff = np.abs(teacher_at_160.astype(float) - results['img']).mean()
    assert diff < 4.0
    # A different crop of the same image is far from it.
    np.random.seed(4)
    other = _run_pipeline(steps[:2], photo_path)
    other_diff = np.abs(other['img'].astype(float) - results['img']).mean()
    assert other_diff > 4 * diff
    packed = TRANSFORMS.build(steps[2])(results)
    assert packed['inputs']['student'].shape == (3, 160, 160)
    assert packed['inputs']['teachers'][0].shape == (3, 224, 224)


def _coordinate_image(h: int, w: int) -> np.ndarray:
    """Each pixel holds its own (x, y) source coordinate."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([xs, ys, np.zeros_like(xs)], -1)


@pytest.mark.parametrize('hw', [(300, 451), (512, 512), (480, 360)])
def test_eval_view_is_resize_256_centre_crop_224(hw, photo_path):
    """ConsistentView(mode='eval', crop_frac=0.875) at 224 px samples the
    region of resize-short-side-256 + centre-crop-224 at the same scale, to
    within the rounding of the crop box (about one source pixel). Square
    images come out identical; on others the sub-pixel offset moves a
    textured photograph's pixels by 3-4 grey levels on average."""
    cfg = load(MAIN)
    eval_view = TRANSFORMS.build(cfg.val_dataloader.dataset.pipeline[1])
    resize = ResizeEdge(scale=256, edge='short', interpolation='bilinear')
    crop = CenterCrop(crop_size=224)

    coords = _coordinate_image(*hw)
    ours = eval_view.transform(dict(img=coords.copy()))['img']
    theirs = crop.transform(resize.transform(dict(img=coords.copy())))['img']
    assert ours.shape == theirs.shape == (224, 224, 3)
    # Geometry, not rounding: the crop boxes differ by the rounding of their
    # corners (<= 1 source pixel, times the scale; 1.04 at most measured);
    # float32 interpolation of coordinates adds ~1e-4.
    assert np.abs(ours - theirs).max() <= 1.5

    img = cv2.imread(photo_path)
    if hw != img.shape[:2]:
        img = cv2.resize(img, hw[::-1], interpolation=cv2.INTER_AREA)
    ours = eval_view.transform(dict(img=img.copy()))['img'].astype(float)
    theirs = crop.transform(resize.transform(dict(img=img.copy())))['img']
    diff = np.abs(ours - theirs)
    if hw[0] == hw[1]:
        assert diff.max() <= 1.0  # the same box: 0 measured, 1 = rounding
    else:
        # The sub-pixel offset on a fixed photograph: 3.60 and 2.86 measured
        # (the same with cv2.setUseOptimized(False)); a CPU's kernels move
        # pixels by at most one level, and few of them.
        assert diff.mean() < 5.0  # of 255


# -- several teachers ---------------------------------------------------------
def _tiny_ensemble(combine: str):
    cfg = load(osp.join(CONFIG_DIR, 'r50_bit152x2_ens224_384_imagenet.py'))
    cfg.merge_from_dict(tiny_options(cfg))
    cfg.model.teacher_combine = combine
    # A small student too: only the target is under test here.
    cfg.model.student = dict(TINY_TEACHER, num_classes=1000)
    torch.manual_seed(0)
    return MODELS.build(cfg.model).eval()


def _views(sizes=(56, 96), n=2):
    g = torch.Generator().manual_seed(0)
    return dict(
        student=torch.randint(0, 256, (n, 3, 56, 56), generator=g,
                              dtype=torch.uint8),
        teachers=[torch.randint(0, 256, (n, 3, s, s), generator=g,
                                dtype=torch.uint8) for s in sizes])


def _kl_and_entropy(student: torch.Tensor, target: torch.Tensor):
    """KL(softmax(target) || softmax(student)) averaged over rows, the
    target's mean entropy, and the size of the terms both sum (for the
    rounding bound), in float64."""
    lt, ls = target.log_softmax(1), student.log_softmax(1)
    pt = lt.exp()
    kl = (pt * (lt - ls)).sum(1).mean().item()
    entropy = -(pt * lt).sum(1).mean().item()
    size = ((pt * (lt.abs() + ls.abs())).sum(1).mean().item() +
            target.abs().max().item() + student.abs().max().item())
    return kl, entropy, size


@pytest.mark.parametrize('combine', ['mean_logits', 'mean_probs'])
def test_ensemble_target_is_the_mean_of_both_teachers(combine):
    model = _tiny_ensemble(combine)
    # Untrained teachers have logits of ~0.1, where the two rules give
    # losses 4e-8 apart, below float32 rounding: scaled up (logits ~4, as a
    # trained teacher's), they are 1.5e-2 apart.
    with torch.no_grad():
        for teacher in model.teachers:
            teacher.model.head.fc.weight.mul_(50)
    data = model.data_preprocessor(
        dict(inputs=_views(), data_samples=[DataSample(), DataSample()]),
        False)
    inputs = data['inputs']
    assert [t.shape[-1] for t in inputs['teachers']] == [56, 96]
    with torch.no_grad():
        each = [t(v, mode='tensor') for t, v in zip(model.teachers,
                                                    inputs['teachers'])]
        student = model.student(inputs['student'], mode='tensor')
    assert not torch.allclose(each[0], each[1])
    losses = model.loss(inputs, [DataSample(), DataSample()])
    # Each rule's target from the same logits, in float64.
    a, b = (e.double() for e in each)
    targets = dict(
        mean_logits=(a + b) / 2,
        # logits whose softmax is the mean probability
        mean_probs=((a.softmax(1) + b.softmax(1)) / 2).log())
    kl, entropy, size = _kl_and_entropy(student.double(), targets[combine])
    other = _kl_and_entropy(student.double(), targets[
        'mean_probs' if combine == 'mean_logits' else 'mean_logits'])
    # float32 error analysis: every term passes through a dozen roundings
    # (log-softmax, a sum over 1000 classes, product, means), so the loss
    # computed in float32 is within 32 u * (sum of |terms| + largest logits)
    # of the float64 value on any CPU (0.26 u * that measured).
    bound = 32 * 2.0**-24 * size
    assert abs(losses['loss_distill'].item() - kl) <= bound
    assert abs(losses['teacher_entropy'].item() - entropy) <= bound
    # The bound tells the rules apart: the other rule is 500 bounds away.
    assert abs(other[0] - kl) > 100 * bound
    assert abs(other[1] - entropy) > 100 * bound


# -- out-of-domain images carry no labels -------------------------------------
def test_out_of_domain_config_trains_on_unlabelled_images(tmp_path):
    path = osp.join(CONFIG_DIR,
                    'r50_bit152x2_pets_128px_from_food101_images.py')
    cfg = tiny_config(path, str(tmp_path))
    train = cfg.train_dataloader.dataset
    assert train.type == 'CustomDataset' and train.with_label is False
    assert cfg.val_dataloader.dataset.type == 'OxfordIIITPet'  # in-domain
    from mmpretrain.registry import DATASETS
    sample = DATASETS.build(train)[0]
    assert 'gt_label' not in sample['data_samples']
    cfg.model.student = dict(TINY_TEACHER, num_classes=37)
    model = MODELS.build(cfg.model)
    data = model.data_preprocessor(
        dict(inputs=_views(sizes=(32, ), n=2),
             data_samples=[DataSample(), DataSample()]), True)
    losses = model.loss(**data)
    assert set(losses) == {'loss_distill', 'student_entropy',
                           'teacher_entropy', 'agreement'}
    assert torch.isfinite(losses['loss_distill'])


# -- derived configs state their difference, nothing else ---------------------
_TRAIN_VIEW = ('train_pipeline.1', 'train_dataloader.dataset.pipeline.1')


@pytest.mark.parametrize('mode', ['same_rc', 'ind_ic', 'ind_rc', 'fix_rs',
                                  'fix_cc'])
def test_ablation_rows_differ_from_same_ic_in_the_view_mode_only(mode):
    changed = _changed(osp.join(CONFIG_DIR, f'ablation/digits_{mode}.py'),
                       osp.join(CONFIG_DIR, 'ablation/digits_same_ic.py'))
    # The edit reaches both the named pipeline and the data loader's copy.
    assert changed == {f'{p}.mode': ('same/ic', mode.replace('_', '/'))
                       for p in _TRAIN_VIEW}


def test_same_ic_row_is_the_demo_student_without_mixup():
    changed = _changed(
        osp.join(CONFIG_DIR, 'ablation/digits_same_ic.py'),
        osp.join(CONFIG_DIR, 'demo/digits_funmatch_student.py'))
    # batch_augments=None replaces the parent's mixup: the one difference.
    assert changed == {
        'model.data_preprocessor.batch_augments.type': ('UniformMixup',
                                                        '<none>'),
        'model.data_preprocessor.batch_augments': ('<none>', None)}


@pytest.mark.parametrize('child,edits', [
    ('r50_160_bit152x2_224_imagenet.py', {'student_size': (224, 160)}),
    ('r50_bit152x2_384_imagenet.py', {'teacher_sizes': ([224], [384])}),
    ('r50_bit152x2_ens224_384_imagenet.py',
     {'teacher_sizes': ([224], [224, 384])}),
])
def test_imagenet_variants_edit_the_main_views_in_place(child, edits):
    cfg = load(osp.join(CONFIG_DIR, child))
    views = [cfg.train_pipeline[1], cfg.val_pipeline[1]] + [
        cfg[f'{split}_dataloader'].dataset.pipeline[1]
        for split in ('train', 'val', 'test')]
    for key, (before, after) in edits.items():
        assert load(MAIN).train_pipeline[1][key] == before
        assert all(view[key] == after for view in views), key
    # Nothing else of the views is restated: no crop or flip setting of the
    # main config changed.
    changed = _changed(osp.join(CONFIG_DIR, child))
    assert not {k for k in changed if set(k.split('.')) & {
        'scale', 'ratio', 'flip_prob', 'mode', 'crop_frac'}}, changed


def test_small_data_base_inherits_the_imagenet_views():
    a = load(osp.join(REPO, 'configs/_base_/datasets/imagenet_funmatch.py'))
    b = load(osp.join(REPO, 'configs/_base_/datasets/funmatch_128px.py'))
    for name in ('train_pipeline', 'val_pipeline'):
        view_a, view_b = a[name][1], b[name][1]
        assert view_b.student_size == 128 and view_b.teacher_sizes == [128]
        for key in set(view_a) - {'student_size', 'teacher_sizes',
                                  'crop_frac'}:
            assert view_b[key] == view_a[key], key
    assert b.val_pipeline[1].crop_frac == pytest.approx(0.8)
    assert b.train_dataloader.dataset.pipeline == b.train_pipeline
