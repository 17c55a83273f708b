"""The paper's figure-3 ablation on the digits demo.

    python tools/ablation_study.py [--teacher CKPT] [--seeds 0 1 2]
        [--epochs 30 150] [--jobs 2] [--work-dir work_dirs/ablation]

Trains the same student from the same teacher with every setting
(fix/rs, fix/cc, fix/ic_ens, ind/rc, ind/ic, same/rc, same/ic, funmatch;
configs/funmatch/ablation/digits_*.py) for every seed and schedule length
with tools/train.py, then writes WORK_DIR/ablation_runs.csv (one row per run),
ablation_val_top1.png, ablation_train_loss.png and the mean +- std table
(WORK_DIR/ablation.md, or --md). Rerunning skips finished runs and continues
unfinished ones. Defaults: about an hour on 2 idle CPU cores (see
docs/ablation.md); --dry-run prints the plan and the estimate only.
Library: mmfunmatch/apis/ablation.py.
"""
import argparse
import sys
import time
from typing import List, Optional

from mmfunmatch.apis.ablation import SETTINGS, Study, config_path


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Run the paper\'s figure-3 ablation on the digits demo.')
    parser.add_argument('--work-dir', default='work_dirs/ablation')
    parser.add_argument('--data-root', default='data/digits')
    parser.add_argument(
        '--settings', nargs='+', default=list(SETTINGS),
        help='setting names (fix/rs ... funmatch) or ablation config paths '
        '(default: all eight)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--epochs', type=int, nargs='+', default=[30, 150],
                        help='schedule lengths (default 30 150)')
    parser.add_argument('--teacher', help='teacher checkpoint to reuse (e.g. '
                        'work_dirs/demo/teacher/epoch_20.pth); trained with '
                        'the demo teacher config when omitted')
    parser.add_argument('--teacher-epochs', type=int,
                        help='shorten the teacher\'s schedule')
    parser.add_argument('--jobs', type=int, default=2,
                        help='runs in parallel (default 2)')
    parser.add_argument('--threads', type=int,
                        help='torch threads per run (default cores / jobs)')
    parser.add_argument('--ens-crops', type=int,
                        help='crops per image for fix/ic_ens (default: the '
                        'config\'s, 1024 as in the paper)')
    parser.add_argument('--val-points', type=int, default=5,
                        help='validations per run (default 5)')
    parser.add_argument('--num-workers', type=int, default=1)
    parser.add_argument('--md', help='markdown table path (default '
                        'WORK_DIR/ablation.md)')
    parser.add_argument('--dry-run', action='store_true',
                        help='print the plan and time estimate, run nothing')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='key=value settings added to every student run')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    configs = [s if s.endswith('.py') else config_path(s)
               for s in args.settings]
    study = Study(args.work_dir, args.data_root, configs, seeds=args.seeds,
                  epochs=args.epochs, teacher=args.teacher,
                  teacher_epochs=args.teacher_epochs, jobs=args.jobs,
                  threads=args.threads, ens_crops=args.ens_crops,
                  val_points=args.val_points, num_workers=args.num_workers,
                  cfg_options=args.cfg_options, md_path=args.md)
    start = time.time()
    result = study.run(dry_run=args.dry_run)
    if args.dry_run:
        for name in result['planned']:
            print(f'  {name}')
        return 0
    print(f'[ablation] trained {len(result["executed"])} runs in '
          f'{(time.time() - start) / 60:.1f} min; '
          f'{len(result["rows"])} finished runs in the table.')
    for key, path in result['paths'].items():
        print(f'  {key}: {path}')
    return 1 if result['failed'] else 0


if __name__ == '__main__':
    sys.exit(main())
