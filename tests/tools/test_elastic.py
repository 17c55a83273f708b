"""Elastic restarts on the real launcher: tools/dist_train.sh run twice as
two nodes of one process each (gloo on CPU, loopback) with MAX_RESTARTS=2,
which makes torchrun's agents meet through a c10d rendezvous and restart the
whole worker group after a failure. Each run is compared with one
uninterrupted two-node run (static rendezvous, no restarts).

- One training process is SIGKILLed in the middle of epoch 2, after the
  mid-epoch checkpoint iter_8.pth: the other rank loses its peer and exits,
  both agents restart their workers, tools/train.py resumes by itself from
  the newest complete checkpoint, the job ends with exit code 0 and the
  weights, buffers and optimizer state of the uninterrupted run, bit for
  bit. The time from the kill to the restarted group's first step is
  printed.
- The same with the other rank stuck (SIGSTOP: it never sees its peer go,
  as a rank blocked in an NCCL collective may not): its agent kills it
  (SIGTERM, then SIGKILL 30 s later) and the restart goes on.
- A pre-emption (SIGTERM to one training process) is not restarted: both
  launchers exit with 5 so that a scheduler can requeue the job.
"""
import os
import os.path as osp
import re
import signal
import time

import pytest

from mmfunmatch.apis.cli import EXIT_PREEMPTED
from tests.helpers import (assert_same_run, children, finish_train,
                           teacher_file, two_nodes)

pytestmark = pytest.mark.slow
RESTARTS = dict(MAX_RESTARTS='2')
# A restarted group must be training again, or a pre-empted job gone, within
# this many seconds (a restart took 28-32 s here, mostly two interpreters
# importing torch and mmpretrain and building the runner; a stuck rank adds
# the agent's 30 s before SIGKILL; the bound leaves room for a loaded
# machine).
BOUND_S = 300


@pytest.fixture(scope='module')
def reference(tmp_path_factory, digits_root):
    """The uninterrupted two-node run, started once for the module's tests
    (it trains beside the first of them); ``wait()`` gives its work
    directory when it has finished."""
    tmp = tmp_path_factory.mktemp('elastic')
    teacher = teacher_file(str(tmp / 'teacher.pth'))
    ref = str(tmp / 'ref')
    procs = two_nodes(ref, digits_root, teacher, ref)  # static, no restarts

    def wait() -> str:
        for rank, proc in enumerate(procs):
            finish_train(proc, f'{ref}.node{rank}.log', timeout=900)
        return ref

    return dict(teacher=teacher, root=digits_root, wait=wait)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _wait_for(procs, logs, pattern, timeout=900) -> float:
    """Wait until ``pattern`` (a regex) is in one of ``logs``; the time."""
    deadline = time.time() + timeout
    while True:
        ended = [proc.poll() is not None for proc in procs]  # logs complete
        if any(re.search(pattern, _read(log)) for log in logs):
            return time.time()
        assert not any(ended), '\n'.join(_read(log)[-3000:] for log in logs)
        assert time.time() < deadline, f'{pattern!r} never appeared'
        time.sleep(0.02)


def _worker(agent) -> int:
    """The one training process of a node's torchrun agent."""
    workers = children(agent.pid)
    assert len(workers) == 1, workers
    return workers[0]


def _restarted(reference, work, freeze_survivor=False):
    """Two nodes with MAX_RESTARTS=2; node 1's training process SIGKILLed
    in iteration 9-10 (after iter_8.pth), node 0's frozen first if asked.
    Checks the job's end and returns (seconds from the kill to the restarted
    group's first step, both logs)."""
    nodes = two_nodes(work, reference['root'], reference['teacher'], work,
                      **RESTARTS)
    logs = [f'{work}.node{rank}.log' for rank in (0, 1)]
    # Mid-epoch: epoch 2 is iterations 7-12; iter_8.pth is its checkpoint.
    _wait_for(nodes, logs, r'Epoch\(train\) \[2\]\[3/6\]')
    assert osp.exists(osp.join(work, 'iter_8.pth'))
    if freeze_survivor:
        os.kill(_worker(nodes[0]), signal.SIGSTOP)
    killed = time.time()
    os.kill(_worker(nodes[1]), signal.SIGKILL)
    # The restarted group's first step.
    back = _wait_for(nodes, logs, r'(?s)resuming from the newest complete '
                     r'checkpoint.*Epoch\(train\)', timeout=BOUND_S)
    texts = [finish_train(p, log, timeout=900) for p, log in zip(nodes, logs)]
    both = '\n'.join(texts)
    # The first start found nothing to resume; one restart, and both
    # processes resumed from the mid-epoch checkpoint.
    assert both.count('no complete checkpoint in') == 2
    resumed = re.findall(r'resuming from the newest complete checkpoint, as '
                         r'--resume would: (\S+)', both)
    assert resumed == [osp.join(work, 'iter_8.pth')] * 2, resumed
    assert 'Resuming inside epoch 2: skipping its first 2 batches' in both
    assert 'weights identical on all 2 ranks' in both
    assert_same_run(osp.join(reference['wait'](), 'epoch_2.pth'),
                    osp.join(work, 'epoch_2.pth'))
    return back - killed, texts


def test_a_killed_worker_is_restarted_and_the_run_ends_exactly(
        reference, tmp_path):
    took, texts = _restarted(reference, str(tmp_path / 'elastic'))
    print(f'\nworker of node 1 killed in iteration ~9: the restarted group '
          f'trained its first step {took:.1f} s later')
    # The survivor saw its peer go and left the restart to torchrun.
    assert 'lost contact with another rank' in texts[0]
    assert 'torchrun restarts the processes of every node' in texts[0]


def test_a_stuck_survivor_is_killed_by_its_agent(reference, tmp_path):
    took, texts = _restarted(reference, str(tmp_path / 'stuck'),
                             freeze_survivor=True)
    print(f'\nworker of node 1 killed with node 0 frozen: the restarted group '
          f'trained its first step {took:.1f} s later')
    assert 'lost contact with another rank' not in texts[0]
    # torchrun's words for "SIGTERM did not end it, SIGKILL did".
    assert re.search(r'Unable to shutdown process \d+ via \S+, forcefully '
                     r'exiting', texts[0])


def test_a_preempted_job_is_not_restarted(reference, tmp_path):
    """SIGTERM to node 1's training process: both ranks checkpoint and
    exit with 5, and the agents, though allowed restarts, end the job."""
    work = str(tmp_path / 'preempted')
    nodes = two_nodes(work, reference['root'], reference['teacher'], work,
                      **RESTARTS)
    logs = [f'{work}.node{rank}.log' for rank in (0, 1)]
    _wait_for(nodes, logs, r'Epoch\(train\) \[2\]\[3/6\]')
    sent = time.time()
    os.kill(_worker(nodes[1]), signal.SIGTERM)
    for proc in nodes:
        proc.wait(timeout=BOUND_S)
    took = time.time() - sent
    texts = [_read(log) for log in logs]
    assert [p.returncode for p in nodes] == [EXIT_PREEMPTED] * 2, \
        texts[0][-3000:] + texts[1][-3000:]
    print(f'\npre-emption with MAX_RESTARTS=2: both launchers exited with 5 '
          f'{took:.1f} s after the signal')
    for text in texts:
        assert 'stopped for a pre-emption signal: not restarting' in text
        assert 'resuming from' not in text
    stopped = re.findall(r'pre-empted: SIGTERM .*?stopped after iteration '
                         r'(\d+)', '\n'.join(texts))
    assert len(stopped) == 2 and stopped[0] == stopped[1], stopped
