"""Config checks that run before any model, data or process group is built.

Each failure names the setting and the fix, so a mistake costs seconds, not
a queued multi-node job. One check needs the training data's length (the
schedule against the run length of an epoch loop); :class:`CheckedRunner`,
the runner ``tools/train.py`` builds, makes it where mmengine builds the
schedulers: the data set is read, the weights are not yet initialised and no
step has run.
"""
import copy
import os.path as osp
from typing import Dict, Iterator, List, Optional, Tuple

from mmengine.config import Config
from mmengine.registry import RUNNERS
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop, Runner

from mmfunmatch.models.teacher_spec import TeacherSpec, teacher_specs
from mmfunmatch.utils import dataset_chain, to_hw


class ConfigError(ValueError):
    """A config value that cannot work; the message says how to fix it."""


def _pipeline_steps(dataloader: Optional[dict]) -> Iterator[dict]:
    if not dataloader:
        return
    dataset = dataset_chain(dataloader.get('dataset', {}))[-1]
    yield from dataset.get('pipeline', []) or []


def _head_classes(model_cfg: dict) -> Optional[int]:
    for owner in (model_cfg.get('head') or {}, model_cfg):
        n = owner.get('num_classes')
        if isinstance(n, int):
            return n
    return None


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
    from mmfunmatch.models.algorithms import StoredTargetDistiller
    if not _builds(cfg.get('model') or {}, StoredTargetDistiller):
        errors.append(
            'train_dataloader: StoredTeacherDataset serves stored targets, '
            f'but model.type is {(cfg.get("model") or {}).get("type")!r}, '
            'which runs the teacher on the step\'s views and would ignore '
            "them; set model.type='StoredTargetDistiller' (the fix/ic_ens "
            'baseline).')
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
            return to_hw(size)
    return None


def _train_input_size(train_dl: Optional[dict]) -> Optional[tuple]:
    """The student's training input size from a plain mmpretrain pipeline."""
    for step in _pipeline_steps(train_dl):
        if step.get('type') == 'RandomResizedCrop' and 'scale' in step:
            return to_hw(step['scale'])
        if step.get('type') == 'CenterCrop' and 'crop_size' in step:
            return to_hw(step['crop_size'])
    return None


def _builds(model: dict, base: type) -> bool:
    """Whether a model config builds ``base`` or a subclass of it."""
    from mmpretrain.registry import MODELS
    kind = model.get('type')
    cls = MODELS.get(kind) if isinstance(kind, str) else kind
    return isinstance(cls, type) and issubclass(cls, base)


def _teachers(model: dict) -> Optional[List[TeacherSpec]]:
    """The teacher specs of a distiller config (FunMatchDistiller or a
    subclass), else None."""
    from mmfunmatch.models.algorithms import FunMatchDistiller
    if not _builds(model, FunMatchDistiller):
        return None
    return teacher_specs(model.get('teachers') or [])


def _check_input_sizes(cfg: Config, errors: List[str]) -> None:
    """Pipeline sizes against models built for one fixed input size."""
    model = cfg.get('model', {})
    train_dl = cfg.get('train_dataloader')
    teachers = _teachers(model)
    if teachers is None:
        fixed, size = _fixed_input_size(model), _train_input_size(train_dl)
        if None not in (fixed, size) and fixed != size:
            errors.append(
                f'the model is built for {fixed} px inputs but the train '
                f'pipeline crops {size} px; make model img_size and the '
                f'crop size equal.')
        return
    for step in _pipeline_steps(train_dl):
        if step.get('type') != 'ConsistentView':
            continue
        fixed = _fixed_input_size(model.get('student', {}))
        size = step.get('student_size')
        if None not in (fixed, size) and fixed != to_hw(size):
            errors.append(
                f'the student is built for {fixed} px inputs but '
                f'ConsistentView gives it {size} px; set student_size to '
                f'{fixed[0]} or the student img_size to {size}.')
        for i, (size, t) in enumerate(
                zip(step.get('teacher_sizes', []), teachers)):
            fixed = _fixed_input_size(t.model)
            if None not in (fixed, size) and fixed != to_hw(size):
                errors.append(
                    f'{t.key} is built for {fixed} px inputs but '
                    f'ConsistentView gives it {size} px; set '
                    f'teacher_sizes[{i}] to {fixed[0]}.')


