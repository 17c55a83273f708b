"""The command lines of tools/train.py and tools/test.py.

The flags are MMPretrain's (``--work-dir``, ``--resume [PATH]``, ``--amp``,
``--cfg-options``, ``--launcher``); the differences: ``--amp`` keeps any
optimizer type (Shampoo included) and refuses to run where AMP cannot,
``mmfunmatch`` is always imported so configs need no ``custom_imports``, and
the config is checked (:func:`validate_config`) and trained by
:class:`CheckedRunner`, which checks what needs the built data set. Under
torchrun with restarts allowed (``MAX_RESTARTS`` of tools/dist_train.sh)
every start resumes from the newest complete checkpoint by itself
(:func:`resume_if_elastic`).
"""
import argparse
import os
import os.path as osp
from typing import List, Optional, Tuple

from mmengine.config import Config, DictAction

import mmfunmatch  # noqa: F401  (registers everything, applies compat)
from mmfunmatch.compat import end_distributed_process
from mmfunmatch.apis.validate import validate_config

_PLAIN_WRAPPERS = (None, 'OptimWrapper', 'AmpOptimWrapper')


def _common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('config', help='config file path')
    parser.add_argument('--work-dir', help='directory for logs and checkpoints')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value (e.g. '
        'train_cfg.max_epochs=10 model.teachers.0.checkpoint=t.pth)')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none', help='job launcher')
    # torchrun passes --local-rank; older launchers --local_rank.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Train a model (function matching or plain) with MMEngine')
    _common_args(parser)
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from this checkpoint, or, without a path, from the '
        'newest complete checkpoint in the work directory')
    parser.add_argument('--amp', action='store_true',
                        help='automatic mixed precision for the student (GPU)')
    parser.add_argument('--no-validate', action='store_true',
                        help='skip validation during training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by actual / base batch size')
    return parser


def eval_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description='Evaluate a checkpoint')
    _common_args(parser)
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='dump the metrics to this json file')
    return parser


def _set_local_rank(args: argparse.Namespace) -> None:
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))


def load_config(args: argparse.Namespace) -> Config:
    """Read the config, apply ``--cfg-options``, ``--work-dir`` and
    ``--launcher``."""
    _set_local_rank(args)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    return cfg


def enable_amp(cfg: Config) -> None:
    """Switch the optimizer wrapper to AMP without touching the optimizer."""
    import torch
    if not torch.cuda.is_available():
        raise SystemExit(
            '--amp needs a CUDA device (mmengine AmpOptimWrapper). On CPU '
            'drop --amp; for a cheaper teacher set model.teacher_dtype=bf16.')
    wrapper_type = cfg.optim_wrapper.get('type')
    if wrapper_type not in _PLAIN_WRAPPERS:
        raise SystemExit(
            f'--amp: optim_wrapper.type is {wrapper_type!r}, a custom wrapper;'
            f' set AMP in its own config instead of using --amp.')
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')


def train_config(argv: Optional[List[str]] = None) -> Config:
    """The runner config for ``tools/train.py``'s command line."""
    args = train_parser().parse_args(argv)
    cfg = load_config(args)
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    if args.amp:
        enable_amp(cfg)
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    if args.auto_scale_lr:
        cfg.auto_scale_lr.enable = True
    # The schedule against the run length needs the data set's length.
    cfg.setdefault('runner_type', 'CheckedRunner')
    validate_config(cfg)
    return cfg


def eval_config(argv: Optional[List[str]] = None):
    """The runner config and output path for ``tools/test.py``."""
    args = eval_parser().parse_args(argv)
    cfg = load_config(args)
    cfg.load_from = args.checkpoint
    cfg.resume = False
    return cfg, args.out


# Exit codes a job scheduler can act on.
EXIT_CONFIG = 2
EXIT_NONFINITE = 3
EXIT_PEER_LOST = 4
# Stopped at a pre-emption signal after checkpointing (PreemptionHook):
# requeue with --resume.
EXIT_PREEMPTED = 5
# A checkpoint could not be written (disk full, read-only or not writable
# directory): do not requeue before fixing the directory.
EXIT_CHECKPOINT_WRITE = 6


def resolve_resume(cfg: Config) -> None:
    """Pick the checkpoint ``--resume`` continues from."""
    from mmengine.logging import print_log

    from mmfunmatch.engine.hooks import (find_resumable_checkpoint,
                                         is_complete_checkpoint)
    if not cfg.get('resume'):
        return
    if cfg.get('load_from') is None:
        cfg.load_from = find_resumable_checkpoint(cfg.work_dir)
        if cfg.load_from is None:
            print_log(f'--resume: no complete checkpoint in {cfg.work_dir}; '
                      f'starting from scratch.', logger='current')
            cfg.resume = False
        else:
            print_log(f'--resume: continuing from {cfg.load_from}',
                      logger='current')
    elif (osp.splitext(cfg.load_from)[1] == '.pth'
          and osp.exists(cfg.load_from)
          and not is_complete_checkpoint(cfg.load_from)):
        raise SystemExit(
            f'--resume {cfg.load_from}: the file is incomplete (cut short '
            f'while being written). Use --resume without a path to pick the '
            f'newest complete checkpoint.')


def elastic_restarts() -> Tuple[int, int]:
    """(restarts of this node's processes so far, restarts allowed) under
    torchrun's ``--max-restarts`` (``MAX_RESTARTS`` of tools/dist_train.sh);
    (0, 0) outside torchrun."""
    def read(name: str) -> int:
        return int(os.environ.get(name, '0') or 0)

    return (read('TORCHELASTIC_RESTART_COUNT'),
            read('TORCHELASTIC_MAX_RESTARTS'))


