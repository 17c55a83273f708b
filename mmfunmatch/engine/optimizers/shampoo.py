"""Shampoo for MMEngine, as the paper used it (Beyer et al. 2022, sec. 3.4).

This wraps pytorch-optimizer's ``ScalableShampoo`` (a port of Google's
scalable Shampoo): its argument checks, block partitioner, Kronecker-factor
statistics and layer-wise grafts are reused as they are. Our own code covers
what the library does not do well for an MMEngine training run:

1. Checkpoints. The library keeps ``PreConditioner`` and ``Graft`` objects in
   ``optimizer.state``; they pickle with ``torch.save`` but do not load under
   ``torch.load(weights_only=True)``, which the project's checkpoint loader
   uses. Here the state holds tensors only; the library objects are views on
   those tensors, rebuilt after a load.
2. Speed. The library computes each inverse root alone with a coupled
   Schur-Newton loop that syncs with the host every iteration; on BiT-R50x1
   at block size 128 one optimizer step took 120 to 250 s on 2 CPU cores.
   Here all roots of the same size are computed in one batched call.
3. Randomness. The library estimates eigenvalues by power iteration from
   ``torch.randn``, so every recompute draws from the global generator,
   shifting the draws of anything else that uses it (dropout, augmentation)
   and making the step depend on the generator's state. The batched roots
   use no randomness.
4. Shape merging. The library's ``merge_small_dims`` keeps size-1 factors
   (``(256, 64, 1, 1)`` becomes ``[1, 256, 64]``), which adds a dimension and
   changes the inverse-root exponent from -1/4 to -1/6 for most convolutions.
   Here size-1 factors are dropped, as in Google's implementation.
5. Non-finite preconditioners fall back to the grafted step per block.
6. Weight decay can follow the paper's convention (see ``decay_scaled_by_lr``).
"""
import logging
from contextlib import contextmanager
from typing import Dict, Iterable, Iterator, List, Optional, Tuple, Union

import torch
from mmengine.logging import print_log
from mmengine.registry import OPTIMIZERS
from pytorch_optimizer.optimizer.shampoo import ScalableShampoo
from pytorch_optimizer.optimizer.utils.graft import (Graft, LayerWiseGrafting,
                                                     build_graft)
from pytorch_optimizer.optimizer.utils.partition import PreConditionerType
from pytorch_optimizer.optimizer.utils.preconditioner import PreConditioner

GRAFT_TYPES = {
    'none': LayerWiseGrafting.NONE,
    'sgd': LayerWiseGrafting.SGD,
    'adagrad': LayerWiseGrafting.ADAGRAD,
    'rmsprop': LayerWiseGrafting.RMSPROP,
    'sqrtn': LayerWiseGrafting.SQRTN,
}
PRECONDITIONER_TYPES = {
    'all': PreConditionerType.ALL,
    'input': PreConditionerType.INPUT,
    'output': PreConditionerType.OUTPUT,
}
ROOT_METHODS = ('auto', 'eigh', 'newton')

# Coupled Newton iteration limits (the values Google's Shampoo uses in fp32).
_NEWTON_MAX_ITERS = 100
_NEWTON_TOLERANCE = 1e-3
_NEWTON_MAX_ERROR_RATIO = 1.2


def merge_small_dims(shape: Iterable[int], max_dim: int) -> List[int]:
    """Fold neighbouring dimensions while their product stays within
    ``max_dim``; size-1 dimensions disappear.

    Example: ``(256, 64, 3, 3)`` with ``max_dim=128`` gives ``[256, 64, 9]``,
    ``(256, 64, 1, 1)`` gives ``[256, 64]``.
    """
    merged, product = [], 1
    for dim in shape:
        if product * dim <= max_dim:
            product *= dim
            continue
        if product > 1:
            merged.append(product)
        product = dim
    if product > 1:
        merged.append(product)
    return merged or [1]


@contextmanager
def _one_cpu_thread(device: torch.device) -> Iterator[None]:
    """Run small LAPACK calls on one thread.

    On the shared 2-core test machine (other jobs running), batched ``eigh``
    of 128 x 128 matrices took 2.3 ms per matrix on one thread and 14 to
    60 ms on two: on matrices this small the threads mostly wait for each
    other.
    """
    if device.type != 'cpu':
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _eye_like(mats: torch.Tensor) -> torch.Tensor:
    eye = torch.eye(mats.shape[-1], dtype=mats.dtype, device=mats.device)
    return eye.expand_as(mats)


