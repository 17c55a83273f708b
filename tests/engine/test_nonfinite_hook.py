"""NonFiniteGuardHook (mmfunmatch/engine/hooks/nonfinite_hook.py): a NaN or
infinite loss or gradient stops the run (or, with action='skip', drops the
step) before it reaches the weights. On an optimizer wrapper of its own, and
through the real runner with a fault injected (marked slow)."""
import copy
import os
import os.path as osp
import re
import uuid
from types import SimpleNamespace

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper
from mmengine.registry import HOOKS
from mmengine.runner import Runner

from mmfunmatch.compat import load_runner_checkpoint
from mmfunmatch.engine.hooks import (NonFiniteError, NonFiniteGuardHook,
                                     find_resumable_checkpoint)
from tests.helpers import image_folder, tiny_cfg

NAN = float('nan')


# -- the hook on an optimizer wrapper -----------------------------------------
def _guarded(action: str, **kwargs):
    """A linear model, its SGD wrapper and the hook, set up as before_train
    does it at iteration 5 of epoch 2."""
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    runner = SimpleNamespace(
        model=model, optim_wrapper=wrapper, iter=4, epoch=1,
        message_hub=MessageHub.get_instance(f'nonfinite-{uuid.uuid4()}'))
    hook = NonFiniteGuardHook(action=action, **kwargs)
    hook.before_train(runner)
    return model, wrapper, runner, hook


def _step(model, wrapper, x0: float) -> torch.Tensor:
    """One update on the input (x0, 1): x0 = NaN makes the loss and the
    weight's gradient NaN (the bias's stays finite)."""
    loss = model(torch.tensor([[x0, 1.0]])).sum()
    wrapper.update_params(loss)
    return loss


