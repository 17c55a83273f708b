"""Teacher outputs computed once per image and served with the data.

This exists for one purpose: the paper's ``fix/ic_ens`` baseline (figure 3),
where the teacher's target for an image is its mean prediction over many
inception crops, computed once (``tools/precompute_teacher.py``), while the
student trains on random crops. It is deliberately inconsistent (the teacher
never sees the student's view) and is refused anywhere else: function
matching runs the teacher on the student's exact view every step.

File format (one ``.npz``, readable with ``allow_pickle=False``):
``keys`` (N,) unicode: each image's path relative to the data set's
``data_root`` ('/'-separated); ``logits`` (N, C) float32: the log of the
teacher's mean probability over the crops (valid logits: their softmax is
the mean probability). The settings the values were computed with:
``num_crops``, ``seed``, ``scale``, ``ratio``, ``flip_prob``, ``sizes``.
"""
import os
import os.path as osp
import tempfile
from typing import Dict, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.dataset import BaseDataset
from mmpretrain.registry import DATASETS

STORED_BASELINES = ('fix/ic_ens', )
STORED_KEY = 'teacher_logits'


def sample_key(img_path: str, data_root: Optional[str] = None) -> str:
    """The key of an image: its path relative to ``data_root`` when inside
    it (so the file survives moving the data), with '/' separators."""
    if data_root:
        rel = osp.relpath(img_path, data_root)
        if not rel.startswith(os.pardir):
            img_path = rel
    return img_path.replace(os.sep, '/')


def save_stored_teacher(path: str, keys, logits: np.ndarray,
                        **settings) -> None:
    """Write a stored-teacher file atomically (no partial file on a crash)."""
    arrays = dict(keys=np.asarray(list(keys), dtype=np.str_),
                  logits=np.asarray(logits, dtype=np.float32))
    arrays.update({k: np.asarray(v) for k, v in settings.items()})
    for name, value in arrays.items():
        if value.dtype.hasobject:
            raise TypeError(f'{name}: object arrays need pickle; give '
                            f'numbers or strings')
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def load_stored_teacher(
        path: str) -> Tuple[np.ndarray, np.ndarray, Dict[str, np.ndarray]]:
    """Read a stored-teacher file: (keys, logits, settings)."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    for name in ('keys', 'logits'):
        if name not in arrays:
            raise KeyError(f'{path!r} has no {name!r} array; it was not '
                           f'written by tools/precompute_teacher.py')
    keys, logits = arrays.pop('keys'), arrays.pop('logits')
    if logits.ndim != 2 or len(keys) != len(logits):
        raise ValueError(f'{path!r}: {len(keys)} keys but logits of shape '
                         f'{logits.shape}')
    return keys, logits, arrays


@DATASETS.register_module()
class StoredTeacherDataset:
    """Serve stored teacher outputs as ``teacher_logits`` in each sample.

    Only for the paper's ``fix/ic_ens`` ablation baseline (see the module
    docstring); ``baseline='fix/ic_ens'`` must be given to say so. The wrapped
    data set's pipeline runs on each sample with ``teacher_logits`` (a float
    tensor of C logits) added, and must keep it:
    ``dict(type='PackFunMatchInputs', algorithm_keys=['teacher_logits'])``.
    FunMatchDistiller then uses these targets and skips the teacher.

    The whole array is held in memory (ImageNet: 1.28 M x 1000 float32, about
    5 GB, shared by forked dataloader workers).

    Args:
        dataset (dict | BaseDataset): The data set whose images the file
            covers (the student's training data).
        teacher_file (str): The ``.npz`` written by
            ``tools/precompute_teacher.py``.
        baseline (str): Must be 'fix/ic_ens'.
        lazy_init (bool): Defer reading the file until first use.
            Defaults to False.
    """

    def __init__(self,
                 dataset: Union[dict, BaseDataset],
                 teacher_file: str,
                 baseline: Optional[str] = None,
                 lazy_init: bool = False) -> None:
        if baseline not in STORED_BASELINES:
            raise ValueError(
                f'StoredTeacherDataset serves teacher outputs computed once '
                f'per image, not for the view the student sees, so it is '
                f'only the paper\'s inconsistent fix/ic_ens baseline, never '
                f'function matching. Got baseline={baseline!r}. For function '
                f'matching drop StoredTeacherDataset (FunMatchDistiller runs '
                f'the teacher on the student\'s exact view); to run the '
                f'ablation baseline on purpose, set baseline=\'fix/ic_ens\'.')
        self.baseline = baseline
        self.teacher_file = teacher_file
        self.dataset = (DATASETS.build(dataset)
                        if isinstance(dataset, dict) else dataset)
        self._rows: Optional[np.ndarray] = None
        self._logits: Optional[np.ndarray] = None
        self._fully_initialized = False
        if not lazy_init:
            self.full_init()

    @property
    def metainfo(self) -> dict:
        return self.dataset.metainfo

    def _check_pipeline_keeps_key(self) -> None:
        transforms = getattr(self.dataset.pipeline, 'transforms', [])
        if not any(STORED_KEY in (getattr(t, 'algorithm_keys', None) or ())
                   for t in transforms):
            raise ValueError(
                f'StoredTeacherDataset: the wrapped pipeline drops '
                f'{STORED_KEY!r}; pack it with dict(type='
                f'\'PackFunMatchInputs\', algorithm_keys=[\'{STORED_KEY}\']).')

    def full_init(self) -> None:
        """Read the file and match every image of the data set to a row."""
        if self._fully_initialized:
            return
        self.dataset.full_init()
        self._check_pipeline_keeps_key()
        if not osp.isfile(self.teacher_file):
            raise FileNotFoundError(
                f'stored teacher file {self.teacher_file!r} does not exist; '
                f'compute it with: python tools/precompute_teacher.py CONFIG '
                f'{self.teacher_file}')
        keys, logits, _ = load_stored_teacher(self.teacher_file)
        index = {k: i for i, k in enumerate(keys.tolist())}
        root = getattr(self.dataset, 'data_root', None)
        rows, missing = [], []
        for i in range(len(self.dataset)):
            key = sample_key(self.dataset.get_data_info(i)['img_path'], root)
            if key in index:
                rows.append(index[key])
            else:
                missing.append(key)
        if missing:
            raise KeyError(
                f'{len(missing)} of {len(self.dataset)} images have no stored '
                f'teacher output in {self.teacher_file!r} (first: '
                f'{missing[0]!r}): the file is unfinished or was computed for '
                f'other images. Run python tools/precompute_teacher.py CONFIG '
                f'{self.teacher_file} (it resumes).')
        self._rows = np.asarray(rows, dtype=np.int64)
        self._logits = logits
        self._fully_initialized = True

    def __len__(self) -> int:
        return len(self.dataset)

    def get_data_info(self, idx: int) -> dict:
        if not self._fully_initialized:
            self.full_init()
        info = self.dataset.get_data_info(idx)
        info[STORED_KEY] = torch.from_numpy(
            self._logits[self._rows[idx]].copy())
        return info

    def __getitem__(self, idx: int) -> dict:
        data = self.dataset.pipeline(self.get_data_info(idx))
        if data is None:
            raise RuntimeError(
                f'the pipeline returned None for sample {idx} '
                f'({self.dataset.get_data_info(idx)["img_path"]})')
        return data

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(baseline={self.baseline!r}, '
                f'teacher_file={self.teacher_file!r}, '
                f'dataset={self.dataset.__class__.__name__} of '
                f'{len(self)} images)')