def _inverse_root_eigh(mats: torch.Tensor, exponent: int,
                       ridge_eps: float) -> torch.Tensor:
    """``(S + ridge_eps * lambda_max(S) * I) ** (-1 / exponent)`` for a batch
    of symmetric PSD matrices, by eigendecomposition in float64.

    In float32 the small eigenvalues of a low-rank statistic are off by about
    1e-7 * lambda_max, the size of the ridge itself: roots came out 1 to 2 %
    wrong. float64 costs about 1.6 times as much on CPU.
    """
    # The statistics are symmetric up to rounding; eigh reads one triangle.
    mats64 = mats.double()
    with _one_cpu_thread(mats.device):
        try:
            evals, evecs = torch.linalg.eigh(mats64)
        except RuntimeError:  # rare non-convergence: isolate the culprits
            evals = torch.full(
                mats.shape[:-1],
                float('nan'),
                dtype=torch.float64,
                device=mats.device)
            evecs = torch.empty_like(mats64)
            for i, mat in enumerate(mats64):
                try:
                    evals[i], evecs[i] = torch.linalg.eigh(mat)
                except RuntimeError:
                    pass
    ridge = ridge_eps * evals[..., -1:].clamp_min(1e-300)
    scale = (evals.clamp_min(0.) + ridge).pow(-1. / exponent)
    return ((evecs * scale.unsqueeze(-2)) @ evecs.mT).to(mats.dtype)


def _inverse_root_newton(mats: torch.Tensor, exponent: int,
                         ridge_eps: float) -> torch.Tensor:
    """The same root by the coupled Newton iteration (Guo and Higham 2006),
    batched: matrix products only, one host sync per iteration. Faster than
    ``eigh`` on GPUs, where batched ``eigh`` of 128 x 128 matrices runs one
    matrix at a time."""
    eye = _eye_like(mats)
    # Ridge relative to the largest eigenvalue, estimated by a fixed number of
    # power iterations from a deterministic start vector.
    vec = torch.ones(mats.shape[:-1], dtype=mats.dtype, device=mats.device)
    vec = vec.unsqueeze(-1)
    for _ in range(20):
        vec = mats @ vec
        vec = vec / vec.norm(dim=-2, keepdim=True).clamp_min(1e-30)
    lam_max = (vec.mT @ mats @ vec).squeeze(-1).clamp_min(
        torch.finfo(mats.dtype).tiny)
    mats = mats + ridge_eps * lam_max.unsqueeze(-1) * eye

    p = exponent
    z = (1 + p) / (2 * torch.linalg.matrix_norm(mats)).view(-1, 1, 1)
    root = eye * z.pow(1. / p)
    m = mats * z
    prev_error = (m - eye).abs().amax(dim=(-2, -1))
    active = torch.ones_like(prev_error, dtype=torch.bool)
    for _ in range(_NEWTON_MAX_ITERS):
        m_i = eye * (1 + 1. / p) - m / p
        new_root = root @ m_i
        new_m = torch.linalg.matrix_power(m_i, p) @ m
        error = (new_m - eye).abs().amax(dim=(-2, -1))
        # A matrix whose error grows keeps its last iterate, as in Google's.
        accept = active & (error <= prev_error * _NEWTON_MAX_ERROR_RATIO)
        keep = accept.view(-1, 1, 1)
        root = torch.where(keep, new_root, root)
        m = torch.where(keep, new_m, m)
        prev_error = torch.where(accept, error, prev_error)
        active = accept & (error > _NEWTON_TOLERANCE)
        if not bool(active.any()):
            break
    return root


