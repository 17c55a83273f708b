"""Two nodes on the real launcher: tools/dist_train.sh run twice (NNODES=2,
NODE_RANK 0 and 1, one process each, gloo on CPU) on the FunMatch demo.

- The ranks end with identical weights, equal (to float tolerance) to one
  process with the same global batch. Per-rank batch 8 vs 16 in one process;
  BatchNorm statistics over the global batch (sync_bn='torch', which
  mmfunmatch.compat makes work on CPU); mixup off, because UniformMixup
  pairs images inside each rank's batch (see docs/distributed.md).
- Losing a node mid-run stops the survivor within a bounded time with a
  clear message; relaunching both with --resume ends with the weights of
  the uninterrupted two-node run, bit for bit.
"""
import os
import os.path as osp
import signal
import sys
import time

import pytest
import torch

from mmfunmatch.compat import load_runner_checkpoint
from tests.conftest import REPO
from tests.helpers import (FUNMATCH, assert_same_run, children,
                           dist_options, finish_train, launch, teacher_file,
                           two_nodes)

pytestmark = pytest.mark.slow
# Survivors must stop within this many seconds of losing a node.
STOP_BOUND_S = 120


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory, digits_root):
    """The two-node run and the one-process run, side by side."""
    tmp = tmp_path_factory.mktemp('dist')
    teacher = teacher_file(str(tmp / 'teacher.pth'))
    two, one = str(tmp / 'two_nodes'), str(tmp / 'one_process')
    nodes = two_nodes(two, digits_root, teacher, two)
    single = launch(
        [sys.executable, osp.join(REPO, 'tools', 'train.py'), FUNMATCH,
         *dist_options(one, digits_root, teacher, 16)], one + '.log')
    logs = [finish_train(p, f'{two}.node{r}.log', timeout=900)
            for r, p in enumerate(nodes)]
    finish_train(single, one + '.log', timeout=900)
    return dict(tmp=tmp, teacher=teacher, root=digits_root, two=two, one=one,
                logs=logs)


def _float_states(path):
    state = load_runner_checkpoint(path)['state_dict']
    return {k: v.double() for k, v in state.items() if v.is_floating_point()}


def test_two_nodes_agree_with_each_other_and_with_one_process(uninterrupted):
    two, one = uninterrupted['two'], uninterrupted['one']
    # RankConsistencyHook compared a SHA-256 of the weights across ranks;
    # with SyncBN the BatchNorm statistics agree as well.
    assert ('weights identical on all 2 ranks after training (12 '
            'iterations)') in uninterrupted['logs'][0]
    assert 'buffers identical' in uninterrupted['logs'][0]
    # After 4 steps: equal to float rounding (the sums run in another order;
    # 5e-7 to 7e-7 at most across ISA settings).
    a4 = _float_states(osp.join(two, 'iter_4.pth'))
    b4 = _float_states(osp.join(one, 'iter_4.pth'))
    assert a4.keys() == b4.keys()
    print('after 4 steps, largest difference: ' + str(max(
        float((a4[k] - b4[k]).abs().max()) for k in a4)))
    for k in a4:
        torch.testing.assert_close(a4[k], b4[k], rtol=1e-4, atol=1e-5, msg=k)
    # After 8 (two steps into epoch 2, past the reshuffle): Adam divides by
    # sqrt(v), so gradient elements near 0 whose rounding differs step
    # differently, and the gap grows fast: the runs agree to 1 % of how far
    # the weights and BatchNorm statistics moved since step 4 (3.5e-4 measured
    # on 2026-12-01); by step 12 it had grown to 0.3-0.4 % with Adam's eps at
    # 1e-6 or 1e-4 and 0.007 % at 1e-5, too erratic for a bound (see
    # dist_options). Per-rank BatchNorm instead of SyncBN gives 34 %.
    a = _float_states(osp.join(two, 'iter_8.pth'))
    b = _float_states(osp.join(one, 'iter_8.pth'))
    moved = sum(((a[k] - a4[k])**2).sum() for k in a).sqrt()
    apart = sum(((a[k] - b[k])**2).sum() for k in a).sqrt()
    print(f'after 8 steps, apart / moved = {float(apart / moved):.2e}')
    assert apart < 0.01 * moved, (float(apart), float(moved))


def test_a_lost_node_stops_the_other_and_both_resume_exactly(uninterrupted):
    tmp, root, teacher = (uninterrupted['tmp'], uninterrupted['root'],
                          uninterrupted['teacher'])
    work = str(tmp / 'node_lost')
    node0, node1 = two_nodes(work, root, teacher, work)
    deadline = time.time() + 900
    while not osp.exists(osp.join(work, 'iter_8.pth')):
        assert node0.poll() is None and node1.poll() is None
        assert time.time() < deadline
        time.sleep(0.02)
    # Node 1 is lost: its training process and its torchrun agent.
    for pid in children(node1.pid) + [node1.pid]:
        os.kill(pid, signal.SIGKILL)
    lost_at = time.time()
    node0.wait(timeout=STOP_BOUND_S)
    stopped_after = time.time() - lost_at
    node1.wait()
    with open(f'{work}.node0.log') as f:
        log0 = f.read()
    assert node0.returncode != 0
    assert 'lost contact with another rank' in log0
    assert 'Relaunch every node with --resume' in log0
    print(f'node 0 stopped {stopped_after:.1f} s after node 1 was lost')

    nodes = two_nodes(work, root, teacher, work + '.resume', '--resume')
    logs = [finish_train(p, f'{work}.resume.node{r}.log', timeout=900)
            for r, p in enumerate(nodes)]
    picked = [line for line in logs[0].splitlines()
              if '--resume: continuing from' in line]
    assert picked and picked[0].endswith(('iter_8.pth', 'epoch_1.pth'))
    assert 'weights identical on all 2 ranks' in logs[0]
    assert_same_run(osp.join(uninterrupted['two'], 'epoch_2.pth'),
                     osp.join(work, 'epoch_2.pth'))
