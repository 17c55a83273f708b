"""Pre-emption (docs/reliability.md): on SIGTERM (or a configured signal)
every rank finishes its iteration, a checkpoint is written through
SafeCheckpointHook's atomic path, the run exits with code 5, and --resume
continues bitwise. The end-to-end runs use tools/train.py and
tools/dist_train.sh in subprocesses (gloo on CPU) and are marked slow; they
print the time from the signal to the exit."""
import os
import os.path as osp
import re
import signal
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import BaseLoop, Runner
from torch.utils.data import DataLoader

from mmfunmatch.apis.cli import EXIT_PREEMPTED
from mmfunmatch.compat import load_runner_checkpoint
from mmfunmatch.engine.hooks import (Preempted, PreemptionHook,
                                     find_resumable_checkpoint,
                                     is_complete_checkpoint)
from mmfunmatch.engine.hooks.preemption_hook import signal_number
from tests.conftest import REPO
from tests.helpers import (DIST_TRAIN, EPOCH_SCHEDULE, FUNMATCH,
                           assert_same_run, children, dist_options,
                           finish_train, image_folder, launch, subprocess_env,
                           teacher_file, tiny_cfg, train_args, two_nodes)

# A signalled run must be gone within this many seconds (one iteration of the
# demo plus a checkpoint take ~1 s here; the bound leaves room for a loaded
# machine).
EXIT_BOUND_S = 120


# -- the hook on its own ------------------------------------------------------
def test_signals_by_name_or_number():
    assert signal_number('SIGTERM') is signal.SIGTERM
    assert signal_number('usr1') is signal.SIGUSR1
    assert signal_number(int(signal.SIGUSR2)) is signal.SIGUSR2
    assert PreemptionHook(signals='SIGUSR1').signals == (signal.SIGUSR1, )
    for bad in ('SIGKILL', 'SIGNOPE'):
        with pytest.raises(ValueError,
                           match='not a signal that can be caught'):
            PreemptionHook(signals=[bad])


class _Loop(BaseLoop):

    def __init__(self, dataloader) -> None:
        self.dataloader = dataloader

    def run(self) -> None:
        raise RuntimeError('training failed')


def test_handlers_are_installed_for_the_run_and_restored(tmp_path):
    def previous(signum, frame):
        raise AssertionError('the previous handler must not run')

    old = signal.signal(signal.SIGUSR1, previous)
    try:
        hook = PreemptionHook(signals=['SIGUSR1'], marker='preempted')
        (tmp_path / 'preempted').write_text('stale')
        init = []
        loader = DataLoader(range(4), worker_init_fn=init.append)
        runner = SimpleNamespace(work_dir=str(tmp_path),
                                 _train_loop=_Loop(loader), _val_loop=None)
        hook.before_run(runner)
        assert not (tmp_path / 'preempted').exists()  # stale marker gone
        # Dataloader workers ignore the signal, then run the loader's own
        # worker_init_fn.
        loader.worker_init_fn(3)
        assert init == [3]
        assert signal.getsignal(signal.SIGUSR1) is signal.SIG_IGN
        signal.signal(signal.SIGUSR1, hook._handle)
        os.kill(os.getpid(), signal.SIGUSR1)  # recorded, nothing else
        os.kill(os.getpid(), signal.SIGUSR1)  # a repeat changes nothing
        assert hook._received[0] == signal.SIGUSR1
        first = hook._received
        assert hook._agree()[:2] == (signal.SIGUSR1, 0)
        assert hook._received == first
        # However the training loop ends (here: an error), the previous
        # handler is back.
        with pytest.raises(RuntimeError, match='training failed'):
            runner._train_loop.run()
        assert signal.getsignal(signal.SIGUSR1) is previous
    finally:
        signal.signal(signal.SIGUSR1, old)


# -- in process: a signal in the last iteration of an epoch -------------------
@HOOKS.register_module(force=True)
class _SignalSelf(Hook):
    """Test fault: send ``signum`` to this process during iteration
    ``at_iter`` (before its step)."""

    priority = 'VERY_HIGH'

    def __init__(self, at_iter: int, signum: int = signal.SIGTERM) -> None:
        self.at_iter, self.signum = at_iter, signum

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter + 1 == self.at_iter:
            os.kill(os.getpid(), self.signum)