def _params(model) -> dict:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def _equal(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_nonfinite_guard_hook_stops_before_the_step_and_names_it():
    model, wrapper, runner, hook = _guarded('stop')
    before = _params(model)
    with pytest.raises(NonFiniteError, match=re.escape(
            "non-finite loss (nan), hence gradient in 1 parameters (first: "
            "['weight']) at iteration 5 (epoch 2). Last complete checkpoint: "
            'none yet.')):
        _step(model, wrapper, NAN)
    assert _equal(_params(model), before)
    # Finite steps pass; without the hook the same fault reaches the weights.
    wrapper.zero_grad()  # the stopped step's NaN gradients
    _step(model, wrapper, 2.0)
    assert not _equal(_params(model), before)
    hook.after_train(runner)
    _step(model, wrapper, NAN)
    assert torch.isnan(model.weight).any()


def test_nonfinite_guard_hook_skip_drops_the_step_and_counts_it():
    model, wrapper, runner, hook = _guarded('skip', max_skips=1)
    before = _params(model)
    _step(model, wrapper, NAN)
    assert _equal(_params(model), before)  # bias included: step dropped
    assert hook.num_skipped == 1
    assert runner.message_hub.get_info('nonfinite_skipped') == 1
    _step(model, wrapper, 2.0)
    assert not _equal(_params(model), before)
    with pytest.raises(NonFiniteError, match='2 steps skipped'):
        _step(model, wrapper, NAN)  # more than max_skips


def test_nonfinite_guard_hook_checks_the_loss_of_a_finite_gradient():
    """A non-finite loss whose gradients are finite (the pre-hook let the
    step through) still stops the run, or is counted with 'skip'."""
    _, _, runner, hook = _guarded('stop')
    hook.after_train_iter(runner, 0, outputs=dict(loss=torch.tensor(1.0)))
    with pytest.raises(NonFiniteError, match=r'non-finite loss \(inf\) at '
                       'iteration 5'):
        hook.after_train_iter(runner, 0,
                              outputs=dict(loss=torch.tensor(float('inf'))))
    _, _, runner, hook = _guarded('skip')
    hook.after_train_iter(runner, 0,
                          outputs=dict(loss=torch.tensor(float('inf'))))
    assert hook.num_skipped == 1


def test_nonfinite_guard_hook_refuses_an_unknown_action():
    with pytest.raises(ValueError, match="action must be one of .*'warn'"):
        NonFiniteGuardHook(action='warn')


# -- through the runner -------------------------------------------------------
@HOOKS.register_module(force=True)
class _InjectNonFinite(Hook):
    """Test fault: at one iteration, make the logits (so the loss) or the
    gradients non-finite, recording the weights before and after the
    step."""

    priority = 'VERY_LOW'

    def __init__(self, at_iter: int, kind: str) -> None:
        self.at_iter, self.kind = at_iter, kind
        self.before = self.after = None
        self._handle = None

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        if runner.iter + 1 != self.at_iter:
            return
        model = runner.model
        self.before = copy.deepcopy(dict(model.named_parameters()))
        if self.kind == 'loss':
            self._handle = model.head.fc.register_forward_hook(
                lambda m, i, out: out * float('inf'))
        else:
            self._handle = model.head.fc.weight.register_hook(
                lambda g: torch.full_like(g, float('nan')))

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if runner.iter + 1 == self.at_iter:
            self.after = copy.deepcopy(dict(runner.model.named_parameters()))


@pytest.mark.slow
@pytest.mark.parametrize('kind', ['loss', 'grad'])
def test_nonfinite_guard_hook_stops_the_run_before_it_reaches_the_weights(
        kind, tmp_path):
    root = image_folder(str(tmp_path / 'data'))
    work = str(tmp_path / 'work')
    cfg = tiny_cfg(work, root, f'nan_{kind}')
    cfg.custom_hooks = [dict(type='_InjectNonFinite', at_iter=6, kind=kind)]
    runner = Runner.from_cfg(cfg)
    guard = next(h for h in runner.hooks if isinstance(h, NonFiniteGuardHook))
    assert guard.action == 'stop'  # the runtime default
    with pytest.raises(NonFiniteError, match='at iteration 6 ') as info:
        runner.train()
    assert ('non-finite loss (nan)' in str(info.value)) == (kind == 'loss')
    inject = next(h for h in runner.hooks if isinstance(h, _InjectNonFinite))
    # The optimizer never ran: every parameter as before the faulty step
    # (BatchNorm statistics of its forward pass are buffers, not weights).
    after = dict(runner.model.named_parameters())
    assert all(torch.equal(after[k], v) for k, v in inject.before.items())
    last = find_resumable_checkpoint(work)
    assert last == osp.join(work, 'epoch_1.pth') and last in str(info.value)
    ckpt = load_runner_checkpoint(last)
    assert ckpt['meta']['iter'] == 4
    assert all(torch.isfinite(v.float()).all()
               for v in ckpt['state_dict'].values())
    assert not any(re.match(r'(iter|epoch)_(\d+)', n) and int(
        re.findall(r'\d+', n)[0]) >= 6 for n in os.listdir(work))


@pytest.mark.slow
def test_nonfinite_guard_hook_skip_mode_drops_the_step_and_counts_it(
        tmp_path):
    root = image_folder(str(tmp_path / 'data'))
    cfg = tiny_cfg(str(tmp_path / 'work'), root, 'nan_skip')
    cfg.default_hooks.nonfinite.action = 'skip'
    cfg.custom_hooks = [dict(type='_InjectNonFinite', at_iter=5, kind='grad')]
    runner = Runner.from_cfg(cfg)
    runner.train()
    inject = next(h for h in runner.hooks if isinstance(h, _InjectNonFinite))
    guard = next(h for h in runner.hooks if isinstance(h, NonFiniteGuardHook))
    assert runner.iter == 8
    assert runner.message_hub.get_info('nonfinite_skipped') == 1
    assert guard.action == 'skip' and guard.num_skipped == 1
    assert all(torch.isfinite(v.float()).all()
               for v in runner.model.state_dict().values())
    assert inject.before is not None
    # The faulty step was dropped: no parameter moved in it (AdamW leaves
    # parameters without a gradient alone, weight decay included).
    assert all(torch.equal(inject.after[k], v)
               for k, v in inject.before.items())
