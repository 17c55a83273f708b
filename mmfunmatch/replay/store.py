"""The replay store: the exact training views of every epoch and the
teachers' targets for them, written once and read by any number of students.

Layout of a store folder::

    manifest.json                      what the store was made from (below)
    epoch_00000_rank_000.safetensors   one shard per (epoch, process)
    epoch_00000_rank_000.sha256        its digest, written before the shard
    val_rank_000.safetensors + .json   teachers' val logits, once per store

No pickle anywhere: shards are safetensors files (numbers only, no metadata,
so the same arrays give the same bytes), the manifest and the val keys JSON.

A shard holds, per view of the process's share of the epoch, in step order
(row ``t * B + k`` is slot ``k`` of step ``t``): ``position`` (its place in
the epoch's global order, ``(t * W + rank) * B + k``), ``sample_idx`` (the
data set index), ``box`` (crop in source pixels: x0, y0, w, h), ``flip``,
``weight`` and ``partner`` (the mixup weight and the partner's global
position) and the target of every teacher for the mixed view, in the
manifest's precision:

- ``fp32``: ``logits`` (rows, teachers, classes) float32: exact;
- ``fp16``: ``logits`` in float16 (relative rounding 2^-11);
- ``topk``: ``topk_index`` (int16 below 32768 classes, else int32) and
  ``topk_logprob`` (float16) of the k most probable classes at temperature
  1, and ``rest_logmass`` (float16), the log of the probability left to the
  other classes, which :func:`decode_targets` spreads evenly over them.

The manifest's ``fingerprint`` holds everything that decides the views and
the targets (teacher files' SHA-256, teacher and view settings, the data
set's file list, seeds, batch, process count, mixup); a run whose own
fingerprint differs is refused before its first step, naming the keys.
"""
import hashlib
import json
import math
import os
import os.path as osp
import tempfile
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from mmfunmatch.apis.validate import ConfigError

FORMAT = 'mmfunmatch-replay-store'
VERSION = 1
PRECISIONS = ('fp32', 'fp16', 'topk')
MANIFEST = 'manifest.json'
_UMASK = os.umask(0)
os.umask(_UMASK)
# The view fields of a shard, in the order the replay checks them.
VIEW_FIELDS = ('position', 'sample_idx', 'box', 'flip', 'weight', 'partner')


class ReplayStoreError(ConfigError):
    """A store that cannot serve this run: missing, corrupt, made from
    something else, or too short (``tools/train.py`` exits with code 2 and
    the message)."""


# -- precision -----------------------------------------------------------------
def check_precision(precision: str, topk: Optional[int],
                    num_classes: Optional[int] = None) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f'replay store precision must be one of '
                         f'{PRECISIONS}, got {precision!r}')
    if precision == 'topk':
        if not isinstance(topk, int) or topk < 1 or (
                num_classes is not None and topk >= num_classes):
            raise ValueError(
                f'precision="topk" needs topk = an int from 1 to the number '
                f'of classes - 1 ({num_classes}); got {topk!r}. For all '
                f'classes use precision="fp32" or "fp16".')


def encode_targets(logits: torch.Tensor, precision: str,
                   topk: Optional[int] = None) -> Dict[str, np.ndarray]:
    """Arrays to store for (rows, teachers, classes) float32 logits."""
    check_precision(precision, topk, logits.size(-1))
    logits = logits.detach().float().cpu()
    if precision == 'fp32':
        return dict(logits=logits.numpy())
    if precision == 'fp16':
        return dict(logits=logits.half().numpy())
    logp = torch.log_softmax(logits.double(), dim=-1)
    top, index = logp.topk(topk, dim=-1)
    rest = (1 - top.exp().sum(-1)).clamp_min(torch.finfo(torch.float32).tiny)
    index_dtype = np.int16 if logits.size(-1) < 2**15 else np.int32
    return dict(topk_index=index.numpy().astype(index_dtype),
                topk_logprob=top.half().numpy(),
                rest_logmass=rest.log().half().numpy())


