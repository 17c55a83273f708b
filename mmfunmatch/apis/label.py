"""The command line of tools/label_teacher.py: write a replay store for a
function-matching config (docs/replay.md)."""
import argparse
import os.path as osp
import sys
from typing import List, Optional

from mmengine.config import Config

import mmfunmatch  # noqa: F401  (registers everything, applies compat)
from mmfunmatch.apis.cli import _common_args, load_config
from mmfunmatch.apis.validate import ConfigError, validate_config
from mmfunmatch.compat import end_distributed_process
from mmfunmatch.models.teacher_spec import teacher_specs
from mmfunmatch.replay.store import PRECISIONS

# Hooks of training that have nothing to do in a labelling run: it trains
# no weights, so there is nothing to checkpoint, guard or compare.
_TRAINING_ONLY_HOOKS = ('checkpoint', 'preemption', 'rank_check', 'nonfinite')


def label_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Run the teachers of a function-matching config on '
        'exactly the views its training draws and store their targets '
        '(a replay store); resumable.')
    _common_args(parser)
    parser.add_argument('store', help='the store folder')
    parser.add_argument('--epochs', type=int,
                        help='epochs to label (default: replay_label.epochs, '
                        'else train_cfg.max_epochs)')
    parser.add_argument('--precision', choices=PRECISIONS,
                        help='stored targets: fp32 (exact), fp16, or topk '
                        '(default: replay_label.precision, else fp32)')
    parser.add_argument('--topk', type=int,
                        help='classes kept per view with precision topk '
                        '(default: replay_label.topk)')
    return parser


def label_config(argv: Optional[List[str]] = None) -> Config:
    """The runner config of a labelling run: the training config with
    :class:`~mmfunmatch.replay.TeacherLabelLoop` as its train loop."""
    parser = label_parser()
    # The store is positional after the config: parse it from the rest.
    args = parser.parse_args(argv)
    cfg = load_config(args)
    if args.work_dir is None:
        cfg.work_dir = osp.join(args.store, 'logs')
    for spec in teacher_specs(cfg.model.get('teachers') or []):
        if not spec.checkpoint:
            raise ConfigError(
                f'{spec.key}.checkpoint is not set: a store of a random '
                f'teacher\'s outputs is worth nothing.')
    # The config's replay_label = dict(epochs, precision, topk), if any;
    # flags override it.
    settings = dict(cfg.get('replay_label') or {})
    unknown = sorted(set(settings) - {'epochs', 'precision', 'topk'})
    if unknown:
        raise ConfigError(f'replay_label has unknown keys {unknown}; it '
                          f'takes epochs, precision and topk.')
    for key in ('epochs', 'precision', 'topk'):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    epochs = settings.get('epochs') or cfg.train_cfg.get('max_epochs')
    if not epochs:
        raise ConfigError('give --epochs (train_cfg has no max_epochs).')
    cfg.train_cfg = dict(type='TeacherLabelLoop', max_epochs=int(epochs),
                         store=args.store,
                         precision=settings.get('precision', 'fp32'),
                         topk=settings.get('topk'))
    cfg.param_scheduler = None
    hooks = dict(cfg.default_hooks)
    for hook in _TRAINING_ONLY_HOOKS:
        hooks.pop(hook, None)
    # mmengine drops a default hook given as None; the others must go.
    hooks['checkpoint'] = None
    cfg.default_hooks = hooks
    validate_config(cfg)
    return cfg


def label(argv: Optional[List[str]] = None) -> None:
    """``tools/label_teacher.py``; exit code 2 for a config or store
    error."""
    from mmengine.runner import Runner
    try:
        cfg = label_config(argv)
        runner = Runner.from_cfg(cfg)
        runner.train()
    except ConfigError as err:
        print(f'config error: {err}', file=sys.stderr)
        sys.exit(2)
    end_distributed_process(0)
