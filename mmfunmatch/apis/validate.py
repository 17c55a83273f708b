"""Config checks that run before any model, data or process group is built.

Each failure names the setting and the fix, so a mistake costs seconds, not
a queued multi-node job.
"""
import os.path as osp
from typing import Iterator, List, Optional

from mmengine.config import Config


class ConfigError(ValueError):
    """A config value that cannot work; the message says how to fix it."""


def _pipeline_steps(dataloader: Optional[dict]) -> Iterator[dict]:
    if not dataloader:
        return
    dataset = dataloader.get('dataset', {})
    while 'dataset' in dataset:  # wrappers such as RepeatDataset
        dataset = dataset['dataset']
    yield from dataset.get('pipeline', []) or []


def _head_classes(model_cfg: dict) -> Optional[int]:
    for owner in (model_cfg.get('head') or {}, model_cfg):
        n = owner.get('num_classes')
        if isinstance(n, int):
            return n
    return None


def _as_hw(size) -> tuple:
    return (size, size) if isinstance(size, int) else tuple(size)


def _stored_teacher_errors(cfg: Config) -> List[str]:
    """Stored teacher outputs (StoredTeacherDataset) were computed once per
    image, not for the student's view: with a randomly augmented student they
    are the paper's inconsistent fix/ic_ens baseline, allowed only when the
    config names it; with mixup they label an image the student never sees.
    """
    dataset = (cfg.get('train_dataloader') or {}).get('dataset') or {}
    stored = None
    while True:
        if dataset.get('type') == 'StoredTeacherDataset':
            stored = dataset
        if 'dataset' not in dataset:
            break
        dataset = dataset['dataset']
    if stored is None:
        return []
    from mmfunmatch.datasets.transforms.consistent_view import (
        MODE_ALIASES, MODES)
    random_steps = []
    for step in dataset.get('pipeline') or []:
        kind = step.get('type', '')
        if kind == 'ConsistentView':
            mode = step.get('mode', 'same/ic')
            student_crop = MODES.get(MODE_ALIASES.get(mode, mode), ('', ))[0]
            if student_crop in ('ic', 'rc'):
                random_steps.append(f'ConsistentView(mode={mode!r})')
        elif kind.startswith('Random') or kind in (
                'RandAugment', 'AutoAugment', 'ColorJitter', 'Lighting',
                'GaussianBlur', 'Albumentations'):
            random_steps.append(kind)
    errors = []
    if random_steps and stored.get('baseline') != 'fix/ic_ens':
        errors.append(
            'train_dataloader: StoredTeacherDataset serves teacher outputs '
            'computed once per image, but the student\'s view is randomly '
            f'augmented ({", ".join(random_steps)}), so the teacher never '
            'sees what the student sees: the paper\'s inconsistent fix/ic_ens '
            'baseline, not function matching. For function matching remove '
            'StoredTeacherDataset (FunMatchDistiller runs the teacher on the '
            'student\'s exact view); to run that baseline on purpose set '
            "train_dataloader.dataset.baseline='fix/ic_ens'.")
    if (cfg.get('model', {}).get('data_preprocessor') or {}).get(
            'batch_augments'):
        errors.append(
            'train_dataloader: StoredTeacherDataset targets belong to the '
            'unmixed images but model.data_preprocessor.batch_augments mixes '
            'the student\'s input; set it to None (fix/ic_ens has no mixup) '
            'or remove StoredTeacherDataset so the teacher sees the mixed '
            'image.')
    return errors


def _fixed_input_size(model_cfg: dict) -> Optional[tuple]:
    """The input size a model is built for, where its config fixes one
    (ViT-style ``img_size`` of the model or its backbone)."""
    for owner in (model_cfg, model_cfg.get('backbone') or {}):
        size = owner.get('img_size') if isinstance(owner, dict) else None
        if isinstance(size, (int, list, tuple)):
            return _as_hw(size)
    return None


def _train_input_size(train_dl: Optional[dict]) -> Optional[tuple]:
    """The student's training input size from a plain mmpretrain pipeline."""
    for step in _pipeline_steps(train_dl):
        if step.get('type') == 'RandomResizedCrop' and 'scale' in step:
            return _as_hw(step['scale'])
        if step.get('type') == 'CenterCrop' and 'crop_size' in step:
            return _as_hw(step['crop_size'])
    return None


def _check_input_sizes(cfg: Config, errors: List[str]) -> None:
    """Pipeline sizes against models built for one fixed input size."""
    model = cfg.get('model', {})
    train_dl = cfg.get('train_dataloader')
    if model.get('type') != 'FunMatchDistiller':
        fixed, size = _fixed_input_size(model), _train_input_size(train_dl)
        if None not in (fixed, size) and fixed != size:
            errors.append(
                f'the model is built for {fixed} px inputs but the train '
                f'pipeline crops {size} px; make model img_size and the '
                f'crop size equal.')
        return
    teachers = model.get('teachers', [])
    for step in _pipeline_steps(train_dl):
        if step.get('type') != 'ConsistentView':
            continue
        fixed = _fixed_input_size(model.get('student', {}))
        size = step.get('student_size')
        if None not in (fixed, size) and fixed != _as_hw(size):
            errors.append(
                f'the student is built for {fixed} px inputs but '
                f'ConsistentView gives it {size} px; set student_size to '
                f'{fixed[0]} or the student img_size to {size}.')
        for i, (size, t) in enumerate(
                zip(step.get('teacher_sizes', []), teachers)):
            fixed = _fixed_input_size(t.get('model', {}))
            if None not in (fixed, size) and fixed != _as_hw(size):
                errors.append(
                    f'teacher {i} is built for {fixed} px inputs but '
                    f'ConsistentView gives it {size} px; set '
                    f'teacher_sizes[{i}] to {fixed[0]}.')


