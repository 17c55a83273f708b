"""Epochs Shampoo needs on the digits demo to match AdamW's final accuracy.

    python tools/shampoo_epochs.py [--epochs 31 62 125 250] [--seeds 0]
        [--teacher work_dirs/demo/teacher/epoch_20.pth] [--jobs 2]
        [--work-dir work_dirs/shampoo_epochs]

Trains the demo's FunMatch student with AdamW and with Shampoo (the configs
differ in the optimizer only) at every schedule length and seed through
tools/train.py, the two optimizers of one length side by side. Writes
WORK_DIR/shampoo_epochs_runs.csv, shampoo_epochs_val_top1.png (final val
top-1 against schedule length, and the curves of the longest runs),
shampoo_epochs_train_loss.png, shampoo_epochs.md (mean +- std per cell) and
shampoo_epochs_summary.md (the epochs Shampoo needed and the ratio).
Rerunning skips finished runs. Library: mmfunmatch/apis/shampoo_epochs.py.
"""
import argparse
import sys
from typing import List, Optional

from mmfunmatch.apis.shampoo_epochs import run_shampoo_epochs


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/shampoo_epochs')
    parser.add_argument('--data-root', default='data/digits')
    parser.add_argument('--epochs', type=int, nargs='+',
                        default=[31, 62, 125, 250],
                        help='schedule lengths; the longest is AdamW\'s '
                        'reference (default 31 62 125 250, the demo\'s)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0])
    parser.add_argument('--teacher', help='teacher checkpoint to reuse (e.g. '
                        'the demo\'s); trained with the demo teacher config '
                        'when omitted')
    parser.add_argument('--jobs', type=int, default=2)
    parser.add_argument('--val-points', type=int, default=10)
    parser.add_argument('--md', help='per-cell table path (default '
                        'WORK_DIR/shampoo_epochs.md)')
    parser.add_argument('--dry-run', action='store_true')
    args = parser.parse_args(argv)
    result = run_shampoo_epochs(args.work_dir, args.data_root, args.epochs,
                                args.seeds, args.teacher, args.jobs,
                                args.val_points, args.md, args.dry_run)
    if 'summary' in result:
        print('\n' + result['summary'])
        for key, path in result['paths'].items():
            print(f'  {key}: {path}')
    return 1 if result.get('failed') else 0


if __name__ == '__main__':
    sys.exit(main())
