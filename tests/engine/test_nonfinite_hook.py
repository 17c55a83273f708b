"""NonFiniteGuardHook (mmfunmatch/engine/hooks/nonfinite_hook.py): a NaN or
infinite loss or gradient stops the run (or, with action='skip', drops the
step) before it reaches the weights. Through the real runner with a fault
injected (marked slow)."""
import copy
import os
import os.path as osp
import re

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import Runner

from mmfunmatch.compat import load_runner_checkpoint
from mmfunmatch.engine.hooks import NonFiniteError, find_resumable_checkpoint
from tests.helpers import image_folder, tiny_cfg


# -- through the runner -------------------------------------------------------
@HOOKS.register_module(force=True)
class _InjectNonFinite(Hook):
    """Test fault: at one iteration, make the logits (so the loss) or the
    gradients non-finite, recording the weights before the step."""

    priority = 'VERY_LOW'

    def __init__(self, at_iter: int, kind: str) -> None:
        self.at_iter, self.kind = at_iter, kind
        self.before = None
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


@pytest.mark.slow
@pytest.mark.parametrize('kind', ['loss', 'grad'])
def test_nonfinite_guard_hook_stops_the_run_before_it_reaches_the_weights(
        kind, tmp_path):
    root = image_folder(str(tmp_path / 'data'))
    work = str(tmp_path / 'work')
    cfg = tiny_cfg(work, root, f'nan_{kind}')
    cfg.custom_hooks = [dict(type='_InjectNonFinite', at_iter=6, kind=kind)]
    runner = Runner.from_cfg(cfg)
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
    assert runner.iter == 8
    assert runner.message_hub.get_info('nonfinite_skipped') == 1
    assert all(torch.isfinite(v.float()).all()
               for v in runner.model.state_dict().values())
    assert inject.before is not None