def validate_config(cfg: Config) -> None:
    """Raise :class:`ConfigError` for settings that cannot work."""
    errors: List[str] = []
    model = cfg.get('model', {})
    train_dl = cfg.get('train_dataloader')
    is_distiller = model.get('type') == 'FunMatchDistiller'
    teachers = model.get('teachers', []) if is_distiller else []

    # Teachers: weight files exist, class counts agree with the student.
    n_student = (_head_classes(model.get('student', {}))
                 if is_distiller else None)
    for i, t in enumerate(teachers):
        ckpt = t.get('checkpoint')
        if ckpt and not osp.isfile(ckpt):
            errors.append(
                f'teacher {i}: checkpoint {ckpt!r} does not exist. Set '
                f'model.teachers.{i}.checkpoint to the teacher weight file.')
        n_teacher = _head_classes(t.get('model', {}))
        if None not in (n_student, n_teacher) and n_student != n_teacher:
            errors.append(
                f'teacher {i} predicts {n_teacher} classes but the student '
                f'{n_student}. Set the student head num_classes={n_teacher}.')

    # Views: ConsistentView renders one view per teacher at its input size.
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        for step in _pipeline_steps(cfg.get(split)):
            if step.get('type') != 'ConsistentView':
                continue
            from mmfunmatch.datasets.transforms.consistent_view import (
                MODE_ALIASES, MODES)
            mode = step.get('mode', 'same/ic')
            if mode not in MODES and mode not in MODE_ALIASES:
                errors.append(
                    f'{split}: unknown ConsistentView mode {mode!r}; choose '
                    f'one of {sorted(MODES) + sorted(MODE_ALIASES)}.')
            sizes = step.get('teacher_sizes', [])
            if is_distiller and len(sizes) not in (0, len(teachers)):
                errors.append(
                    f'{split}: ConsistentView renders {len(sizes)} teacher '
                    f'views for {len(teachers)} teachers; give one '
                    f'teacher_sizes entry per teacher.')
            for i, (size, t) in enumerate(zip(sizes, teachers)):
                if 'size' in t and _as_hw(size) != _as_hw(t['size']):
                    errors.append(
                        f'{split}: ConsistentView gives teacher {i} '
                        f'{size} px but model.teachers.{i}.size is '
                        f'{t["size"]}; make them equal.')

    # Mixup needs a partner for every sample.
    preprocessor = model.get('data_preprocessor') or {}
    if preprocessor.get('batch_augments') and train_dl:
        if train_dl.get('batch_size', 2) < 2:
            errors.append(
                'mixup needs at least 2 images per batch but '
                'train_dataloader.batch_size is '
                f'{train_dl.get("batch_size")}; raise it or remove '
                'model.data_preprocessor.batch_augments.')
        elif train_dl.get('drop_last') is False:
            errors.append(
                'mixup with train_dataloader.drop_last=False: the last batch '
                'of an epoch can hold a single image, which mixup cannot '
                'pair (the run would stop there). Set '
                'train_dataloader.drop_last=True.')

    # An epoch-based checkpoint hook never fires inside a step-based loop:
    # a long run would have no resume point.
    train_cfg = cfg.get('train_cfg') or {}
    ckpt_hook = (cfg.get('default_hooks') or {}).get('checkpoint') or {}
    step_loop = (train_cfg.get('type') == 'IterBasedTrainLoop'
                 or train_cfg.get('by_epoch') is False)
    if step_loop and ckpt_hook and ckpt_hook.get('by_epoch', True):
        errors.append(
            'train_cfg is step-based (max_iters) but '
            'default_hooks.checkpoint is epoch-based, so no checkpoint would '
            'be saved during training. Set default_hooks = dict(checkpoint='
            'dict(by_epoch=False, interval=N)) and log_processor = '
            'dict(by_epoch=False).')

    _check_input_sizes(cfg, errors)

    # Data roots.
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dl = cfg.get(split)
        if not dl:
            continue
        dataset = dl.get('dataset', {})
        while 'dataset' in dataset:
            dataset = dataset['dataset']
        root = dataset.get('data_root')
        if root and not osp.isdir(root):
            errors.append(
                f'{split}: data_root {root!r} does not exist. Point '
                f'{split}.dataset.data_root at your data (for the demo: '
                f'python tools/prepare_digits.py {root}).')

    errors += _stored_teacher_errors(cfg)

    if errors:
        raise ConfigError('invalid config:\n  - ' + '\n  - '.join(errors))