# -- the schedule against the run length --------------------------------------
# Units of a scheduler's begin/end: iterations (by_epoch=False), else epochs
# (also with convert_to_iter_based, which multiplies both by the epoch length).
_ITER, _EPOCH = 'iteration', 'epoch'
# fit_warmup's fraction in the error message's suggestion.
_FIT_HINT = 0.1


def _count(n, unit: str) -> str:
    return f'{n} {unit}' + ('' if n == 1 else 's')


def _unit(scheduler: dict) -> str:
    return _EPOCH if scheduler.get('by_epoch', True) else _ITER


def _scheduler_groups(param_scheduler) -> List[List[Tuple[str, dict]]]:
    """``(config key, scheduler config)`` pairs, one list per optimizer."""
    def entries(prefix, value):
        if isinstance(value, dict):
            return [(prefix, value)]
        return [(f'{prefix}.{i}', s) for i, s in enumerate(value or [])
                if isinstance(s, dict)]  # built schedulers are skipped

    if not param_scheduler:
        return []
    if isinstance(param_scheduler, dict) and 'type' not in param_scheduler:
        return [entries(f'param_scheduler.{name}', value)
                for name, value in param_scheduler.items()]
    return [entries('param_scheduler', param_scheduler)]


def _late_schedulers(group: List[Tuple[str, dict]], totals: Dict[str, int]):
    """Schedulers that begin at or after the end of the run, each with the
    warm-up that ends where it begins (or None): ``(i, j)`` indices."""
    for i, (_, s) in enumerate(group):
        total = totals.get(_unit(s))
        begin = s.get('begin', 0)
        if total is None or begin < total:
            continue
        warmup = next(
            (j for j, (_, w) in enumerate(group)
             if j != i and _unit(w) == _unit(s) and w.get('end') == begin
             and w.get('begin', 0) < min(begin, total)), None)
        yield i, warmup


def _schedule_errors(param_scheduler, totals: Dict[str, int],
                     runs: Dict[str, str], run_key: str) -> List[str]:
    """Schedulers that would never act because the run ends first.

    ``totals`` holds the run length per unit where it is known, ``runs`` how
    that length comes about (for the message), ``run_key`` the setting that
    lengthens the run.
    """
    errors = []
    for group in _scheduler_groups(param_scheduler):
        for i, j in _late_schedulers(group, totals):
            key, s = group[i]
            unit = _unit(s)
            total, run = totals[unit], runs[unit]
            if j is None:
                errors.append(
                    f'{key} ({s.get("type")}) begins at {unit} '
                    f'{s.get("begin", 0)}, but the whole run is {run}, so it '
                    f'would never act. Set {key}.begin below {total} or '
                    f'lengthen the run ({run_key}).')
                continue
            wkey, w = group[j]
            head = (f'{wkey} ({w.get("type")}) warms up for '
                    f'{_count(w["end"], unit)}, but the whole run is {run}, '
                    f'so {key} ({s.get("type")}), which starts when the '
                    f'warm-up ends, would never act.')
            if total < 2:
                errors.append(
                    f'{head} A run of {_count(total, unit)} has no room for '
                    f'a warm-up: lengthen the run ({run_key}) or remove '
                    f'{wkey} and set {key}.begin=0.')
                continue
            errors.append(
                f'{head} Set {wkey}.end and {key}.begin to fewer than '
                f'{total} (e.g. {max(1, int(_FIT_HINT * total))}) or lengthen '
                f'the run ({run_key}); or let tools/train.py shorten a '
                f'warm-up that does not fit to a fraction of the run: '
                f'--cfg-options fit_warmup={_FIT_HINT}.')
    return errors


