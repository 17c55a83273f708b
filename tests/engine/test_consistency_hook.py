"""RankConsistencyHook (mmfunmatch/engine/hooks/consistency_hook.py): the
digests are bitwise and leave the teachers out; with two real ranks (gloo,
marked slow) equal weights pass, and diverged weights or ranks that start
from different states stop the run naming them. The hook's part in a real
two-node run is in tests/tools/test_dist.py."""
import json
import os
import traceback
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
from mmpretrain.registry import MODELS

from mmfunmatch.engine.hooks import RankConsistencyHook, state_digest
from mmfunmatch.engine.hooks.consistency_hook import digest
from tests.conftest import tiny_classifier
from tests.helpers import free_port


def test_digest_is_bitwise_and_names_dtypes_and_keys():
    w = torch.linspace(-1, 1, 12).reshape(3, 4)
    ref = digest([('w', w)])
    assert digest([('w', w.clone())]) == ref
    assert digest([('w', w.t().contiguous().t())]) == ref  # layout aside
    one_ulp = w.clone()
    one_ulp[2, 3] = torch.nextafter(w[2, 3], torch.tensor(2.))
    assert digest([('w', one_ulp)]) != ref
    assert digest([('v', w)]) != ref
    # The same bytes read as another dtype are other weights.
    assert digest([('w', w.view(torch.int32))]) != ref
    assert digest([('w', w), ('b', torch.zeros(1))]) != ref


def test_state_digest_covers_the_student_not_the_teachers():
    model = MODELS.build(dict(
        type='FunMatchDistiller', student=tiny_classifier(4),
        teachers=[dict(model=tiny_classifier(8), checkpoint=None)]))
    ref = state_digest(model)
    with torch.no_grad():
        model.teachers[0].head.fc.weight.add_(1)
    assert state_digest(model) == ref  # rebuilt from their file, not saved
    with torch.no_grad():
        model.student.head.fc.weight.add_(1)
    assert state_digest(model) != ref


class _Log:

    def __init__(self) -> None:
        self.lines = []

    def info(self, message: str) -> None:
        self.lines.append(message)


def _runner(model: nn.Module, iteration: int = 8) -> SimpleNamespace:
    return SimpleNamespace(model=model, iter=iteration, logger=_Log())


def _net(bn_shift: float = 0.) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)  # the same weights on every rank
        net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    net[1].running_mean += bn_shift
    return net


def test_rank_consistency_hook_does_nothing_in_one_process():
    hook = RankConsistencyHook(interval=1)
    runner = _runner(_net())
    hook.before_train(runner)
    hook.after_train_iter(runner, 0)
    hook.after_train(runner)
    assert runner.logger.lines == []


# -- two ranks ----------------------------------------------------------------
def _outcome(call) -> str:
    try:
        call()
    except RuntimeError as e:
        return f'RuntimeError: {e}'
    return 'ok'


def _two_rank_worker(rank: int, port: int, out_dir: str) -> None:
    os.environ['MASTER_ADDR'] = '127.0.0.1'
    os.environ['MASTER_PORT'] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group('gloo', rank=rank, world_size=2)
    try:
        hook = RankConsistencyHook(interval=2)
        same = _runner(_net(bn_shift=rank))  # only the buffers differ
        diverged = _runner(_net())
        if rank == 1:
            with torch.no_grad():
                diverged.model[0].bias[0] += 1e-6
        results = dict(
            same_start=_outcome(lambda: hook.before_train(same)),
            same_end=_outcome(lambda: hook.after_train(same)),
            same_log=same.logger.lines,
            # Between checks (iteration 9, interval 2) nothing is compared.
            off_interval=_outcome(lambda: hook.after_train_iter(
                _runner(diverged.model, iteration=8), 0)),
            diverged_end=_outcome(lambda: hook.after_train(diverged)),
            diverged_interval=_outcome(lambda: hook.after_train_iter(
                _runner(diverged.model, iteration=9), 0)),
            other_iteration=_outcome(lambda: hook.before_train(
                _runner(_net(), iteration=8 + 4 * rank))),
        )
        with open(os.path.join(out_dir, f'rank{rank}.json'), 'w') as f:
            json.dump(results, f)
    except Exception:
        with open(os.path.join(out_dir, f'rank{rank}.json'), 'w') as f:
            json.dump(dict(error=traceback.format_exc()), f)
    finally:
        dist.destroy_process_group()


# Most of the time is the two spawned processes importing torch, mmengine and
# mmfunmatch.
@pytest.mark.slow
def test_rank_consistency_hook_on_two_ranks(tmp_path):
    mp.spawn(_two_rank_worker, args=(free_port(), str(tmp_path)), nprocs=2,
             join=True)
    for rank in (0, 1):
        with open(tmp_path / f'rank{rank}.json') as f:
            r = json.load(f)
        assert 'error' not in r, r.get('error')
        assert r['same_start'] == 'ok' and r['same_end'] == 'ok'
        assert len(r['same_log']) == 1
        assert r['same_log'][0].startswith(
            'weights identical on all 2 ranks after training (8 '
            'iterations) (sha256 ')
        assert r['same_log'][0].endswith(
            'buffers differ (per-rank BatchNorm statistics; use sync_bn)')
        assert r['off_interval'] == 'ok'
        assert r['diverged_end'].startswith(
            'RuntimeError: trainable weights differ across ranks after '
            'training (8 iterations): {')
        assert "': [0], '" in r['diverged_end']  # one digest per rank
        assert r['diverged_end'].endswith(
            'do not trust this run past its last checkpoint.')
        assert r['diverged_interval'].startswith(
            'RuntimeError: trainable weights differ across ranks at '
            'iteration 10: ')
        assert r['other_iteration'].startswith(
            'RuntimeError: ranks start from different states (iteration, '
            'weights digest per rank: [(8, ')
        assert 'pass the same --resume PATH on every node' in r[
            'other_iteration']