@pytest.mark.slow
def test_a_signal_at_the_end_of_an_epoch_resumes_exactly(tmp_path):
    """The tiny classifier (4 iterations per epoch, 2 dataloader workers),
    SIGUSR1 in iteration 4, the last of epoch 1, configured as the signal:
    iter_4.pth, the marker, the handlers restored; the resumed run trains
    an empty rest of epoch 1 and ends bitwise like the run left alone."""
    root = image_folder(str(tmp_path / 'data'))
    loader = dict(num_workers=2, persistent_workers=True)
    ref = str(tmp_path / 'ref')
    Runner.from_cfg(tiny_cfg(ref, root, 'pre_ref', **loader)).train()

    work = str(tmp_path / 'work')
    cfg = tiny_cfg(work, root, 'pre_sig', **loader)
    cfg.default_hooks.preemption.signals = ['SIGUSR1']
    cfg.custom_hooks = [
        dict(type='_SignalSelf', at_iter=4, signum=signal.SIGUSR1)
    ]
    before = signal.getsignal(signal.SIGUSR1)
    with pytest.raises(Preempted) as info:
        Runner.from_cfg(cfg).train()
    assert signal.getsignal(signal.SIGUSR1) is before
    stopped = info.value
    assert (stopped.signal_name, stopped.iteration) == ('SIGUSR1', 4)
    assert stopped.checkpoint == osp.join(work, 'iter_4.pth')
    assert find_resumable_checkpoint(work) == stopped.checkpoint
    assert load_runner_checkpoint(stopped.checkpoint)['meta']['iter'] == 4
    with open(osp.join(work, 'preempted')) as f:
        assert f.read() == (f'SIGUSR1 iteration=4 checkpoint='
                            f'{stopped.checkpoint}\n')

    cfg = tiny_cfg(work, root, 'pre_resume', **loader)
    cfg.update(resume=True, load_from=stopped.checkpoint)
    Runner.from_cfg(cfg).train()
    assert not osp.exists(osp.join(work, 'preempted'))
    assert_same_run(osp.join(ref, 'epoch_2.pth'),
                    osp.join(work, 'epoch_2.pth'))


# -- end to end ---------------------------------------------------------------
def _start_group(args, log):
    """tools/train.py in its own process group (it and its dataloader
    workers), as a job step under Slurm."""
    with open(log, 'w') as f:
        return subprocess.Popen([sys.executable, *args], cwd=REPO,
                                env=subprocess_env(), stdout=f,
                                stderr=subprocess.STDOUT,
                                start_new_session=True)


def _wait_for(proc, log, text, timeout=900) -> None:
    deadline = time.time() + timeout
    while True:
        with open(log) as f:
            if text in f.read():
                return
        assert proc.poll() is None, open(log).read()[-4000:]
        assert time.time() < deadline, f'{text!r} never appeared in {log}'
        time.sleep(0.02)


def _stopped_at(log_text: str) -> int:
    found = re.findall(r'pre-empted: SIGTERM .*?stopped after iteration '
                       r'(\d+)', log_text)
    assert found, log_text[-4000:]
    return int(found[-1])


def _assert_preemption_checkpoint(work: str, iteration: int) -> str:
    ckpt = osp.join(work, f'iter_{iteration}.pth')
    assert is_complete_checkpoint(ckpt)
    assert load_runner_checkpoint(ckpt)['meta']['iter'] == iteration
    with open(osp.join(work, 'last_checkpoint')) as f:
        assert f.read() == ckpt
    assert find_resumable_checkpoint(work) == ckpt
    assert not [n for n in os.listdir(work) if '.tmp-' in n]
    return ckpt