def _fit_warmup(param_scheduler, totals: Dict[str, int],
                fraction: float) -> List[str]:
    """Shorten, in place, each warm-up that leaves what follows it no step to
    ``fraction`` of the run (at least one step). The schedulers that start
    when it ends start at its new end, and stop at the end of the run if set
    to stop after it. Returns what changed, for the log."""
    notes = []
    for group in _scheduler_groups(param_scheduler):
        warmups = {j for _, j in _late_schedulers(group, totals)
                   if j is not None}
        for j in sorted(warmups):
            wkey, w = group[j]
            unit, old = _unit(w), w['end']
            total = totals[unit]
            new = max(1, round(fraction * total))
            if new >= total:
                continue  # no room for a warm-up: the check says so
            w['end'] = new
            changed = [f'{wkey}.end={new}']
            for key, s in group:
                if s is w or _unit(s) != unit or s.get('begin', 0) != old:
                    continue
                s['begin'] = new
                changed.append(f'{key}.begin={new}')
                if s.get('end', 0) > total:
                    s['end'] = total
                    changed.append(f'{key}.end={total}')
            notes.append(
                f'fit_warmup={fraction}: the {old}-{unit} warm-up does not '
                f'fit a run of {_count(total, unit)}; set '
                f'{", ".join(changed)}.')
    return notes


def _check_fit_warmup(cfg: Config, errors: List[str]) -> Optional[float]:
    fraction = cfg.get('fit_warmup')
    if fraction is None:
        return None
    if (isinstance(fraction, bool) or not isinstance(fraction, (int, float))
            or not 0 < fraction < 1):
        errors.append(
            f'fit_warmup must be a fraction of the run between 0 and 1 '
            f'(e.g. {_FIT_HINT}), or None to keep the warm-up as set; got '
            f'{fraction!r}.')
        return None
    return float(fraction)


def _check_schedule(cfg: Config, errors: List[str]) -> None:
    """What the config alone fixes: iteration schedulers in a step loop,
    epoch schedulers in an epoch loop (iteration schedulers in an epoch loop
    need the data set's length: :class:`CheckedRunner`)."""
    fraction = _check_fit_warmup(cfg, errors)
    train_cfg = cfg.get('train_cfg') or {}
    kind = train_cfg.get('type')
    if kind in ('IterBasedTrainLoop', IterBasedTrainLoop) or (
            kind is None and train_cfg.get('by_epoch') is False):
        total, unit, key = train_cfg.get('max_iters'), _ITER, 'max_iters'
    elif kind in (None, 'EpochBasedTrainLoop', EpochBasedTrainLoop):
        total, unit, key = train_cfg.get('max_epochs'), _EPOCH, 'max_epochs'
    else:
        return  # a custom loop: its length is its own
    if not isinstance(total, int):
        return
    schedulers = copy.deepcopy(cfg.get('param_scheduler'))
    totals = {unit: total}
    if fraction is not None:  # report only what fitting would leave
        _fit_warmup(schedulers, totals, fraction)
    errors += _schedule_errors(
        schedulers, totals, {unit: f'{_count(total, unit)} (train_cfg.{key})'},
        f'train_cfg.{key}')


