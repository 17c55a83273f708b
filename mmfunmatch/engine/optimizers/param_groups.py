import inspect
from typing import Dict, List, Optional

import torch.nn as nn
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmengine.registry import (OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS,
                               OPTIMIZERS)


def trainable_module(model: nn.Module) -> nn.Module:
    """The part of ``model`` that trains: what its ``trainable_modules()``
    lists (a distiller's student plus a feature loss's projector, a
    self-distilled network's auxiliary heads), else the student of a
    distiller, else the whole model."""
    model = getattr(model, 'module', model)  # unwrap DDP
    if hasattr(model, 'trainable_modules'):
        parts = model.trainable_modules()
        return parts[0] if len(parts) == 1 else nn.ModuleList(parts)
    return getattr(model, 'student', model)


def decay_groups(module: nn.Module,
                 weight_decay: float,
                 no_decay_mult: float = 0.) -> List[Dict]:
    """At most two parameter groups: conv/linear weights with decay, and
    norm scales and biases (tensors of one dimension or less) with
    ``no_decay_mult * weight_decay``.

    Parameters that do not require grad (frozen teachers) are left out.
    Merging keeps the group count minimal, which matters for Shampoo and for
    foreach/fused optimizer kernels.
    """
    decay, no_decay = [], []
    for p in module.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    groups = []
    if decay:
        groups.append(dict(params=decay, weight_decay=weight_decay))
    if no_decay:
        groups.append(
            dict(params=no_decay, weight_decay=weight_decay * no_decay_mult))
    if not groups:
        raise ValueError('the model has no trainable parameters to optimise')
    return groups


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class FunMatchOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Hand the optimizer the student's parameters only (plus what the
    model's ``trainable_modules()`` adds, e.g. SRD's projector), in two
    groups.

    big_vision decays conv and linear weights only. Here that is the default:
    parameters with more than one dimension take the optimizer's
    ``weight_decay``; norm scales and biases take ``no_decay_mult`` times it
    (0 by default). Teacher parameters never reach the optimizer.

    Args:
        optim_wrapper_cfg (dict): The ``optim_wrapper`` config.
        paramwise_cfg (dict, optional): Accepts ``no_decay_mult`` (float).
    """

    def __init__(self,
                 optim_wrapper_cfg: dict,
                 paramwise_cfg: Optional[dict] = None) -> None:
        paramwise_cfg = dict(paramwise_cfg or {})
        self.no_decay_mult = float(paramwise_cfg.pop('no_decay_mult', 0.))
        if paramwise_cfg:
            raise ValueError(
                f'FunMatchOptimWrapperConstructor: unknown paramwise_cfg keys '
                f'{sorted(paramwise_cfg)}; only no_decay_mult is supported.')
        super().__init__(optim_wrapper_cfg, None)

    def __call__(self, model: nn.Module) -> OptimWrapper:
        optim_wrapper_cfg = self.optim_wrapper_cfg.copy()
        optim_wrapper_cfg.setdefault('type', 'OptimWrapper')
        optimizer_cfg = self.optimizer_cfg.copy()
        optimizer_cls = optimizer_cfg['type']
        if isinstance(optimizer_cls, str):
            with OPTIMIZERS.switch_scope_and_registry(None) as registry:
                optimizer_cls = registry.get(optimizer_cls)
        first_arg = next(iter(inspect.signature(optimizer_cls).parameters))
        optimizer_cfg[first_arg] = decay_groups(
            trainable_module(model), optimizer_cfg.get('weight_decay', 0.),
            self.no_decay_mult)
        optimizer = OPTIMIZERS.build(optimizer_cfg)
        return OPTIM_WRAPPERS.build(
            optim_wrapper_cfg, default_args=dict(optimizer=optimizer))
