"""Command-line plumbing shared by tools/train.py and tools/test.py.

The flags are MMPretrain's (``--work-dir``, ``--resume [PATH]``, ``--amp``,
``--cfg-options``, ``--launcher``); the differences: ``--amp`` keeps any
optimizer type (Shampoo included) and refuses to run where AMP cannot,
``mmfunmatch`` is always imported so configs need no ``custom_imports``, and
the config is checked (:func:`validate_config`) and trained by
:class:`CheckedRunner`, which checks what needs the built data set.
"""
import argparse
import os
import os.path as osp
from typing import List, Optional

from mmengine.config import Config, DictAction

import mmfunmatch  # noqa: F401  (registers everything, applies compat)
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


def test_parser() -> argparse.ArgumentParser:
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


def test_config(argv: Optional[List[str]] = None):
    """The runner config and output path for ``tools/test.py``."""
    args = test_parser().parse_args(argv)
    cfg = load_config(args)
    cfg.load_from = args.checkpoint
    cfg.resume = False
    return cfg, args.out
