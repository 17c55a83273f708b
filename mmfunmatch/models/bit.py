"""Google BiT / big_vision ``.npz`` weights for timm's ResNetV2 (BiT) models.

The paper's teachers and students are published as NumPy archives in two
layouts, both read here with ``allow_pickle=False`` (an archive can carry
pickled object arrays, which would run code on load):

- ``'bit'``: the original BiT release (``BiT-M-R152x2.npz`` and the files
  timm's ``load_pretrained`` reads): ``resnet/block1/unit01/a/
  standardized_conv2d/kernel``, ``.../a/group_norm/gamma``, ``resnet/head/
  conv2d/kernel`` of shape (1, 1, C, K).
- ``'big_vision'``: big_vision's ``models/bit_paper.py`` parameter tree
  (the distillation checkpoints): ``block1/unit01/conv1/kernel``,
  ``block1/unit01/gn1/scale`` of shape (1, 1, 1, C), ``head/kernel`` of shape
  (C, K), optionally under ``params/`` or ``opt/target/`` in full training
  checkpoints.

Kernels are HWIO in both and OIHW in torch. timm ships its own BiT npz loader
(``ResNetV2.load_pretrained``, it does use ``allow_pickle=False``), but it
reads only the first layout, silently keeps a random head when the class
count differs, ignores file entries the model lacks and fails on a missing
key with a bare ``KeyError``. Teachers must load exactly or not at all, so
this module maps every tensor itself and checks both directions.

Also here: :class:`FunMatchTimmClassifier` and the ``TimmHead`` init, which
let a timm student (BiT-R50x1) start from a zero head, as big_vision's does.
"""
import os
import re
from typing import Dict, List, Tuple

import numpy as np
import torch
import torch.nn as nn
from mmengine.model.weight_init import (BaseInit, constant_init,
                                        update_init_info)
from mmengine.registry import WEIGHT_INITIALIZERS
from mmpretrain.models.classifiers import TimmClassifier
from mmpretrain.registry import MODELS

LAYOUTS = ('big_vision', 'bit')

# Per-layout names of the parts of a unit and of the network.
# (conv1, conv2, conv3) kernels, (norm1, norm2, norm3) (scale, bias),
# projection kernel, stem kernel, pre-head norm, head (kernel, bias).
_NAMES = {
    'bit': dict(
        prefix='resnet/',
        conv=('a/standardized_conv2d/kernel', 'b/standardized_conv2d/kernel',
              'c/standardized_conv2d/kernel'),
        norm=('a/group_norm/', 'b/group_norm/', 'c/group_norm/'),
        scale_bias=('gamma', 'beta'),
        proj='a/proj/standardized_conv2d/kernel',
        stem='root_block/standardized_conv2d/kernel',
        pre_head='group_norm/',
        head=('head/conv2d/kernel', 'head/conv2d/bias'),
    ),
    'big_vision': dict(
        prefix='',
        conv=('conv1/kernel', 'conv2/kernel', 'conv3/kernel'),
        norm=('gn1/', 'gn2/', 'gn3/'),
        scale_bias=('scale', 'bias'),
        proj='conv_proj/kernel',
        stem='root_block/conv_root/kernel',
        pre_head='norm-pre-head/',
        head=('head/kernel', 'head/bias'),
    ),
}
# Where full big_vision training checkpoints keep the parameters.
_BIG_VISION_ROOTS = ('params/', 'opt/target/', '')


def find_resnetv2(model: nn.Module) -> nn.Module:
    """The timm ResNetV2 inside ``model`` (bare, or mmpretrain's
    ``TimmClassifier`` which holds it as ``.model``)."""
    from timm.models.resnetv2 import PreActBottleneck, ResNetV2
    net = model if isinstance(model, ResNetV2) else getattr(
        model, 'model', None)
    if not isinstance(net, ResNetV2):
        raise TypeError(
            f'BiT .npz weights fit a timm ResNetV2 (resnetv2_50x1_bit, '
            f'resnetv2_152x2_bit, ...) or a TimmClassifier wrapping one; got '
            f'{type(model).__name__}. Use a .safetensors/.pth file for other '
            f'architectures.')
    blocks = [b for s in net.stages for b in s.blocks]
    if not all(isinstance(b, PreActBottleneck) for b in blocks):
        raise TypeError(
            'BiT .npz weights fit pre-activation bottleneck ResNetV2 models '
            '(the *_bit variants); this ResNetV2 has other blocks.')
    return net


