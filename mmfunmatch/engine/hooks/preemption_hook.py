"""Stop at a pre-emption signal with a checkpoint of the iteration reached.

Job schedulers warn before they take a machine away: Slurm sends SIGTERM
(then SIGKILL after ``KillWait``, 30 s by default) on pre-emption or
cancellation, or a chosen signal some time before the time limit
(``#SBATCH --signal=USR1@90``). Without a handler the process dies at once
and the run loses everything since its last interval checkpoint (up to
``iter_interval`` iterations). :class:`PreemptionHook` catches the signal,
lets every rank finish its current iteration, writes a checkpoint through
:class:`SafeCheckpointHook`'s atomic path (so ``--resume`` picks it) and ends
the run with :class:`Preempted`, which ``tools/train.py`` turns into exit
code 5 for the job script to requeue on.
"""
import atexit
import logging
import math
import multiprocessing
import os
import os.path as osp
import signal
import threading
import time
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from mmengine.dist import all_reduce, barrier, get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS
from mmengine.runner import BaseLoop

from mmfunmatch.compat import atomic_write_bytes

from .checkpoint_hook import SafeCheckpointHook

# A launcher that wants to know whether its workers were pre-empted (their
# own exit code is lost in torchrun's) sets this to a file path on the node;
# the first process of each node writes it (tools/dist_train.sh).
MARKER_ENV = 'MMFUNMATCH_PREEMPTED_FILE'


class Preempted(Exception):
    """The run stopped at a pre-emption signal after checkpointing.

    Attributes:
        signal_name (str): The signal, e.g. 'SIGTERM'.
        signal_rank (int): A rank that received it.
        signal_time (float): When it was received (``time.time()`` of the
            receiving rank's machine).
        iteration (int): Iterations completed (and saved).
        checkpoint (str): The checkpoint holding them.
    """

    def __init__(self, signal_name: str, signal_rank: int,
                 signal_time: float, iteration: int,
                 checkpoint: str) -> None:
        super().__init__(
            f'{signal_name} received by rank {signal_rank}: stopped after '
            f'iteration {iteration}, saved {checkpoint}')
        self.signal_name = signal_name
        self.signal_rank = signal_rank
        self.signal_time = signal_time
        self.iteration = iteration
        self.checkpoint = checkpoint


def signal_number(sig: Union[str, int]) -> signal.Signals:
    """``'SIGUSR1'``, ``'USR1'``, ``10`` -> ``signal.SIGUSR1``."""
    if isinstance(sig, str):
        name = sig.strip().upper()
        name = name if name.startswith('SIG') else 'SIG' + name
        if not hasattr(signal, name) or name in ('SIGKILL', 'SIGSTOP'):
            raise ValueError(
                f'PreemptionHook: {sig!r} is not a signal that can be '
                f'caught (e.g. SIGTERM, SIGUSR1)')
        return signal.Signals(getattr(signal, name))
    return signal.Signals(int(sig))


class _IgnoreInWorkers:
    """A dataloader ``worker_init_fn`` that makes the worker ignore the
    pre-emption signals, then calls the loader's own ``worker_init_fn``.

    torch's workers install a C handler that dies on SIGTERM, and SIGUSR1's
    default action is to die: a signal sent to the whole process group
    (Slurm signals every process of a job step) would kill the workers and
    the main process would fail with "DataLoader worker ... is killed by
    signal" before it could save. The main process shuts its workers down
    itself; a worker whose main process is gone exits on its own.
    """

    def __init__(self, signals: Sequence[int], init_fn=None) -> None:
        self.signals = tuple(int(s) for s in signals)
        self.init_fn = init_fn

    def __call__(self, worker_id: int) -> None:
        for sig in self.signals:
            signal.signal(sig, signal.SIG_IGN)
        if self.init_fn is not None:
            self.init_fn(worker_id)