def inverse_pth_roots(
        mats: torch.Tensor,
        exponent: int,
        ridge_eps: float,
        method: str = 'eigh') -> Tuple[torch.Tensor, torch.Tensor]:
    """Inverse ``exponent``-th roots of a batch of PSD matrices.

    Args:
        mats (torch.Tensor): Matrices of shape ``(B, n, n)``.
        exponent (int): The root order p; the result is ``S ** (-1 / p)``.
        ridge_eps (float): Ridge added to each matrix, relative to its
            largest eigenvalue.
        method (str): ``'eigh'`` or ``'newton'``.

    Returns:
        tuple[torch.Tensor, torch.Tensor]: The roots, and a bool tensor of
        shape ``(B,)`` that is False where the input or the root is not
        finite (those roots must not be used).
    """
    # A sum is finite only if every entry is (or it overflows, which only a
    # degenerate statistic does): one pass instead of a mask and a reduction.
    finite_in = torch.isfinite(mats.sum(dim=(-2, -1)))
    # Non-finite inputs would make eigh raise; give them the identity.
    safe = torch.where(finite_in.view(-1, 1, 1), mats, _eye_like(mats))
    if method == 'eigh':
        roots = _inverse_root_eigh(safe, exponent, ridge_eps)
    elif method == 'newton':
        roots = _inverse_root_newton(safe, exponent, ridge_eps)
    else:
        raise ValueError(f'unknown root method {method!r}')
    ok = finite_in & torch.isfinite(roots.sum(dim=(-2, -1)))
    return roots, ok


def _blocks_by_shape(blocks: List[torch.Tensor],
                     skip: Optional[List[bool]] = None) -> Dict[tuple, list]:
    """Indices of the blocks, grouped by block shape."""
    groups: Dict[tuple, list] = {}
    for j, block in enumerate(blocks):
        if skip is None or not skip[j]:
            groups.setdefault(tuple(block.shape), []).append(j)
    return groups


def _factor(pre: PreConditioner, which: str, k: int,
            index: List[int]) -> Union[torch.Tensor, List[torch.Tensor]]:
    """The k-th Kronecker factor (``which``: 'statistics' or
    'pre_conditioners') of the blocks in ``index``."""
    factors = getattr(pre, which)
    rank = pre.rank
    return [factors[j * rank + k] for j in index]


def _add_statistics(pre: PreConditioner, grad: torch.Tensor) -> None:
    """``PreConditioner.add_statistics``, batched over blocks of one shape.

    The library contracts each block with ``tensordot`` one at a time; those
    are thousands of small matrix products per step for a ResNet-50 (8 s of
    a step on 2 CPU cores). Same maths, a few batched products.
    """
    if len(pre.statistics) == 0:
        return
    dtype = pre.statistics[0].dtype
    blocks = pre.partitioner.partition(
        grad.to(dtype).reshape(pre.transformed_shape))
    stats, updates = [], []
    for shape, index in _blocks_by_shape(blocks).items():
        x = torch.stack([blocks[j] for j in index])
        k = 0
        for axis, use in enumerate(pre.should_precondition_dims):
            if not use:
                continue
            unfolded = x.movedim(axis + 1,
                                 1).reshape(len(index), shape[axis], -1)
            updates.extend((unfolded @ unfolded.mT).unbind(0))
            stats.extend(_factor(pre, 'statistics', k, index))
            k += 1
    torch._foreach_mul_(stats, pre.beta2)
    torch._foreach_add_(stats, updates, alpha=pre.w2)


def _precondition_blocks(pre: PreConditioner, blocks: List[torch.Tensor],
                         skip: List[bool]) -> List[Optional[torch.Tensor]]:
    """Each block multiplied along every preconditioned axis by that axis'
    inverse root (``PreConditioner.precondition_block``, batched)."""
    out: List[Optional[torch.Tensor]] = [None] * len(blocks)
    for shape, index in _blocks_by_shape(blocks, skip).items():
        x = torch.stack([blocks[j] for j in index])
        k = 0
        for axis, use in enumerate(pre.should_precondition_dims):
            if not use:
                continue
            roots = torch.stack(_factor(pre, 'pre_conditioners', k, index))
            moved = x.movedim(axis + 1, -1)
            moved_shape = moved.shape
            moved = torch.bmm(
                moved.reshape(len(index), -1, shape[axis]), roots)
            x = moved.reshape(moved_shape).movedim(-1, axis + 1)
            k += 1
        for j, block in zip(index, x.unbind(0)):
            out[j] = block
    return out