def decode_targets(arrays: Dict[str, np.ndarray], rows: slice,
                   num_classes: int) -> torch.Tensor:
    """(rows, teachers, classes) float32 logits from stored arrays.

    Top-k targets come back as log-probabilities at temperature 1: exact for
    the k stored classes and for the total mass of the others, which is
    spread evenly over them (the tail's shape is not stored).
    """
    if 'logits' in arrays:
        return torch.from_numpy(
            np.ascontiguousarray(arrays['logits'][rows])).float()
    index = torch.from_numpy(arrays['topk_index'][rows].astype(np.int64))
    top = torch.from_numpy(arrays['topk_logprob'][rows]).float()
    rest = torch.from_numpy(arrays['rest_logmass'][rows]).float()
    k = index.size(-1)
    fill = rest - math.log(num_classes - k)
    out = fill.unsqueeze(-1).expand(*fill.shape, num_classes).clone()
    return out.scatter_(-1, index, top)


def bytes_per_view(precision: str, num_classes: int, topk: Optional[int] = None,
                   num_teachers: int = 1) -> int:
    """Bytes one view takes in a shard (view fields and target)."""
    view = 8 + 8 + 4 * 4 + 1 + 4 + 8  # position, idx, box, flip, weight, partner
    target = encode_targets(torch.zeros(1, num_teachers, num_classes),
                            precision, topk)
    return view + sum(a.nbytes for a in target.values())


# -- files ---------------------------------------------------------------------
def sha256_file(path: str, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            digest.update(block)
    return digest.hexdigest()


def _atomic_write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename, so a
    kill leaves either the old file or the new one, never half of one."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it owner-only
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def shard_name(epoch: int, rank: int) -> str:
    return f'epoch_{epoch:05d}_rank_{rank:03d}.safetensors'


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, default=repr)


def fingerprint_diff(stored: dict, current: dict) -> List[str]:
    """One line per key whose value differs (or exists on one side only)."""
    lines = []
    for key in sorted(set(stored) | set(current)):
        a, b = stored.get(key, '<absent>'), current.get(key, '<absent>')
        if _canonical(a) != _canonical(b):
            lines.append(f'{key}: store {_short(a)} | this run {_short(b)}')
    return lines


def _short(value, limit: int = 160) -> str:
    text = _canonical(value)
    return text if len(text) <= limit else text[:limit] + '...'