def _end_daemonic_children() -> None:
    """At exit of the training process: kill its daemonic children.

    multiprocessing's own exit handler (which runs after this one) ends them
    with SIGTERM and then waits for them without a limit; dataloader workers
    that ignore SIGTERM (:class:`_IgnoreInWorkers`) would keep the process
    from ever exiting. These are the processes it would end anyway.
    """
    children = [c for c in multiprocessing.active_children() if c.daemon]
    if not children:
        return
    # torch's SIGCHLD handler would raise "DataLoader worker ... is killed"
    # in the middle of this; the run is over.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for child in children:
        child.kill()
    for child in children:
        child.join(timeout=5)


_EXIT_HANDLER_REGISTERED = False


def _register_exit_handler() -> None:
    global _EXIT_HANDLER_REGISTERED
    if not _EXIT_HANDLER_REGISTERED:
        # Registered after multiprocessing's (imported by torch), so it runs
        # before it (atexit runs the newest first).
        atexit.register(_end_daemonic_children)
        _EXIT_HANDLER_REGISTERED = True


@HOOKS.register_module()
class PreemptionHook(Hook):
    """On one of ``signals``: finish the iteration, checkpoint, stop.

    The signal handler only records the signal; the training loop acts on
    it after the iteration in progress (a signal during validation is acted
    on after the next training iteration). In a multi-process run the
    signal may reach one rank only (a node's agent, a ``kill`` on one
    process), so after every ``interval`` iterations the ranks agree with one
    all_reduce (MAX) of a 4-number tensor: all of them save the same
    iteration and stop together. The checkpoint is ``iter_N.pth``, written by
    :meth:`SafeCheckpointHook.save_now` (temporary file, fsync, rename, then
    ``last_checkpoint``; nothing new when that iteration was just saved).
    Then the marker file (below) is written, all ranks meet in a barrier (so
    no launcher kills rank 0 while it writes), the previous signal handlers
    are restored and :class:`Preempted` is raised; ``tools/train.py`` exits
    with code 5.

    The handlers are installed in ``before_run`` of a training run (not for
    ``runner.val()``/``test()``) and restored when the training loop ends,
    whether it finishes, stops here or fails. The train and val dataloader workers ignore these signals
    (their ``worker_init_fn`` is wrapped), so a signal sent to the whole
    process group (Slurm signals every process of a job step) does not kill
    them under the main process. Workers that were started before
    ``before_run`` (an ``IterBasedTrainLoop`` without ExactResumeHook's
    restart of them) keep dying on such a signal. At exit the process kills
    its remaining workers itself (multiprocessing would stop them with
    SIGTERM, which they now ignore).

    Args:
        signals (sequence of str or int): Signals that mean "pre-empted",
            by name ('SIGTERM', 'SIGUSR1', 'USR1') or number. Defaults to
            ('SIGTERM', ).
        interval (int): Multi-process runs: agree every this many
            iterations (the signal waits at most this many iterations).
            Defaults to 1 (one small all_reduce per iteration).
        marker (str, optional): Rank 0 writes this file (relative to the
            work directory) when it stops for a signal and removes it at the
            next start, for job scripts to check; None: no file. The first
            process of each node also writes ``$MMFUNMATCH_PREEMPTED_FILE``
            when that variable is set. Defaults to 'preempted'.
    """

    priority = 'LOWEST'  # after SafeCheckpointHook: reuse its checkpoint

    def __init__(self,
                 signals: Sequence[Union[str, int]] = ('SIGTERM', ),
                 interval: int = 1,
                 marker: Optional[str] = 'preempted') -> None:
        if isinstance(signals, (str, int)):
            signals = [signals]
        self.signals = tuple(signal_number(s) for s in signals)
        if interval < 1:
            raise ValueError('PreemptionHook: interval must be >= 1')
        self.interval = interval
        self.marker = marker
        self._previous: Dict[signal.Signals, object] = {}
        self._pid: Optional[int] = None
        self._received: Optional[Tuple[int, float]] = None

    # -- signal handling ------------------------------------------------------
    def _handle(self, signum: int, frame) -> None:
        if os.getpid() != self._pid:
            return  # a forked dataloader worker: the main process decides
        if self._received is None:
            self._received = (signum, time.time())

    def _install(self, runner) -> None:
        if threading.current_thread() is not threading.main_thread():
            runner.logger.warning(
                'PreemptionHook: not in the main thread, cannot catch '
                'signals; pre-emption stops the run without a checkpoint.')
            return
        self._pid = os.getpid()
        self._received = None
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handle)

    def _restore(self) -> None:
        for sig, previous in self._previous.items():
            # None: a handler set outside Python; the default is the best
            # that can be put back.
            signal.signal(sig, signal.SIG_DFL if previous is None else
                          previous)
        self._previous = {}

    def _marker_paths(self, runner) -> list:
        paths = []
        if self.marker and get_rank() == 0:
            paths.append(osp.join(runner.work_dir, self.marker))
        if os.environ.get(MARKER_ENV) and int(
                os.environ.get('LOCAL_RANK', '0')) == 0:
            paths.append(os.environ[MARKER_ENV])
        return paths

    def before_run(self, runner) -> None:
        # Built by Runner.train() before before_run; a dict or None in
        # runner.val() and runner.test(), where nothing is to be saved.
        if not isinstance(runner._train_loop, BaseLoop):
            return
        for loop in (runner._train_loop, runner._val_loop):
            loader = getattr(loop, 'dataloader', None)
            if loader is not None and not isinstance(loader.worker_init_fn,
                                                     _IgnoreInWorkers):
                loader.worker_init_fn = _IgnoreInWorkers(
                    self.signals, loader.worker_init_fn)
                _register_exit_handler()
        if self.marker and get_rank() == 0:
            stale = osp.join(runner.work_dir, self.marker)
            if osp.exists(stale):
                os.remove(stale)
        self._install(runner)
        # mmengine calls no hook when training ends with an exception: put
        # the previous handlers back however the loop ends.
        loop, run = runner._train_loop, runner._train_loop.run

        def run_then_restore(*args, **kwargs):
            try:
                return run(*args, **kwargs)
            finally:
                self._restore()

        loop.run = run_then_restore

    def after_train(self, runner) -> None:
        self._restore()

    def after_run(self, runner) -> None:
        self._restore()

    # -- acting on it ---------------------------------------------------------
    def _agree(self) -> Optional[Tuple[int, int, float]]:
        """(signal, rank that got it, when) if any rank got a signal."""
        if self._received is None:
            mine = [0., 0., -math.inf, -1.]
        else:
            signum, when = self._received
            mine = [1., float(signum), -when, float(get_rank())]
        if get_world_size() > 1:
            flags = torch.tensor(mine, dtype=torch.float64)
            all_reduce(flags, op='max')
            mine = flags.tolist()
        if not mine[0]:
            return None
        return int(mine[1]), int(mine[3]), -mine[2]

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if not self._previous:
            return
        if get_world_size() > 1 and not self.every_n_train_iters(
                runner, self.interval):
            return
        agreed = self._agree()
        if agreed is None:
            return
        signum, rank, when = agreed
        name = signal.Signals(signum).name
        done = runner.iter + 1
        print_log(
            f'{name} received by rank {rank} {time.time() - when:.1f} s ago: '
            f'stopping after iteration {done} with a checkpoint.',
            logger='current', level=logging.WARNING)
        ckpt_hook = next((h for h in runner.hooks
                          if isinstance(h, SafeCheckpointHook)), None)
        if ckpt_hook is not None:
            checkpoint = ckpt_hook.save_now(runner)
        else:  # mmengine's own hook: its write is atomic (compat) as well
            checkpoint = osp.join(runner.work_dir, f'iter_{done}.pth')
            runner.save_checkpoint(runner.work_dir, osp.basename(checkpoint),
                                   by_epoch=False)
        for path in self._marker_paths(runner):
            atomic_write_bytes(
                f'{name} iteration={done} checkpoint={checkpoint}\n'.encode(),
                path)
        barrier()  # nobody leaves while rank 0 is still writing
        self._restore()
        raise Preempted(name, rank, when, done, checkpoint)