def _bit_names(net: nn.Module, layout: str,
               root: str) -> Dict[str, Tuple[str, str]]:
    """Map each timm state-dict key to ``(npz key, kind)``.

    ``kind`` says how the array is laid out: 'conv' (HWIO kernel), 'vec'
    (a norm scale or bias: (C,) or (1, 1, 1, C)), 'head' (the classifier
    kernel) or 'bias' (the classifier bias, (K,) in both layouts).
    """
    n = _NAMES[layout]
    pre = root + n['prefix']
    scale, bias = n['scale_bias']
    names = {
        'stem.conv.weight': (pre + n['stem'], 'conv'),
        'norm.weight': (pre + n['pre_head'] + scale, 'vec'),
        'norm.bias': (pre + n['pre_head'] + bias, 'vec'),
    }
    if isinstance(getattr(net.head, 'fc', None), (nn.Conv2d, nn.Linear)):
        names['head.fc.weight'] = (pre + n['head'][0], 'head')
        names['head.fc.bias'] = (pre + n['head'][1], 'bias')
    for i, stage in enumerate(net.stages):
        for j, block in enumerate(stage.blocks):
            unit = f'{pre}block{i + 1}/unit{j + 1:02d}/'
            ours = f'stages.{i}.blocks.{j}.'
            for k in range(3):
                names[f'{ours}conv{k + 1}.weight'] = (unit + n['conv'][k],
                                                      'conv')
                names[f'{ours}norm{k + 1}.weight'] = (
                    unit + n['norm'][k] + scale, 'vec')
                names[f'{ours}norm{k + 1}.bias'] = (
                    unit + n['norm'][k] + bias, 'vec')
            if block.downsample is not None:
                names[f'{ours}downsample.conv.weight'] = (unit + n['proj'],
                                                          'conv')
    return names


def _to_torch(arr: np.ndarray, kind: str) -> torch.Tensor:
    """An npz array in the torch layout of its kind."""
    if arr.dtype.kind == 'V' and arr.dtype.itemsize == 2:
        # bfloat16 arrays are stored as raw 2-byte records.
        t = torch.from_numpy(arr.view(np.int16).copy()).view(torch.bfloat16)
        t = t.float()
    else:
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if kind == 'conv':
        return t.permute(3, 2, 0, 1) if t.ndim == 4 else t
    if kind == 'head':  # 'bit': (1, 1, C, K); 'big_vision': (C, K)
        if t.ndim == 4:
            t = t.permute(3, 2, 0, 1)
        elif t.ndim == 2:
            t = t.t()
        return t
    return t.reshape(-1)


def _to_numpy(t: torch.Tensor, kind: str, layout: str) -> np.ndarray:
    """A torch tensor in the npz layout of its kind (inverse of _to_torch)."""
    t = t.detach().cpu().float()
    if kind == 'conv':
        t = t.permute(2, 3, 1, 0)
    elif kind == 'head':
        t = t.reshape(t.shape[0], t.shape[1])  # (K, C[, 1, 1]) -> (K, C)
        t = t.t()[None, None] if layout == 'bit' else t.t()
    elif kind == 'vec' and layout == 'big_vision':
        t = t.reshape(1, 1, 1, -1)
    return np.ascontiguousarray(t.numpy())


def _read_npz(path: str) -> Dict[str, np.ndarray]:
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f'BiT weight file {path!r} does not exist; check the checkpoint '
            f'path in your config.')
    try:
        with np.load(path, allow_pickle=False) as npz:
            # Normalise a naming quirk of some original BiT files.
            return {
                re.sub(r'/standardized_conv2d_\d+/', '/standardized_conv2d/',
                       k): npz[k]
                for k in npz.files
            }
    except ValueError as err:  # object arrays need pickle
        raise RuntimeError(
            f'refusing to load {path!r}: it holds pickled Python objects '
            f'and unpickling could execute code ({err}). A BiT/big_vision '
            f'.npz holds plain numeric arrays only.') from err


