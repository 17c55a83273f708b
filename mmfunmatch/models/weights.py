"""Loading model weights from files a user downloaded, without unpickling code.

Accepted: safetensors files, PyTorch state dicts / checkpoints readable with
``torch.load(weights_only=True)`` (timm and MMPretrain checkpoints, and
checkpoints written by mmfunmatch's runs), and big_vision BiT ``.npz`` files
(read by numpy with ``allow_pickle=False``).
"""
import os
from typing import Dict, Iterable, Optional

import numpy as np
import torch
import torch.nn as nn

# Prefixes that wrap the same weights in common checkpoint layouts: DDP
# ('module.'), mmfunmatch's distiller ('student.'), mmpretrain's
# TimmClassifier ('model.').
_PREFIXES = ('module.', 'student.', 'model.')


def read_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """Read the tensors of a weight file without executing code in it.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        RuntimeError: the file needs full unpickling (it may run code).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f'weight file {path!r} does not exist; check the checkpoint path '
            f'in your config (or set it to None to start from random '
            f'weights).')
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        return load_file(path)
    if path.endswith('.npz'):
        with np.load(path, allow_pickle=False) as npz:
            return {k: torch.from_numpy(npz[k].copy()) for k in npz.files}
    from mmfunmatch.compat import load_runner_checkpoint
    try:
        obj = load_runner_checkpoint(path, map_location='cpu')
    except RuntimeError as err:
        raise RuntimeError(
            f'refusing to load {path!r}: it is not a plain tensor checkpoint '
            f'and unpickling it could execute code. Convert it to '
            f'.safetensors (or a plain state dict) from a trusted '
            f'environment.') from err
    for key in ('state_dict', 'model', 'module'):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict):
        raise RuntimeError(f'{path!r} holds a {type(obj).__name__}, not a '
                           f'state dict')
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _rekey(state: Dict[str, torch.Tensor], wanted: Iterable[str]
           ) -> Dict[str, torch.Tensor]:
    """Add or strip one wrapping prefix so the keys best match ``wanted``."""
    wanted = set(wanted)
    candidates = [state]
    for p in _PREFIXES:
        stripped = {k[len(p):]: v for k, v in state.items() if k.startswith(p)}
        if stripped:
            candidates.append(stripped)
        candidates.append({p + k: v for k, v in state.items()})
    return max(candidates, key=lambda c: len(wanted.intersection(c)))


def load_weights(model: nn.Module,
                 path: str,
                 strict: bool = True,
                 name: str = 'model',
                 converter: Optional[callable] = None) -> None:
    """Load a weight file into ``model`` safely, with a clear error on a
    mismatch.

    Args:
        model (nn.Module): The model to fill.
        path (str): A ``.safetensors``, ``.pth``/``.pt``/``.ckpt`` or ``.npz``
            file.
        strict (bool): Fail on missing or unexpected keys. Defaults to True.
        name (str): How to call the model in messages ('teacher 0').
        converter (callable, optional): Maps the raw file dict to the
            model's key layout (e.g. big_vision .npz to timm names).
    """
    if path.endswith('.npz') and converter is None:
        from mmfunmatch.models.bit import load_bit_npz
        load_bit_npz(model, path)
        return
    state = read_state_dict(path)
    if converter is not None:
        state = converter(state)
    own = model.state_dict()
    state = _rekey(state, own.keys())
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shape_errors = [
        f'{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}'
        for k in own if k in state and state[k].shape != own[k].shape
    ]
    if shape_errors:
        raise RuntimeError(
            f'{name}: {len(shape_errors)} tensors in {path!r} have the wrong '
            f'shape, first: {shape_errors[0]}. The file was written for a '
            f'different architecture or class count; check the model config.')
    if strict and (missing or unexpected):
        raise RuntimeError(
            f'{name}: {path!r} does not match the model: {len(missing)} '
            f'missing keys (first: {missing[:3]}), {len(unexpected)} '
            f'unexpected keys (first: {unexpected[:3]}). Check that the config '
            f'builds the architecture the file was written for.')
    model.load_state_dict(state, strict=False)


__all__ = ['read_state_dict', 'load_weights']