@pytest.mark.slow
def test_sigterm_mid_epoch_checkpoints_exits_5_and_resumes_exactly(
        tmp_path, digits_root):
    """tools/train.py on the FunMatch demo (mixup, 2 dataloader workers),
    SIGTERM to its whole process group (main process and dataloader
    workers, as Slurm signals a job step) in iteration 9 (epoch 2, batch 3
    of 6); --resume ends with the student, its buffers, the optimizer state
    and the mixup generator of the uninterrupted run."""
    teacher = teacher_file(str(tmp_path / 'teacher.pth'))
    ref, work = str(tmp_path / 'ref'), str(tmp_path / 'preempted')
    args = train_args(FUNMATCH, work, digits_root, teacher, *EPOCH_SCHEDULE)
    ref_proc = _start_group(
        train_args(FUNMATCH, ref, digits_root, teacher, *EPOCH_SCHEDULE),
        ref + '.log')
    proc = _start_group(args, work + '.log')
    _wait_for(proc, work + '.log', 'Epoch(train) [2][3/6]')
    sent = time.time()
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=EXIT_BOUND_S)
    took = time.time() - sent
    with open(work + '.log') as f:
        log = f.read()
    assert proc.returncode == EXIT_PREEMPTED, log[-4000:]
    reached = _stopped_at(log)
    reported = re.findall(r'([\d.]+) s from the signal to exit', log)[-1]
    print(f'\nsingle process: SIGTERM in iteration ~9, stopped after '
          f'iteration {reached}, exit code 5 {took:.2f} s after the signal '
          f'(the process reports {reported} s)')
    assert 9 <= reached <= 11  # inside epoch 2, the iteration in progress
    ckpt = _assert_preemption_checkpoint(work, reached)
    with open(osp.join(work, 'preempted')) as f:
        assert f.read() == f'SIGTERM iteration={reached} checkpoint={ckpt}\n'
    assert 'DataLoader worker' not in log  # the workers were not killed

    log = finish_train(
        _start_group(args + ['--resume'], work + '.resume.log'),
        work + '.resume.log')
    finish_train(ref_proc, ref + '.log')
    assert f'--resume: continuing from {ckpt}' in log
    assert (f'Resuming inside epoch 2: skipping its first {reached - 6} '
            f'batches') in log
    assert not osp.exists(osp.join(work, 'preempted'))
    assert_same_run(osp.join(ref, 'epoch_2.pth'),
                    osp.join(work, 'epoch_2.pth'))


@pytest.mark.slow
def test_sigterm_to_one_rank_stops_both_at_the_same_iteration(
        tmp_path, digits_root):
    """Two nodes on tools/dist_train.sh (one process each, gloo), SIGTERM to
    node 1's training process only: both ranks save the same iteration and
    exit, both launchers exit with 5; relaunching both with --resume ends
    bitwise like the uninterrupted two-node run."""
    teacher = teacher_file(str(tmp_path / 'teacher.pth'))
    ref, work = str(tmp_path / 'ref'), str(tmp_path / 'preempted')
    refs = two_nodes(ref, digits_root, teacher, ref)
    node0, node1 = two_nodes(work, digits_root, teacher, work)
    _wait_for(node0, f'{work}.node0.log', 'Epoch(train) [2][3/6]')
    workers = children(node1.pid)
    assert len(workers) == 1, workers
    sent = time.time()
    os.kill(workers[0], signal.SIGTERM)
    node0.wait(timeout=EXIT_BOUND_S)
    node1.wait(timeout=EXIT_BOUND_S)
    took = time.time() - sent
    logs = []
    for rank in (0, 1):
        with open(f'{work}.node{rank}.log') as f:
            logs.append(f.read())
    assert (node0.returncode, node1.returncode) == (EXIT_PREEMPTED, ) * 2, \
        logs[0][-3000:] + logs[1][-3000:]
    reached = [_stopped_at(text) for text in logs]
    assert 'received by rank 1' in logs[0]  # rank 0 was never signalled
    print(f'\ntwo nodes: SIGTERM to rank 1 only in iteration ~9, both '
          f'stopped after iteration {reached}, both launchers exited with 5 '
          f'{took:.2f} s after the signal')
    assert reached[0] == reached[1] and 9 <= reached[0] <= 11
    ckpt = _assert_preemption_checkpoint(work, reached[0])

    for rank, proc in enumerate(refs):
        finish_train(proc, f'{ref}.node{rank}.log')
    resumed = two_nodes(work, digits_root, teacher, work + '.resume',
                         '--resume')
    logs = [finish_train(p, f'{work}.resume.node{r}.log')
            for r, p in enumerate(resumed)]
    assert f'--resume: continuing from {ckpt}' in logs[0]
    assert 'weights identical on all 2 ranks' in logs[0]
    assert_same_run(osp.join(ref, 'epoch_2.pth'),
                    osp.join(work, 'epoch_2.pth'))