def resume_if_elastic(cfg: Config) -> None:
    """Under torchrun with restarts allowed, every start of the worker group
    continues from the newest complete checkpoint in the work directory, as
    ``--resume`` does; with none there it starts as the command line says.

    A process cannot tell a restart from the first start by itself:
    ``TORCHELASTIC_RESTART_COUNT`` counts the restarts of its own node's
    agent only, and a healthy node that restarts because another node failed
    (or because a relaunched node joined) gets 0, so one node would start
    from scratch beside the others. The newest checkpoint is also newer
    than a ``--resume PATH`` or ``load_from`` of the first start. A run that
    had already finished resumes from its last checkpoint and trains
    nothing more. Like ``tools/slurm_train.sh``'s ``--resume``: a new run
    needs a new work directory.
    """
    from mmengine.logging import print_log

    from mmfunmatch.engine.hooks import find_resumable_checkpoint
    count, allowed = elastic_restarts()
    if allowed == 0:
        return
    newest = find_resumable_checkpoint(cfg.work_dir)
    mode = (f'elastic run (torchrun --max-restarts {allowed}, restarts of '
            f'this node so far: {count})')
    if newest is None:
        print_log(f'{mode}: no complete checkpoint in {cfg.work_dir} yet; '
                  f'starting as the command line says.', logger='current')
        return
    print_log(f'{mode}: resuming from the newest complete checkpoint, as '
              f'--resume would: {newest}', logger='current')
    cfg.resume, cfg.load_from = True, newest


def peer_lost(err: BaseException) -> bool:
    """Whether ``err`` comes from a collective whose peer went away."""
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()):
        return False
    if isinstance(err, getattr(dist, 'DistError', ())):
        return True
    text = str(err)
    return any(key in text for key in (
        'Connection closed by peer', 'Connection reset by peer', 'Timed out',
        'timed out', 'Gloo', 'gloo', 'NCCL', 'Broken pipe'))


def train(argv: Optional[List[str]] = None) -> None:
    """``tools/train.py``: check the config, train, and end with an exit code
    a scheduler can act on (:data:`EXIT_CONFIG`, :data:`EXIT_NONFINITE`,
    :data:`EXIT_PEER_LOST`, :data:`EXIT_PREEMPTED`,
    :data:`EXIT_CHECKPOINT_WRITE`)."""
    import sys

    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    from mmfunmatch.apis.validate import ConfigError
    from mmfunmatch.engine.hooks import (CheckpointWriteError,
                                         NonFiniteError, Preempted)
    try:
        cfg = train_config(argv)
        resume_if_elastic(cfg)
        resolve_resume(cfg)
        runner = (RUNNERS.build(cfg) if 'runner_type' in cfg else
                  Runner.from_cfg(cfg))
    except ConfigError as err:
        # The message names the problem and the fix; a traceback adds noise.
        print(f'config error: {err}', file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    try:
        runner.train()
    except ConfigError as err:  # checks that need the built data set
        runner.logger.error(f'config error: {err}')
        sys.exit(EXIT_CONFIG)
    except NonFiniteError as err:
        runner.logger.error(f'training stopped: {err}')
        sys.exit(EXIT_NONFINITE)
    except Preempted as err:
        import time

        from mmengine.dist import get_rank
        message = (
            f'rank {get_rank()}: pre-empted: {err.signal_name} (received by '
            f'rank {err.signal_rank}); stopped after iteration '
            f'{err.iteration} (epoch {runner.epoch + 1}) with checkpoint '
            f'{err.checkpoint}; {time.time() - err.signal_time:.1f} s from '
            f'the signal to exit. Relaunch with --resume to continue from '
            f'it (exit code {EXIT_PREEMPTED}).')
        # Ranks other than 0 log errors only; this is not one.
        if get_rank() == 0:
            runner.logger.warning(message)
        else:
            print(message, file=sys.stderr, flush=True)
        end_distributed_process(EXIT_PREEMPTED)  # every rank got here
        sys.exit(EXIT_PREEMPTED)
    except CheckpointWriteError as err:
        from mmengine.dist import get_rank
        runner.logger.error(f'rank {get_rank()}: training stopped: {err}')
        sys.exit(EXIT_CHECKPOINT_WRITE)
    except Exception as err:
        if not peer_lost(err):
            raise
        from mmengine.dist import get_rank
        last = runner.message_hub.get_info('last_ckpt', None)
        count, allowed = elastic_restarts()
        then = (f'torchrun restarts the processes of every node (this node '
                f'has {allowed - count} of {allowed} restarts left); they '
                f'continue' if count < allowed else
                'Relaunch every node with --resume to continue')
        runner.logger.error(
            f'rank {get_rank()}: lost contact with another rank at iteration '
            f'{runner.iter + 1} (epoch {runner.epoch + 1}): a process or node '
            f'died, hung past env_cfg.dist_cfg.timeout, or the network '
            f'failed ({type(err).__name__}: {str(err).splitlines()[0]}). '
            f'Stopping. {then} from the newest complete checkpoint '
            f'({last or "none yet"}).')
        sys.exit(EXIT_PEER_LOST)
    end_distributed_process(0)


def evaluate(argv: Optional[List[str]] = None) -> dict:
    """``tools/test.py``: evaluate a checkpoint, optionally dump metrics."""
    import json

    from mmengine.runner import Runner
    cfg, out = eval_config(argv)
    runner = Runner.from_cfg(cfg)
    metrics = runner.test()
    if out and runner.rank == 0:
        with open(out, 'w') as f:
            json.dump(metrics, f, indent=1)
    end_distributed_process(0)  # tools/test.py under torchrun: as train()
    return metrics
