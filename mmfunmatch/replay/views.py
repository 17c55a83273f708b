"""What the labelling run and the replay run both compute, in one place:
the fingerprint of a run (what decides its views and targets) and the view
parameters of one step as the data path drew them."""
import copy
import hashlib
from typing import Dict, List, Optional

import numpy as np

from mmfunmatch.datasets.stored_teacher import sample_key
from mmfunmatch.models.teacher_spec import teacher_specs
from .store import ReplayStoreError, sha256_file

# Student-side settings of ConsistentView: one store serves any student size.
STUDENT_VIEW_KEYS = ('student_size', )


def _plain(value):
    """Config values as JSON-able python (ConfigDict, tuples)."""
    if hasattr(value, 'to_dict'):
        value = value.to_dict()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, type):
        return value.__name__
    return value


def _teacher_pipeline(pipeline) -> List[dict]:
    steps = []
    for step in _plain(pipeline or []):
        step = copy.deepcopy(step)
        if step.get('type') == 'ConsistentView':
            for key in STUDENT_VIEW_KEYS:
                step.pop(key, None)
        steps.append(step)
    return steps


def dataset_files(dataset) -> dict:
    """The training images in data set order (paths relative to its
    ``data_root``): their number and the SHA-256 of the list."""
    digest = hashlib.sha256()
    root = getattr(dataset, 'data_root', None)
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        digest.update(sample_key(info['img_path'], root).encode() + b'\n')
    return dict(count=len(dataset), sha256=digest.hexdigest())


def run_fingerprint(cfg, dataloader, world_size: int) -> Dict[str, object]:
    """Everything that decides the training views and the teachers' targets
    of ``cfg`` on ``world_size`` processes, by config key.

    Not in it, on purpose: the student (architecture, input size, mean and
    std, checkpoint), the optimizer and schedule, the loss and its
    temperature, the teacher combination (targets are stored per teacher)
    and the number of epochs.
    """
    model = cfg.model
    fp: Dict[str, object] = {}
    for spec in teacher_specs(_plain(model.get('teachers') or [])):
        fp[f'{spec.key}.model'] = spec.model
        fp[f'{spec.key}.view'] = spec.view
        fp[f'{spec.key}.checkpoint_sha256'] = (
            sha256_file(spec.checkpoint) if spec.checkpoint else None)
    for key in ('teacher_dtype', 'channels_last'):
        fp[f'model.{key}'] = _plain(model.get(key))
    pre = model.get('data_preprocessor') or {}
    fp['model.data_preprocessor.batch_augments'] = _plain(
        pre.get('batch_augments'))
    fp['model.data_preprocessor.to_rgb'] = pre.get('to_rgb', True)
    dl = cfg.train_dataloader
    fp['train_dataloader.dataset.pipeline'] = _teacher_pipeline(
        dl.dataset.get('pipeline'))
    for key in ('sampler', 'batch_size', 'drop_last', 'collate_fn'):
        fp[f'train_dataloader.{key}'] = _plain(dl.get(key))
    fp['train_dataloader.dataset (files)'] = dataset_files(dataloader.dataset)
    randomness = cfg.get('randomness') or {}
    fp['randomness.seed'] = randomness.get('seed')
    fp['randomness.diff_rank_seed'] = randomness.get('diff_rank_seed', False)
    fp['default_hooks.exact_resume'] = _plain(
        (cfg.get('default_hooks') or {}).get('exact_resume'))
    fp['processes'] = world_size
    fp['iterations per epoch'] = len(dataloader)
    return fp


def drawn_views(data_samples, augment, step: int, rank: int,
                world_size: int) -> Dict[str, np.ndarray]:
    """The view parameters of one step's batch on this process, as the data
    path decided them: from each sample's metainfo (``ConsistentView``'s
    box and flip, packed by ``PackFunMatchInputs``) and from the batch
    augment's ``last_lam`` / ``last_partner`` after its call (read, not
    recomputed). Positions are global (``ExactResumeHook``'s layout)."""
    from mmfunmatch.engine.hooks.resume_hook import block_position
    n = len(data_samples)
    try:
        box = np.asarray([s.metainfo['crop_bbox'] for s in data_samples],
                         dtype=np.int32).reshape(n, 4)
        flip = np.asarray([bool(s.metainfo.get('flip', False))
                           for s in data_samples], dtype=np.uint8)
        sample_idx = np.asarray([int(s.metainfo['sample_idx'])
                                 for s in data_samples], dtype=np.int64)
    except KeyError as err:
        raise ReplayStoreError(
            f'the training samples carry no {err}: the replay store needs '
            f'ConsistentView and PackFunMatchInputs in the train pipeline '
            f'(they record the crop box and flip).') from None
    position = np.asarray([
        block_position(step * n + k, rank, n, world_size) for k in range(n)
    ], dtype=np.int64)
    lam: Optional[object] = getattr(augment, 'last_lam', None)
    partner = getattr(augment, 'last_partner', None)
    if augment is None:
        weight = np.ones(n, np.float32)
        partner_pos = position.copy()
    else:
        if lam is None or partner is None:
            raise ReplayStoreError(
                f'{type(augment).__name__} does not report its mixing '
                f'decision (last_lam, last_partner) after a call; the replay '
                f'store records it for UniformMixup only.')
        weight = np.broadcast_to(
            lam.detach().cpu().float().numpy().reshape(-1), (n, )).copy()
        partner_pos = position[partner.cpu().numpy().astype(np.int64)]
    return dict(position=position, sample_idx=sample_idx, box=box, flip=flip,
                weight=weight.astype(np.float32), partner=partner_pos)


def check_views(stored: Dict[str, np.ndarray], rows: slice,
                drawn: Dict[str, np.ndarray], where: str) -> None:
    """Refuse a step whose drawn views differ from the stored ones."""
    from .store import VIEW_FIELDS
    for name in VIEW_FIELDS:
        want = stored[name][rows]
        got = drawn[name]
        if want.shape != got.shape or not np.array_equal(want, got):
            bad = (int(np.argwhere(
                (want != got).reshape(len(got), -1).any(1))[0, 0])
                   if want.shape == got.shape else 0)
            raise ReplayStoreError(
                f'replay drift at {where}, slot {bad}: the data path drew '
                f'{name}={got[bad].tolist()} but the store holds '
                f'{want[bad].tolist()}. The views this run draws are not '
                f'the ones the teacher labelled (a changed pipeline, '
                f'sampler, mixup, seed or data set that the fingerprint '
                f'does not cover); label a new store for this config.')
