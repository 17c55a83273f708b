"""Stop (or skip) a training step whose gradients or loss are not finite."""
import logging
from typing import Dict, List, Optional

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.optim import OptimWrapperDict
from mmengine.registry import HOOKS

ACTIONS = ('stop', 'skip')


class NonFiniteError(FloatingPointError):
    """A loss or gradient became NaN or infinite; the message names the
    step and the last complete checkpoint."""


def _finite(tensors: List[torch.Tensor]) -> bool:
    if not tensors:
        return True
    norms = torch._foreach_norm(tensors)  # one reduction per tensor
    return bool(torch.isfinite(torch.stack(norms)).all())


@HOOKS.register_module()
class NonFiniteGuardHook(Hook):
    """Check the gradients before every optimizer step and the loss after it.

    A NaN or infinite gradient is caught by a step pre-hook on the optimizer,
    i.e. before it touches the weights. With ``action='stop'`` the run ends
    with :class:`NonFiniteError` naming the iteration, the offending
    parameters and the last complete checkpoint (the error is raised before
    any checkpoint hook of that step runs, so no checkpoint holds the
    fault). With ``action='skip'`` the step is dropped (gradients cleared so
    the optimizer leaves every weight and its state untouched; schedulers
    still advance), the skip is counted and logged, and the run stops once
    ``max_skips`` steps were skipped. Under DDP the gradients are already
    all-reduced, so every rank takes the same decision. AMP's loss scaler
    skips overflowing steps before the optimizer is called, which this hook
    leaves alone.

    Args:
        action (str): 'stop' or 'skip'. Defaults to 'stop'.
        max_skips (int): Skipped steps tolerated in total with 'skip'.
            Defaults to 20.
    """

    priority = 'ABOVE_NORMAL'  # before CheckpointHook in after_train_iter

    def __init__(self, action: str = 'stop', max_skips: int = 20) -> None:
        if action not in ACTIONS:
            raise ValueError(f'NonFiniteGuardHook: action must be one of '
                             f'{ACTIONS}, got {action!r}')
        self.action = action
        self.max_skips = max_skips
        self.num_skipped = 0
        self._runner = None
        self._handles: list = []
        self._wrappers: list = []
        self._last_loss: Optional[torch.Tensor] = None
        self._names: Dict[int, str] = {}
        self._skipped_this_step = False

    def before_train(self, runner) -> None:
        self._runner = runner
        self._names = {
            id(p): n.removeprefix('module.')
            for n, p in runner.model.named_parameters()
        }
        wrappers = (runner.optim_wrapper.optim_wrappers.values()
                    if isinstance(runner.optim_wrapper, OptimWrapperDict) else
                    [runner.optim_wrapper])
        for wrapper in wrappers:
            self._handles.append(
                wrapper.optimizer.register_step_pre_hook(self._check_grads))
            self._record_loss(wrapper)
        self.num_skipped = int(
            runner.message_hub.get_info('nonfinite_skipped', 0))

    def _record_loss(self, wrapper) -> None:
        """Keep the loss each step backpropagates, to name it in messages
        (the optimizer's pre-hook sees only gradients)."""
        update_params = wrapper.update_params

        def recording_update_params(loss, *args, **kwargs):
            self._last_loss = loss.detach()
            return update_params(loss, *args, **kwargs)

        wrapper.update_params = recording_update_params  # this instance only
        self._wrappers.append(wrapper)

    def after_train(self, runner) -> None:
        for handle in self._handles:
            handle.remove()
        for wrapper in self._wrappers:
            del wrapper.update_params  # back to the class's method
        self._handles, self._wrappers = [], []

    def _fault(self, what: str) -> str:
        runner = self._runner
        last = runner.message_hub.get_info('last_ckpt', None)
        return (f'non-finite {what} at iteration {runner.iter + 1} (epoch '
                f'{runner.epoch + 1}). Last complete checkpoint: '
                f'{last or "none yet"}. Lower the learning rate or check the '
                f'data, then resume from it with --resume; or set '
                f'NonFiniteGuardHook(action="skip") to drop such steps.')

    def _check_grads(self, optimizer, args, kwargs) -> None:
        params = [p for g in optimizer.param_groups for p in g['params']
                  if p.grad is not None]
        if _finite([p.grad for p in params]):
            return None
        bad = [self._names.get(id(p), '?') for p in params
               if not bool(torch.isfinite(p.grad).all())]
        what = f'gradient in {len(bad)} parameters (first: {bad[:3]})'
        loss = self._last_loss
        if loss is not None and not bool(torch.isfinite(loss).all()):
            what = f'loss ({float(loss)}), hence {what}'
        if self.action == 'stop':
            raise NonFiniteError(self._fault(what))
        for p in params:
            p.grad = None  # optimizers leave parameters without grad alone
        self._skip(what)
        return None

    def _skip(self, what: str) -> None:
        self.num_skipped += 1
        self._skipped_this_step = True
        self._runner.message_hub.update_info('nonfinite_skipped',
                                             self.num_skipped)
        print_log(
            f'skipped step {self._runner.iter + 1}: non-finite {what} '
            f'({self.num_skipped} skipped so far, at most {self.max_skips})',
            logger='current', level=logging.WARNING)
        if self.num_skipped > self.max_skips:
            raise NonFiniteError(
                self._fault(f'{what}, {self.num_skipped} steps skipped'))

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        skipped, self._skipped_this_step = self._skipped_this_step, False
        loss = (outputs or {}).get('loss')
        if not isinstance(loss, torch.Tensor) or bool(
                torch.isfinite(loss).all()):
            return
        # The gradients were finite (else the pre-hook acted), yet the loss
        # is not: still a fault.
        if self.action == 'stop':
            raise NonFiniteError(self._fault(f'loss ({float(loss)})'))
        if not skipped:
            self._skip(f'loss ({float(loss)}); the update was applied')