@pytest.mark.slow
def test_sigterm_to_dist_train_sh_reaches_every_process_and_exits_5(
        tmp_path, digits_root):
    """One node, two processes: SIGTERM to tools/dist_train.sh itself (the
    torchrun agent, which forwards it to both training processes)."""
    teacher = teacher_file(str(tmp_path / 'teacher.pth'))
    work = str(tmp_path / 'preempted')
    with socket.socket() as sock:  # a free port for the process group
        sock.bind(('127.0.0.1', 0))
        port = str(sock.getsockname()[1])
    node = launch(['bash', DIST_TRAIN, FUNMATCH, '2',
                    *dist_options(work, digits_root, teacher, 8)],
                   work + '.log', PORT=port)
    _wait_for(node, work + '.log', 'Epoch(train) [2][1/6]')
    sent = time.time()
    node.send_signal(signal.SIGTERM)
    node.wait(timeout=EXIT_BOUND_S)
    took = time.time() - sent
    with open(work + '.log') as f:
        log = f.read()
    assert node.returncode == EXIT_PREEMPTED, log[-4000:]
    reached = [int(n) for n in re.findall(
        r'rank \d: pre-empted: SIGTERM .*?stopped after iteration (\d+)',
        log)]
    print(f'\none node, two processes: SIGTERM to dist_train.sh, both '
          f'stopped after iteration {reached}, exit code 5 {took:.2f} s '
          f'after the signal')
    assert len(reached) == 2 and reached[0] == reached[1]
    _assert_preemption_checkpoint(work, reached[0])


# -- tools/slurm_train.sh, with srun and scontrol stood in for ----------------
_FAKE_SRUN = '''#!/usr/bin/env bash
echo "$*" > "$FAKE/srun.args"
case "$MODE" in
  exit5) exit 5 ;;
  # tasks killed by --kill-on-bad-exit: srun's own code is not 5
  marker) echo x > "$WORK/preempted"; exit 137 ;;
  fail) exit 3 ;;
  signal) trap 'echo USR1 >> "$FAKE/srun.args"; exit 5' USR1
          while :; do sleep 0.05; done ;;
esac
'''


@pytest.mark.parametrize('mode, code, requeued', [
    ('exit5', 5, True), ('marker', 5, True), ('fail', 3, False),
    ('signal', 5, True)
])
def test_slurm_train_requeues_a_preempted_job(mode, code, requeued,
                                              tmp_path):
    """srun's exit code 5 or the work dir's marker -> scontrol requeue and
    exit 5; --resume is added; a signal to the script (sbatch
    --signal=B:USR1) is passed on to srun."""
    fake, work = tmp_path / 'bin', tmp_path / 'work'
    fake.mkdir()
    work.mkdir()
    (work / 'preempted').write_text('stale')  # removed before the launch
    (fake / 'srun').write_text(_FAKE_SRUN)
    (fake / 'scontrol').write_text(
        '#!/usr/bin/env bash\necho "$*" > "$FAKE/scontrol.args"\n')
    for tool in ('srun', 'scontrol'):
        os.chmod(fake / tool, 0o755)
    env = dict(os.environ, PATH=f'{fake}{os.pathsep}{os.environ["PATH"]}',
               FAKE=str(fake), MODE=mode, WORK=str(work), SLURM_JOB_ID='42')
    proc = subprocess.Popen(
        ['bash', osp.join(REPO, 'tools', 'slurm_train.sh'), 'gpu', 'job',
         'configs/x.py', '--work-dir', str(work)], env=env,
        stderr=subprocess.PIPE, text=True)
    if mode == 'signal':
        deadline = time.time() + 30
        while not (fake / 'srun.args').exists():
            assert time.time() < deadline
            time.sleep(0.05)
        time.sleep(0.3)  # the script is waiting for srun
        proc.send_signal(signal.SIGUSR1)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    args = (fake / 'srun.args').read_text()
    assert args.split('\n')[0].endswith(f'--work-dir {work} --resume')
    assert ('USR1' in args) == (mode == 'signal')
    assert (fake / 'scontrol.args').exists() == requeued
    if requeued:
        assert (fake / 'scontrol.args').read_text() == 'requeue 42\n'
        assert 'requeueing job 42' in err
    if mode != 'marker':
        assert not (work / 'preempted').exists()