class ReplayStore:
    """A store folder: its manifest, shards and val logits.

    Args:
        root (str): The store folder.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self._manifest: Optional[dict] = None

    # -- manifest --------------------------------------------------------------
    @property
    def manifest_path(self) -> str:
        return osp.join(self.root, MANIFEST)

    def exists(self) -> bool:
        return osp.isfile(self.manifest_path)

    @property
    def manifest(self) -> dict:
        if self._manifest is None:
            if not self.exists():
                raise ReplayStoreError(
                    f'no replay store at {self.root!r} (no {MANIFEST}); '
                    f'write one with: python tools/label_teacher.py CONFIG '
                    f'{self.root}')
            try:
                with open(self.manifest_path) as f:
                    manifest = json.load(f)
            except (OSError, ValueError) as err:
                raise ReplayStoreError(
                    f'{self.manifest_path} cannot be read ({err}); the store '
                    f'is damaged: label again into an empty folder.') from err
            if manifest.get('format') != FORMAT or manifest.get(
                    'version') != VERSION:
                raise ReplayStoreError(
                    f'{self.manifest_path} is not a version {VERSION} '
                    f'{FORMAT} manifest (format {manifest.get("format")!r}, '
                    f'version {manifest.get("version")!r}).')
            self._manifest = manifest
        return self._manifest

    def write_manifest(self, manifest: dict) -> None:
        manifest = dict(manifest, format=FORMAT, version=VERSION)
        _atomic_write(self.manifest_path,
                      json.dumps(manifest, indent=1, sort_keys=True).encode())
        self._manifest = manifest

    @property
    def epochs(self) -> int:
        return int(self.manifest['epochs'])

    @property
    def num_classes(self) -> int:
        return int(self.manifest['num_classes'])

    @property
    def num_teachers(self) -> int:
        return len(self.manifest['teacher_keys'])

    def check_fingerprint(self, current: dict) -> None:
        """Refuse a run made of other teachers, views, data or batches."""
        diff = fingerprint_diff(self.manifest['fingerprint'], current)
        if diff:
            raise ReplayStoreError(
                f'the replay store {self.root!r} was made for another run; '
                f'these settings differ:\n  - ' + '\n  - '.join(diff) +
                '\nUse the config the store was labelled with (a different '
                'student, its size and its optimizer are fine), or label a '
                'new store for this config: python tools/label_teacher.py '
                'CONFIG NEW_STORE_DIR')

    # -- shards ----------------------------------------------------------------
    def shard_path(self, epoch: int, rank: int) -> str:
        return osp.join(self.root, shard_name(epoch, rank))

    def has_shard(self, epoch: int, rank: int) -> bool:
        path = self.shard_path(epoch, rank)
        return osp.isfile(path) and osp.isfile(_digest_path(path))

    def write_shard(self, epoch: int, rank: int,
                    arrays: Dict[str, np.ndarray]) -> str:
        """Write one shard: its digest first, then the shard by rename (a
        shard on disk is complete and its digest is beside it)."""
        path = self.shard_path(epoch, rank)
        _write_checked(path, arrays)
        return path

    def read_shard(self, epoch: int, rank: int) -> Dict[str, np.ndarray]:
        """A shard's arrays, after checking its digest."""
        path = self.shard_path(epoch, rank)
        if not self.has_shard(epoch, rank):
            raise ReplayStoreError(
                f'replay store shard {path} is missing (epoch {epoch}, rank '
                f'{rank}): the labelling run has not finished; rerun python '
                f'tools/label_teacher.py with the same config and store '
                f'(it continues where it stopped).')
        return self._read_checked(path)

    def _read_checked(self, path: str) -> Dict[str, np.ndarray]:
        from safetensors.numpy import load
        with open(_digest_path(path)) as f:
            expected = f.read().strip()
        with open(path, 'rb') as f:
            data = f.read()
        if hashlib.sha256(data).hexdigest() != expected:
            raise ReplayStoreError(
                f'replay store shard {path} is corrupt or truncated (its '
                f'SHA-256 differs from the one written with it; '
                f'{len(data)} bytes). Delete it and rerun python '
                f'tools/label_teacher.py with the same config and store: '
                f'only the missing shards are labelled again.')
        try:
            return load(data)
        except Exception as err:  # digest matched: written wrong, not cut
            raise ReplayStoreError(
                f'replay store shard {path} cannot be read ({err}); delete '
                f'it and label it again.') from err

    # -- validation logits -----------------------------------------------------
    def val_paths(self, rank: int):
        base = osp.join(self.root, f'val_rank_{rank:03d}')
        return base + '.safetensors', base + '.json'

    def write_val(self, rank: int, sample_idx: np.ndarray, logits: np.ndarray,
                  keys: Sequence[str]) -> None:
        shard, names = self.val_paths(rank)
        _atomic_write(names, json.dumps(list(keys)).encode())
        _write_checked(shard, dict(sample_idx=np.asarray(sample_idx, np.int64),
                                   logits=np.asarray(logits, np.float32)))

    def read_val(self) -> Dict[int, tuple]:
        """sample index -> (image key, (teachers, classes) logits), over
        every rank's val file."""
        out: Dict[int, tuple] = {}
        for rank in range(int(self.manifest['world_size'])):
            shard, names = self.val_paths(rank)
            if not osp.isfile(shard):
                continue
            arrays = self._read_checked(shard)
            with open(names) as f:
                keys = json.load(f)
            for i, key, row in zip(arrays['sample_idx'].tolist(), keys,
                                   arrays['logits']):
                out[int(i)] = (key, torch.from_numpy(row.copy()))
        return out


def _write_checked(path: str, arrays: Dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as safetensors at ``path``, its SHA-256 first and the
    file by rename, so a file on disk is complete with its digest beside
    it (what ``_read_checked`` verifies)."""
    from safetensors.numpy import save
    data = save({k: np.ascontiguousarray(v) for k, v in arrays.items()})
    _atomic_write(_digest_path(path),
                  hashlib.sha256(data).hexdigest().encode())
    _atomic_write(path, data)


def _digest_path(shard: str) -> str:
    return osp.splitext(shard)[0] + '.sha256'