def _detect_layout(keys: List[str]) -> Tuple[str, str]:
    """``(layout, root)`` of an archive, from its stem kernel's key."""
    for layout in LAYOUTS:
        roots = _BIG_VISION_ROOTS if layout == 'big_vision' else ('', )
        for root in roots:
            n = _NAMES[layout]
            if root + n['prefix'] + n['stem'] in keys:
                return layout, root
    expected = ', '.join(
        repr(_NAMES[lay]['prefix'] + _NAMES[lay]['stem']) for lay in LAYOUTS)
    raise KeyError(
        f'not a BiT/big_vision ResNet archive: no stem kernel ({expected}) '
        f'among its {len(keys)} entries (first: {sorted(keys)[:3]})')


@torch.no_grad()
def load_bit_npz(model: nn.Module, path: str) -> None:
    """Load a BiT or big_vision ``.npz`` file into a timm ResNetV2.

    Every parameter of the model must be in the file with the right shape,
    and every network parameter in the file must be used: a depth, width or
    class-count mismatch fails with the offending key instead of leaving
    random weights behind.

    Args:
        model (nn.Module): A timm ``ResNetV2`` BiT model, or an mmpretrain
            ``TimmClassifier`` wrapping one.
        path (str): The ``.npz`` file (either layout, see the module doc).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        RuntimeError: the archive holds pickled objects; a key is missing;
            a tensor has the wrong shape; the file has unused parameters.
        TypeError: ``model`` is not a BiT ResNetV2.
    """
    net = find_resnetv2(model)
    arrays = _read_npz(path)
    try:
        layout, root = _detect_layout(list(arrays))
    except KeyError as err:
        raise RuntimeError(f'{path!r}: {err.args[0]}') from None
    names = _bit_names(net, layout, root)
    own = net.state_dict()
    unmapped = [k for k in own if k not in names]
    if unmapped:
        raise RuntimeError(
            f'{type(net).__name__} has tensors with no BiT npz counterpart '
            f'(first: {unmapped[0]!r}); only resnetv2_*_bit models load from '
            f'.npz.')

    missing = [(k, npz_key) for k, (npz_key, _) in names.items()
               if npz_key not in arrays]
    if missing:
        k, npz_key = missing[0]
        raise RuntimeError(
            f'{path!r} ({layout} layout) lacks {len(missing)} entries the '
            f'model needs, first: {npz_key!r} (for {k!r}). The file was '
            f'written for a shallower network or another layout: check that '
            f'model_name matches it (e.g. R152x2 files need '
            f'resnetv2_152x2_bit, R50x1 files resnetv2_50x1_bit).')

    state = {}
    for k, (npz_key, kind) in names.items():
        t = _to_torch(arrays[npz_key], kind)
        want = own[k].shape
        if (kind == 'head' and t.shape[:2] == want[:2]
                and t.numel() == own[k].numel()):
            t = t.reshape(want)  # a 1x1 conv head or a linear one
        if t.shape != want:
            hint = (f'set num_classes={t.shape[0]} (the file\'s class count)'
                    if kind in ('head', 'bias') else
                    'check the model width (e.g. x1 vs x2) in model_name')
            raise RuntimeError(
                f'{path!r}: {npz_key!r} has shape {tuple(t.shape)} in torch '
                f'layout but the model\'s {k!r} is {tuple(want)}; {hint}.')
        state[k] = t.to(own[k].dtype)

    used = {npz_key for npz_key, _ in names.values()}
    pre = root + _NAMES[layout]['prefix']
    if 'head.fc.weight' not in names:  # a headless model (num_classes=0)
        used |= {pre + h for h in _NAMES[layout]['head']}
    unused = sorted(k for k in arrays if k.startswith(pre) and k not in used)
    if unused:
        raise RuntimeError(
            f'{path!r} holds {len(unused)} parameters the model does not '
            f'have, first: {unused[0]!r}. The file was written for a deeper '
            f'network: check that model_name matches it.')
    net.load_state_dict(state, strict=True)