def validate_config(cfg: Config) -> None:
    """Raise :class:`ConfigError` for settings that cannot work."""
    errors: List[str] = []
    model = cfg.get('model', {})
    train_dl = cfg.get('train_dataloader')
    specs = _teachers(model)
    is_distiller = specs is not None
    teachers = specs or []

    # Teachers: weight files exist, class counts agree with the student.
    n_student = (_head_classes(model.get('student', {}))
                 if is_distiller else None)
    for t in teachers:
        if t.checkpoint and not osp.isfile(t.checkpoint):
            errors.append(
                f'{t.key}: checkpoint {t.checkpoint!r} does not exist. Set '
                f'{t.key}.checkpoint to the teacher weight file.')
        n_teacher = _head_classes(t.model)
        if None not in (n_student, n_teacher) and n_student != n_teacher:
            errors.append(
                f'{t.key} predicts {n_teacher} classes but the student '
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
                if t.size is not None and to_hw(size) != to_hw(t.size):
                    errors.append(
                        f'{split}: ConsistentView gives teacher {i} '
                        f'{size} px but {t.key}.size is {t.size}; make '
                        f'them equal.')

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
        augment = preprocessor.get('batch_augments')
        group = (augment.get('group_size')
                 if isinstance(augment, dict) else None)
        batch = train_dl.get('batch_size')
        if isinstance(group, int) and isinstance(batch, int) and (
                group < 2 or batch % group):
            # UniformMixup's groups must not span two processes.
            errors.append(
                f'model.data_preprocessor.batch_augments.group_size={group} '
                f'must be at least 2 and divide train_dataloader.batch_size '
                f'(per process, {batch}); set it to a divisor of every '
                f'per-process batch the run may use.')

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
    _check_schedule(cfg, errors)

    # Data roots.
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dl = cfg.get(split)
        if not dl:
            continue
        root = dataset_chain(dl.get('dataset', {}))[-1].get('data_root')
        if root and not osp.isdir(root):
            errors.append(
                f'{split}: data_root {root!r} does not exist. Point '
                f'{split}.dataset.data_root at your data (for the demo: '
                f'python tools/prepare_digits.py {root}).')

    errors += _stored_teacher_errors(cfg)
    _raise(errors)


def _only_configs(scheduler) -> bool:
    """Whether ``scheduler`` holds configs only (nothing built yet)."""
    if isinstance(scheduler, dict):
        return 'type' in scheduler or all(
            _only_configs(v) for v in scheduler.values())
    if isinstance(scheduler, (list, tuple)):
        return all(_only_configs(v) for v in scheduler)
    return False


def _raise(errors: List[str]) -> None:
    if errors:
        raise ConfigError('invalid config:\n  - ' + '\n  - '.join(errors))


@RUNNERS.register_module()
class CheckedRunner(Runner):
    """MMEngine's :class:`~mmengine.runner.Runner` that checks the schedule
    against the run length once the training data is built.

    An epoch loop's length in iterations is ``max_epochs`` x the number of
    batches per epoch, known only after the data set is read. mmengine gives
    each scheduler without ``end`` the end of the run, so a warm-up longer
    than the run stops it inside mmengine ("end should be larger than begin,
    but got begin=5000, end=8"). This runner raises :class:`ConfigError`
    instead, naming the warm-up, the run length and the keys to set, before
    the weights are initialised or any step runs. With a top-level
    ``fit_warmup = f`` (0 < f < 1) in the config, a warm-up that leaves what
    follows it no step is shortened to ``f`` of the run instead, and the log
    says so. ``tools/train.py`` builds this runner unless the config names
    another ``runner_type``.
    """

    def build_param_scheduler(self, scheduler):
        loop = self._train_loop  # built by train() before the schedulers
        if (isinstance(loop, (EpochBasedTrainLoop, IterBasedTrainLoop))
                and _only_configs(scheduler)):
            scheduler = copy.deepcopy(scheduler)
            totals, runs, run_key = self._run_length(loop)
            errors: List[str] = []
            fraction = _check_fit_warmup(self.cfg, errors)
            if fraction is not None:
                for note in _fit_warmup(scheduler, totals, fraction):
                    self.logger.warning(note)
            _raise(errors + _schedule_errors(scheduler, totals, runs,
                                             run_key))
        return super().build_param_scheduler(scheduler)

    def _run_length(self, loop) -> Tuple[Dict[str, int], Dict[str, str], str]:
        """The run length per scheduler unit, and how it comes about."""
        iters = self.max_iters
        if isinstance(loop, IterBasedTrainLoop):
            return ({_ITER: iters},
                    {_ITER: f'{_count(iters, _ITER)} (train_cfg.max_iters)'},
                    'train_cfg.max_iters')
        from mmengine.dist import get_world_size
        epochs, dataloader = self.max_epochs, loop.dataloader
        world = get_world_size()
        batch = f'batch {dataloader.batch_size}' + (
            f' x {world} processes' if world > 1 else '')
        per_epoch = (
            f'train_cfg.max_epochs={epochs} x '
            f'{_count(len(dataloader), _ITER)} per epoch: '
            f'{len(dataloader.dataset)} training images, {batch}')
        return ({_ITER: iters, _EPOCH: epochs},
                {_ITER: f'{_count(iters, _ITER)} ({per_epoch})',
                 _EPOCH: f'{_count(epochs, _EPOCH)} (train_cfg.max_epochs)'},
                'train_cfg.max_epochs')
