"""Train with MMEngine's runner: `python tools/train.py CONFIG [flags]`.

Flags as MMPretrain's tools/train.py; see mmfunmatch/apis/cli.py.
`--resume` without a path resumes from the newest complete checkpoint in the
work directory (a file cut short by a kill is never picked).
"""
import os.path as osp
import sys

from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmfunmatch.apis.cli import train_config
from mmfunmatch.engine.hooks import (NonFiniteError, find_resumable_checkpoint,
                                     is_complete_checkpoint)

# Exit codes a job scheduler can act on.
EXIT_NONFINITE = 3
EXIT_PEER_LOST = 4


def resolve_resume(cfg) -> None:
    """Pick the checkpoint ``--resume`` continues from."""
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


def _peer_lost(err: BaseException) -> bool:
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


def main() -> None:
    cfg = train_config()
    resolve_resume(cfg)
    runner = (RUNNERS.build(cfg) if 'runner_type' in cfg else
              Runner.from_cfg(cfg))
    try:
        runner.train()
    except NonFiniteError as err:
        runner.logger.error(f'training stopped: {err}')
        sys.exit(EXIT_NONFINITE)
    except Exception as err:
        if not _peer_lost(err):
            raise
        from mmengine.dist import get_rank
        last = runner.message_hub.get_info('last_ckpt', None)
        runner.logger.error(
            f'rank {get_rank()}: lost contact with another rank at iteration '
            f'{runner.iter + 1} (epoch {runner.epoch + 1}): a process or node '
            f'died, hung past env_cfg.dist_cfg.timeout, or the network '
            f'failed ({type(err).__name__}: {str(err).splitlines()[0]}). '
            f'Stopping. Relaunch every node with --resume to continue from '
            f'the newest complete checkpoint ({last or "none yet"}).')
        sys.exit(EXIT_PEER_LOST)


if __name__ == '__main__':
    main()