@torch.no_grad()
def save_bit_npz(model: nn.Module,
                 path: str,
                 layout: str = 'big_vision',
                 root: str = '') -> Dict[str, np.ndarray]:
    """Write a timm ResNetV2 BiT model's weights as a BiT/big_vision npz.

    The inverse of :func:`load_bit_npz`; used to test loading without
    downloading real checkpoints, and to hand weights back to big_vision.

    Args:
        model (nn.Module): A timm BiT ``ResNetV2`` or a ``TimmClassifier``
            wrapping one.
        path (str): Where to write the ``.npz``.
        layout (str): 'big_vision' (bit_paper.py names) or 'bit' (the
            original BiT release). Defaults to 'big_vision'.
        root (str): A prefix for every key, e.g. 'params/' as in big_vision
            training checkpoints. Defaults to ''.

    Returns:
        dict: The arrays written, by key.
    """
    if layout not in LAYOUTS:
        raise ValueError(f'layout must be one of {LAYOUTS}, got {layout!r}')
    net = find_resnetv2(model)
    own = net.state_dict()
    names = _bit_names(net, layout, root)
    arrays = {
        npz_key: _to_numpy(own[k], kind, layout)
        for k, (npz_key, kind) in names.items()
    }
    np.savez(path, **arrays)
    return arrays


__all__ = ['load_bit_npz', 'save_bit_npz', 'find_resnetv2',
           'TimmHeadInit', 'FunMatchTimmClassifier']


# -- initialisation of timm students ------------------------------------------
@WEIGHT_INITIALIZERS.register_module(name='TimmHead')
class TimmHeadInit(BaseInit):
    """Constant initialisation of a timm network's classifier layer.

    mmengine's ``Constant`` init picks layers by type, which cannot single out
    a timm head (BiT's is a 1x1 ``Conv2d`` like all its convolutions), and
    ``override`` reaches only direct children, while ``TimmClassifier`` holds
    the network as ``.model``. This init takes the layer timm names as its
    classifier (``get_classifier()``). Use it with
    :class:`FunMatchTimmClassifier`: a plain ``TimmClassifier`` re-runs timm's
    own initialisation after ``init_cfg``.

    Args:
        val (float): Value of the weight. Defaults to 0.
        bias (float): Value of the bias. Defaults to 0.
    """

    def __init__(self, val: float = 0., **kwargs) -> None:
        super().__init__(**kwargs)
        self.val = val

    def __call__(self, module: nn.Module) -> None:
        net = getattr(module, 'model', module)
        head = (net.get_classifier() if hasattr(net, 'get_classifier')
                else None)
        if not isinstance(getattr(head, 'weight', None), torch.Tensor):
            raise TypeError(
                f'TimmHead init needs a timm network with a classifier layer '
                f'(get_classifier()), bare or in a TimmClassifier; got '
                f'{type(module).__name__} whose classifier is '
                f'{type(head).__name__}.')
        constant_init(head, self.val, self.bias)
        if hasattr(module, '_params_init_info'):
            update_init_info(module, init_info=self._get_init_info())

    def _get_init_info(self) -> str:
        return f'TimmHead: val={self.val}, bias={self.bias}'


@MODELS.register_module()
class FunMatchTimmClassifier(TimmClassifier):
    """mmpretrain's ``TimmClassifier`` whose ``init_cfg`` holds.

    timm initialises a network once, in ``create_model``. mmengine's
    ``BaseModule.init_weights`` (what the runner and ``FunMatchDistiller``
    call) applies ``init_cfg`` first and then calls ``init_weights()`` on
    every child not marked initialised, so with ``TimmClassifier`` timm
    draws every layer again and overwrites ``init_cfg``. For BiT that call
    gives the head N(0, 0.01) and, since it passes no arguments, zeroes the
    last conv of every residual unit (timm's method defaults to
    ``zero_init_last=True``; ``create_model`` builds ResNetV2 with False).
    Here the network is marked initialised when it is created, so
    ``init_weights`` applies ``init_cfg`` on top of timm's creation-time
    weights and changes nothing else. (A ``pretrained=True`` network keeps
    its weights for the same reason.)

    Args:
        *args: Positional arguments of ``timm.create_model``.
        **kwargs: Keyword arguments of :class:`TimmClassifier` (``loss``,
            ``train_cfg``, ``with_cp``, ``data_preprocessor``, ``init_cfg``)
            and of ``timm.create_model`` (``model_name``, ``num_classes``,
            ``pretrained``, ...).

    Example:
        >>> model = dict(type='FunMatchTimmClassifier',
        ...              model_name='resnetv2_50x1_bit', num_classes=1000,
        ...              init_cfg=dict(type='TimmHead', val=0., bias=0.))
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # BaseModule.init_weights skips children whose `is_init` is set.
        self.model.is_init = True
