"""Check that data-parallel ranks hold the same weights."""
import hashlib
from typing import Optional

import torch
from mmengine.dist import all_gather_object, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


def digest(tensors) -> str:
    """SHA-256 of named tensors, bit for bit."""
    h = hashlib.sha256()
    for key, value in tensors:
        h.update(key.encode())
        h.update(str(value.dtype).encode())
        h.update(value.detach().cpu().contiguous().reshape(-1).view(
            torch.uint8).numpy().tobytes())
    return h.hexdigest()


def state_digest(module: torch.nn.Module) -> str:
    """SHA-256 of every tensor in ``module.state_dict()`` (teachers excluded:
    the distiller leaves them out of its state dict)."""
    return digest((k, v) for k, v in module.state_dict().items()
                  if isinstance(v, torch.Tensor))


@HOOKS.register_module()
class RankConsistencyHook(Hook):
    """Check that every rank holds the same weights.

    DDP keeps replicas equal only as long as every rank applies the same
    update; a non-deterministic kernel, a parameter missed by the gradient
    all-reduce or a rank that loaded another checkpoint makes them drift
    silently. This hook hashes the trainable parameters on every rank and
    raises when the digests differ (logging the common digest otherwise).
    Buffers are compared too but only reported: without SyncBN each rank
    keeps BatchNorm statistics of its own batches (rank 0's are saved).
    Before training (after a resume) it also checks that every rank starts
    from the same iteration and weights: a node that could not see the
    checkpoint (work_dir not on a shared file system) would otherwise train
    from scratch beside the others. Does nothing in a single process.

    Args:
        interval (int, optional): Also check every this many iterations.
            Defaults to None (only at the end of training).
    """

    priority = 'LOW'

    def __init__(self, interval: Optional[int] = None) -> None:
        self.interval = interval

    def _check(self, runner, when: str) -> None:
        world_size = get_world_size()
        if world_size < 2:
            return
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        params = digest((n, p) for n, p in model.named_parameters()
                        if p.requires_grad)
        buffers = digest(model.named_buffers())
        gathered = all_gather_object((params, buffers))
        groups: dict = {}
        for rank, (p, _) in enumerate(gathered):
            groups.setdefault(p[:12], []).append(rank)
        if len(groups) > 1:
            raise RuntimeError(
                f'trainable weights differ across ranks {when}: {groups} '
                f'(digest prefix: ranks). The replicas diverged; do not '
                f'trust this run past its last checkpoint.')
        same_buffers = len({b for _, b in gathered}) == 1
        runner.logger.info(
            f'weights identical on all {world_size} ranks {when} (sha256 '
            f'{params[:16]}); buffers '
            + ('identical' if same_buffers else
               'differ (per-rank BatchNorm statistics; use sync_bn)'))

    def before_train(self, runner) -> None:
        if get_world_size() < 2:
            return
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        start = (runner.iter,
                 digest((n, p) for n, p in model.named_parameters()
                        if p.requires_grad)[:12])
        starts = all_gather_object(start)
        if len(set(starts)) > 1:
            raise RuntimeError(
                f'ranks start from different states (iteration, weights '
                f'digest per rank: {starts}): they resumed from different '
                f'checkpoints or none. Put work_dir on a file system every '
                f'node sees, or pass the same --resume PATH on every node.')

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if self.interval and self.every_n_train_iters(runner, self.interval):
            self._check(runner, f'at iteration {runner.iter + 1}')

    def after_train(self, runner) -> None:
        self._check(runner, f'after training ({runner.iter} iterations)')