def _lookup(value: Union[str, int], table: Dict[str, int], name: str) -> int:
    if isinstance(value, str):
        if value.lower() not in table:
            raise ValueError(
                f'{name} must be one of {sorted(table)}, got {value!r}')
        return table[value.lower()]
    if int(value) not in table.values():
        raise ValueError(f'{name} must be one of {sorted(table)}, got {value}')
    return int(value)


@OPTIMIZERS.register_module()
class Shampoo(ScalableShampoo):
    """Block-wise Shampoo with grafting, Nesterov momentum and decoupled
    weight decay, for MMEngine's optimizer wrappers.

    Defaults follow the paper's appendix D where it gives a value: blocks of
    at most 128 x 128, the preconditioner recomputed every step, Nesterov
    momentum, decoupled weight decay 0.000375 (big_vision convention, see
    ``decay_scaled_by_lr``). Other defaults are ours: an RMSProp graft with a
    moving-average momentum, so a step has Adam's size and an Adam learning
    rate is a sensible start. The learning rate is the user's choice.

    Tensors of rank 2 or more are reshaped (small dimensions merged), cut into
    blocks of at most ``block_size`` per dimension, and each block is
    preconditioned by one inverse root per dimension. One-dimensional
    parameters (biases, norm scales) take the grafted step. If a block's
    preconditioner is not finite, that block takes the grafted step instead;
    the first time this happens it is logged.

    ``optimizer.state[param]`` holds tensors only (``momentum``,
    ``graft_momentum``, ``graft_statistics``, ``statistics``,
    ``pre_conditioners``, ``failed``), so checkpoints load with
    ``torch.load(weights_only=True)``.

    Args:
        params (Iterable): Parameters or parameter groups (dicts with a
            non-empty ``params`` list).
        lr (float): Learning rate. Defaults to 1e-3.
        betas (tuple[float, float]): Momentum decay and the decay of the
            preconditioner and graft statistics. Defaults to (0.9, 0.999).
        weight_decay (float): Weight decay. Defaults to 0.000375.
        decoupled_weight_decay (bool): Decay the weights directly (True) or
            add ``weight_decay * param`` to the gradient (False). Defaults to
            True.
        decay_scaled_by_lr (bool): Only with decoupled decay. If False, each
            step multiplies the weights by
            ``1 - weight_decay * lr / initial_lr``: the decay follows the
            schedule's shape but not the base learning rate, as in big_vision
            and the paper. If True, by ``1 - weight_decay * lr`` as torch's
            AdamW does. Defaults to False.
        block_size (int): Largest block side. Defaults to 128.
        preconditioning_compute_steps (int): Recompute the inverse roots
            every this many steps, and at ``start_preconditioning_step``.
            Defaults to 1.
        start_preconditioning_step (int): Take grafted steps before this step.
            Defaults to 25.
        statistics_compute_steps (int): Update the statistics every this many
            steps. Defaults to 1.
        graft_type (str | int): Where each layer's step size comes from:
            ``'none'``, ``'sgd'``, ``'adagrad'``, ``'rmsprop'`` or
            ``'sqrtn'``. Defaults to ``'rmsprop'``.
        pre_conditioner_type (str | int): ``'all'`` dimensions, only the
            ``'input'`` ones, or only the ``'output'`` one. Defaults to
            ``'all'``.
        nesterov (bool): Nesterov momentum. Defaults to True.
        moving_average_for_momentum (bool): Momentum as an exponential moving
            average (True) or a plain sum ``m = beta1 * m + g``. Defaults to
            True.
        diagonal_eps (float): Epsilon of the AdaGrad/RMSProp graft.
            Defaults to 1e-10.
        matrix_eps (float): Ridge added to each statistic before its root,
            relative to its largest eigenvalue. Defaults to 1e-6.
        inverse_exponent_override (int): Fixed root order if > 0; otherwise
            twice the number of preconditioned dimensions. Defaults to 0.
        skip_preconditioning_rank_lt (int): Graft-only for tensors of lower
            rank. Defaults to 1.
        no_preconditioning_for_layers_with_dim_gt (int): Graft-only for
            tensors with a (merged) dimension larger than this. Defaults to
            8192.
        shape_interpretation (bool): Merge small dimensions before blocking.
            Defaults to True.
        decoupled_learning_rate (bool): Apply the learning rate after the
            momentum (True) or before it. Defaults to True.
        root_method (str): ``'eigh'`` (batched eigendecomposition),
            ``'newton'`` (batched coupled Newton iteration) or ``'auto'``
            (``'eigh'`` on CPU, ``'newton'`` elsewhere). Defaults to
            ``'auto'``.
        maximize (bool): Maximise the objective. Defaults to False.

    Example:
        >>> optim_wrapper = dict(
        ...     constructor='FunMatchOptimWrapperConstructor',
        ...     optimizer=dict(type='Shampoo', lr=0.03),
        ...     clip_grad=dict(max_norm=1.0))
    """

    def __init__(self,
                 params: Iterable,
                 lr: float = 1e-3,
                 betas: Tuple[float, float] = (0.9, 0.999),
                 weight_decay: float = 0.000375,
                 decoupled_weight_decay: bool = True,
                 decay_scaled_by_lr: bool = False,
                 block_size: int = 128,
                 preconditioning_compute_steps: int = 1,
                 start_preconditioning_step: int = 25,
                 statistics_compute_steps: int = 1,
                 graft_type: Union[str, int] = 'rmsprop',
                 pre_conditioner_type: Union[str, int] = 'all',
                 nesterov: bool = True,
                 moving_average_for_momentum: bool = True,
                 diagonal_eps: float = 1e-10,
                 matrix_eps: float = 1e-6,
                 inverse_exponent_override: int = 0,
                 skip_preconditioning_rank_lt: int = 1,
                 no_preconditioning_for_layers_with_dim_gt: int = 8192,
                 shape_interpretation: bool = True,
                 decoupled_learning_rate: bool = True,
                 root_method: str = 'auto',
                 maximize: bool = False) -> None:
        # The library accepts block_size <= 0 silently (no blocking) and
        # raises bare Exceptions for bad steps; we want clear ValueErrors.
        if isinstance(block_size, bool) or not isinstance(block_size, int) \
                or block_size < 1:
            raise ValueError(
                f'Shampoo: block_size must be an integer >= 1, got '
                f'{block_size!r}')
        for name, value in (('preconditioning_compute_steps',
                             preconditioning_compute_steps),
                            ('start_preconditioning_step',
                             start_preconditioning_step),
                            ('statistics_compute_steps',
                             statistics_compute_steps)):
            if int(value) != value or value < 1:
                raise ValueError(
                    f'Shampoo: {name} must be an integer >= 1, got {value!r}')
        if lr < 0:
            raise ValueError(f'Shampoo: lr must be >= 0, got {lr}')
        if root_method not in ROOT_METHODS:
            raise ValueError(f'Shampoo: root_method must be one of '
                             f'{ROOT_METHODS}, got {root_method!r}')
        graft = _lookup(graft_type, GRAFT_TYPES, 'Shampoo: graft_type')
        pre_type = _lookup(pre_conditioner_type, PRECONDITIONER_TYPES,
                           'Shampoo: pre_conditioner_type')
        super().__init__(
            params,
            lr=lr,
            betas=tuple(betas),
            moving_average_for_momentum=moving_average_for_momentum,
            weight_decay=weight_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            decoupled_learning_rate=decoupled_learning_rate,
            inverse_exponent_override=inverse_exponent_override,
            start_preconditioning_step=int(start_preconditioning_step),
            preconditioning_compute_steps=int(preconditioning_compute_steps),
            statistics_compute_steps=int(statistics_compute_steps),
            block_size=block_size,
            skip_preconditioning_rank_lt=skip_preconditioning_rank_lt,
            no_preconditioning_for_layers_with_dim_gt=(
                no_preconditioning_for_layers_with_dim_gt),
            shape_interpretation=shape_interpretation,
            graft_type=graft,
            pre_conditioner_type=pre_type,
            nesterov=nesterov,
            diagonal_eps=diagonal_eps,
            matrix_eps=matrix_eps,
            use_svd=False,
            maximize=maximize)
        self.decay_scaled_by_lr = decay_scaled_by_lr
        self.root_method = root_method
        self._fallback_logged = False

    def __str__(self) -> str:
        return 'Shampoo'

    def __setstate__(self, state: dict) -> None:
        # load_state_dict and unpickling replace the state tensors: the
        # library objects that view them must be rebuilt.
        super().__setstate__(state)
        self._views = {}

    def add_param_group(self, param_group: dict) -> None:
        """Add a parameter group; a group without parameters is an error
        (torch accepts it silently)."""
        if not isinstance(param_group, dict) or 'params' not in param_group:
            raise ValueError(
                'Shampoo: every parameter group must be a dict with a '
                '"params" entry')
        params = param_group['params']
        if isinstance(params, torch.Tensor):
            params = [params]
        elif not isinstance(params, set):  # torch refuses sets itself
            params = list(params)
        if len(params) == 0:
            raise ValueError(
                f'Shampoo: parameter group {len(self.param_groups)} has no '
                f'parameters; drop it or give it some')
        super().add_param_group(dict(param_group, params=params))
        # The reference for decay_scaled_by_lr=False. MMEngine's schedulers
        # set the same key (with setdefault) to the same value.
        self.param_groups[-1].setdefault('initial_lr',
                                         self.param_groups[-1]['lr'])

    # ----------------------------------------------------------------- state
    def _new_views(self, p: torch.Tensor,
                   beta2: float) -> Tuple[PreConditioner, Graft]:
        shape = (
            merge_small_dims(p.shape, self.block_size)
            if self.shape_interpretation else list(p.shape) or [1])
        pre = PreConditioner(
            p.detach().reshape(shape),
            beta2,
            self.inverse_exponent_override,
            self.block_size,
            self.skip_preconditioning_rank_lt,
            self.no_preconditioning_for_layers_with_dim_gt,
            shape_interpretation=False,  # merged above, our way
            pre_conditioner_type=self.pre_conditioner_type,
            matrix_eps=self.matrix_eps)
        graft = build_graft(p, self.graft_type, self.diagonal_eps)
        return pre, graft

    def _views_for(self, p: torch.Tensor,
                   group: dict) -> Tuple[PreConditioner, Graft]:
        """The library objects for ``p``, whose tensors are those of
        ``self.state[p]`` (created here on the first step)."""
        views = self.__dict__.setdefault('_views', {})
        if p in views:
            return views[p]
        state = self.state[p]
        pre, graft = self._new_views(p, group['betas'][1])
        if not state:
            state['momentum'] = torch.zeros_like(p)
            state['graft_momentum'] = graft.momentum
            if hasattr(graft, 'statistics'):
                state['graft_statistics'] = graft.statistics
            state['statistics'] = pre.statistics
            state['pre_conditioners'] = pre.pre_conditioners
            state['failed'] = torch.zeros(
                len(pre.statistics), dtype=torch.bool, device=p.device)
        else:
            self._attach(p, state, pre, graft)
        views[p] = (pre, graft)
        return pre, graft

    def _attach(self, p: torch.Tensor, state: dict, pre: PreConditioner,
                graft: Graft) -> None:
        """Point freshly built library objects at loaded state tensors."""

        def check(name, saved, fresh):
            fresh_shapes = [tuple(t.shape) for t in fresh]
            saved_shapes = [tuple(t.shape) for t in saved]
            if type(saved) is not type(fresh) or saved_shapes != fresh_shapes:
                raise ValueError(
                    f'Shampoo: the loaded {name} of a parameter of shape '
                    f'{tuple(p.shape)} do not match this optimizer (saved '
                    f'{len(saved_shapes)} blocks, expected '
                    f'{len(fresh_shapes)}); was the checkpoint written with '
                    f'another block_size, pre_conditioner_type or '
                    f'shape_interpretation?')

        required = {
            'momentum', 'graft_momentum', 'statistics', 'pre_conditioners',
            'failed'
        }
        if hasattr(graft, 'statistics'):
            required.add('graft_statistics')
        missing = required - set(state)
        if missing:
            raise ValueError(
                f'Shampoo: loaded state lacks {sorted(missing)}; it was not '
                f'written by mmfunmatch Shampoo with this graft_type')
        check('statistics', state['statistics'], pre.statistics)
        check('preconditioners', state['pre_conditioners'],
              pre.pre_conditioners)
        # torch's load_state_dict casts floating state to the parameter's
        # dtype; statistics live in float32 (float64 for float64 params).
        dtype = (pre.statistics[0].dtype if len(pre.statistics) else None)

        def restore(saved):
            if dtype is None:
                return saved
            if isinstance(saved, torch.Tensor):
                return saved.to(dtype)
            return [t.to(dtype) for t in saved]

        state['statistics'] = restore(state['statistics'])
        state['pre_conditioners'] = restore(state['pre_conditioners'])
        pre.statistics = state['statistics']
        pre.pre_conditioners = state['pre_conditioners']
        graft.momentum = state['graft_momentum']
        if hasattr(graft, 'statistics'):
            graft.statistics = state['graft_statistics']

    # ----------------------------------------------------------------- roots
    def _method(self, device: torch.device) -> str:
        if self.root_method != 'auto':
            return self.root_method
        return 'eigh' if device.type == 'cpu' else 'newton'

    def _recompute_roots(
            self, todo: List[Tuple[torch.Tensor, PreConditioner]]) -> None:
        """Recompute every inverse root of the given parameters, batching
        matrices of equal size, order, dtype and device in one call."""
        buckets: Dict[tuple, list] = {}
        for p, pre in todo:
            for i in range(len(pre.statistics)):
                stat = pre.statistics[i]
                key = (stat.shape[-1], pre.exponent_for_pre_conditioner,
                       stat.dtype, stat.device)
                buckets.setdefault(key, []).append((p, pre, i))
        for (_, exponent, _, device), entries in buckets.items():
            mats = torch.stack([pre.statistics[i] for _, pre, i in entries])
            roots, ok = inverse_pth_roots(mats, exponent, self.matrix_eps,
                                          self._method(device))
            ok = ok.tolist()
            for (p, pre, i), root, good in zip(entries, roots, ok):
                self.state[p]['failed'][i] = not good
                if good:
                    pre.pre_conditioners[i].copy_(root)
                    continue
                stat = pre.statistics[i]
                if not bool(torch.isfinite(stat).all()):
                    # A poisoned running statistic would fail at every
                    # recompute; restart it so the block can recover.
                    stat.copy_(self.matrix_eps * _eye_like(stat))

    # --------------------------------------------------------------- update
    def _shampoo_direction(self, p: torch.Tensor, grad: torch.Tensor,
                           graft_grad: torch.Tensor, pre: PreConditioner,
                           failed: torch.Tensor,
                           multiplier: float) -> torch.Tensor:
        """The preconditioned gradient with the graft's norm (without a
        graft: times ``multiplier``); blocks whose preconditioner is not
        finite take the graft's step instead."""
        if len(pre.pre_conditioners) == 0:
            return graft_grad.clone()
        rank, shape = pre.rank, pre.transformed_shape
        dtype = pre.pre_conditioners[0].dtype
        blocks = pre.partitioner.partition(grad.to(dtype).reshape(shape))
        block_failed = failed.view(len(blocks), rank)
        bad = block_failed.any(1).tolist()
        out = _precondition_blocks(pre, blocks, bad)
        out = [blocks[j] if bad[j] else b for j, b in enumerate(out)]
        grafted = self.graft_type != LayerWiseGrafting.NONE
        if not any(bad):
            merged = pre.partitioner.merge_partitions(out)
            # The norm is needed for grafting anyway, and it is finite only
            # if every entry is: one pass checks for NaN and inf.
            norm = merged.norm()
            if bool(torch.isfinite(norm)):  # the common path
                merged = merged * (
                    graft_grad.to(dtype).norm() /
                    (norm + 1e-16) if grafted else multiplier)
                return merged.reshape(p.shape).to(grad.dtype)
        # A preconditioner can also go bad between recomputes (or overflow):
        # catch it here so that no NaN reaches the weights.
        for j, b in enumerate(out):
            if not bad[j] and not bool(torch.isfinite(b).all()):
                bad[j] = True
                block_failed[j] = True
        self._log_fallback(p, sum(bad), len(bad))
        graft_blocks = pre.partitioner.partition(
            graft_grad.to(dtype).reshape(shape))
        good = [j for j in range(len(out)) if not bad[j]]
        scale = multiplier
        if grafted and good:
            # Layer-wise grafting over the healthy blocks only, so that a
            # fallback block takes exactly the graft's step.
            g_norm = torch.stack([graft_blocks[j].norm() for j in good]).norm()
            s_norm = torch.stack([out[j].norm() for j in good]).norm()
            scale = g_norm / (s_norm + 1e-16)
        out = [b * scale for b in out]
        out = [graft_blocks[j] if bad[j] else b for j, b in enumerate(out)]
        merged = pre.partitioner.merge_partitions(out)
        return merged.reshape(p.shape).to(grad.dtype)

    def _log_fallback(self, p: torch.Tensor, num_bad: int,
                      num_blocks: int) -> None:
        if self._fallback_logged:
            return
        self._fallback_logged = True
        print_log(
            f'Shampoo: non-finite preconditioner for {num_bad} of '
            f'{num_blocks} blocks of a parameter of shape {tuple(p.shape)}; '
            f'those blocks take the grafted step until a recompute succeeds '
            f'(a non-finite statistic is reset). Further occurrences are not '
            f'logged; optimizer.state[param]["failed"] marks them.',
            logger='current',
            level=logging.WARNING)

    @torch.no_grad()
    def step(self, closure=None) -> Optional[torch.Tensor]:
        """Perform one optimisation step.

        Args:
            closure (callable, optional): Re-evaluates the model and returns
                the loss.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        # Pass 1: statistics, and the parameters whose roots are due.
        work, due = [], []
        for group in self.param_groups:
            group['step'] = group.get('step', 0) + 1
            step = group['step']
            beta2 = group['betas'][1]
            # As the library: on every multiple of the frequency (the
            # momentum collects preconditioned directions before the start
            # step too), and also at the start step, so that preconditioning
            # never starts from identity roots.
            recompute = (
                step % self.preconditioning_compute_steps == 0
                or step == self.start_preconditioning_step)
            for p in group['params']:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError('Shampoo does not support sparse '
                                       'gradients')
                if torch.is_complex(p):
                    raise RuntimeError('Shampoo does not support complex '
                                       'parameters')
                grad = -p.grad if self.maximize else p.grad
                if not group['decoupled_weight_decay'] \
                        and group['weight_decay'] != 0:
                    grad = grad.add(p, alpha=group['weight_decay'])
                pre, graft = self._views_for(p, group)
                graft.add_statistics(grad, beta2)
                if step % self.statistics_compute_steps == 0:
                    _add_statistics(pre, grad)
                if recompute and len(pre.statistics):
                    due.append((p, pre))
                work.append((group, p, grad, pre, graft))
        if due:
            self._recompute_roots(due)

        # Pass 2: the update.
        for group, p, grad, pre, graft in work:
            state = self.state[p]
            beta1 = group['betas'][0]
            lr = group['lr']
            preconditioned = group['step'] >= self.start_preconditioning_step
            pre_mult = 1.0 if group['decoupled_learning_rate'] else lr
            mom_mult = lr if group['decoupled_learning_rate'] else 1.0
            w = 1.0 - beta1 if group['moving_average_for_momentum'] else 1.0

            graft_grad = graft.precondition_gradient(grad).mul(pre_mult)
            shampoo_grad = self._shampoo_direction(p, grad, graft_grad, pre,
                                                   state['failed'], pre_mult)

            if group['decoupled_weight_decay'] and group['weight_decay'] != 0:
                if self.decay_scaled_by_lr:
                    factor = lr
                else:
                    initial = group.get('initial_lr', lr)
                    factor = lr / initial if initial > 0 else 0.
                p.mul_(1.0 - group['weight_decay'] * factor)

            if group['moving_average_for_momentum']:
                state['momentum'].lerp_(shampoo_grad, w)
            else:
                state['momentum'].mul_(beta1).add_(shampoo_grad)
            graft_momentum = graft.update_momentum(graft_grad, beta1, w)

            update = state['momentum'] if preconditioned else graft_momentum
            if group['nesterov']:
                current = shampoo_grad if preconditioned else graft_grad
                if group['moving_average_for_momentum']:
                    update = update.lerp(current, w)
                else:
                    update = update.mul(beta1).add_(current)
            p.add_(update, alpha=-mom_mult)
        return loss
