"""Export the student of a function-matching run as a plain MMPretrain model.

Only the ``student.`` weights are exported: not the teachers, not SRD's
projector (``feature_loss.``), not BYOT's auxiliary heads (``aux_heads.``).
The result (``student.pth`` + ``student_config.py``) loads with
``mmpretrain.apis.init_model`` / ``ImageClassificationInferencer`` on a
machine without mmfunmatch, and with ``torch.load(weights_only=True)``.
"""
import copy
import os
import os.path as osp
from typing import Optional, Tuple

import torch
from mmengine.config import Config

from mmfunmatch.compat import load_runner_checkpoint

STUDENT_PREFIX = 'student.'


def _plain_pipeline(pipeline: list) -> list:
    """The val pipeline with ConsistentView / PackFunMatchInputs replaced by
    MMPretrain's own transforms, rendering the student's view only."""
    out = []
    for step in pipeline:
        step = dict(step)
        kind = step.get('type')
        if kind == 'ConsistentView':
            size = step['student_size']
            size = size if isinstance(size, int) else size[0]
            if step.get('mode', 'eval') != 'eval':
                raise ValueError('the val pipeline must use ConsistentView '
                                 "mode='eval' to be exported")
            crop_frac = step.get('crop_frac', 0.875)
            out.append(dict(type='ResizeEdge',
                            scale=int(round(size / crop_frac)),
                            edge='short', backend='cv2',
                            interpolation=step.get('interpolation',
                                                   'bilinear')))
            out.append(dict(type='CenterCrop', crop_size=size))
        elif kind == 'PackFunMatchInputs':
            out.append(dict(type='PackInputs'))
        else:
            out.append(step)
    return out


def _has_student(model_type) -> bool:
    """Whether a model type holds the network to export as ``student``:
    FunMatchDistiller and its subclasses (their teachers are not exported;
    nor is a feature loss's projector), BYOTClassifier (its auxiliary heads
    are not exported)."""
    from mmpretrain.registry import MODELS

    from mmfunmatch.models.algorithms import (BYOTClassifier,
                                              FunMatchDistiller)
    cls = model_type if isinstance(model_type, type) else (
        MODELS.get(model_type) if isinstance(model_type, str) else None)
    return isinstance(cls, type) and issubclass(
        cls, (FunMatchDistiller, BYOTClassifier))


def student_config(cfg: Config) -> Config:
    """A plain MMPretrain config for the student of a FunMatchDistiller
    (or a subclass) or of a BYOTClassifier."""
    model = cfg.model
    if not _has_student(model.get('type')):
        raise ValueError(f'{cfg.filename}: model type is {model.get("type")},'
                         ' not FunMatchDistiller; nothing to export (the '
                         'exportable types: FunMatchDistiller and its '
                         'subclasses, BYOTClassifier)')
    student = copy.deepcopy(model.student.to_dict())
    pre = model.get('data_preprocessor') or {}
    student['data_preprocessor'] = dict(
        type='ClsDataPreprocessor',
        mean=list(pre.get('mean', (127.5, 127.5, 127.5))),
        std=list(pre.get('std', (127.5, 127.5, 127.5))),
        to_rgb=pre.get('to_rgb', True))
    student.pop('init_cfg', None)
    val_dl = copy.deepcopy((cfg.get('test_dataloader')
                            or cfg.get('val_dataloader')).to_dict())
    dataset = val_dl['dataset']
    dataset['pipeline'] = _plain_pipeline(dataset.get('pipeline', []))
    return Config(dict(
        default_scope='mmpretrain',
        model=student,
        test_dataloader=val_dl,
        test_evaluator=dict(type='Accuracy', topk=(1, )),
        test_cfg=dict(),
    ))


def export_student(checkpoint: str, out_dir: str,
                   config: Optional[str] = None) -> Tuple[str, str]:
    """Write ``out_dir/student.pth`` and ``out_dir/student_config.py``.

    Args:
        checkpoint (str): A checkpoint written by an mmfunmatch run.
        out_dir (str): Output directory (created).
        config (str, optional): The run's config; defaults to the config
            stored in the checkpoint.

    Returns:
        The paths of the weight file and the config.
    """
    ckpt = load_runner_checkpoint(checkpoint, map_location='cpu')
    state = ckpt.get('state_dict', ckpt)
    student_state = {
        k[len(STUDENT_PREFIX):]: v
        for k, v in state.items() if k.startswith(STUDENT_PREFIX)
    }
    if not student_state:
        raise ValueError(f'{checkpoint} holds no student weights (no '
                         f'"{STUDENT_PREFIX}" keys): is it from a '
                         f'FunMatchDistiller run?')
    meta = ckpt.get('meta', {})
    if config is not None:
        cfg = Config.fromfile(config)
    elif 'cfg' in meta:
        cfg = Config.fromstring(meta['cfg'], file_format='.py')
    else:
        raise ValueError(f'{checkpoint} stores no config; pass --config')
    os.makedirs(out_dir, exist_ok=True)
    weights = osp.join(out_dir, 'student.pth')
    cfg_path = osp.join(out_dir, 'student_config.py')
    dataset_meta = {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in (meta.get('dataset_meta') or {}).items()
        if isinstance(v, (str, int, float, list, tuple))
    }
    torch.save(dict(state_dict=student_state,
                    meta=dict(dataset_meta=dataset_meta,
                              exported_from=osp.basename(checkpoint))),
               weights)
    student_config(cfg).dump(cfg_path)
    return weights, cfg_path
