"""The digits demo: `python tools/demo.py [--seeds S ...] [--work-dir DIR]`.

Writes the digits image folder, trains a teacher from labels, a FunMatch
student and a label-only student (same architecture, steps, crops) with
tools/train.py, printing a line per validation, then prints the result table
and writes WORK_DIR/results.md, results.csv and demo_curves.png.

With several seeds (`--seeds 0 1 2`) it trains all three models per seed in
WORK_DIR/seed<S>/ (default work_dirs/demo_seeds; finished runs are kept, so
an interrupted study continues) and prints mean +- std over the seeds; that
table and docs/demo_seeds.csv are the reference the one-seed demo compares
itself with.
"""
import argparse
import time

from mmfunmatch.apis.demo import run_demo, run_seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', help='default work_dirs/demo, or '
                        'work_dirs/demo_seeds with several seeds')
    parser.add_argument('--data-root', default='data/digits')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0])
    parser.add_argument('--epochs', type=int,
                        help='student epochs (default: the configs)')
    parser.add_argument('--teacher-epochs', type=int)
    args = parser.parse_args()
    start = time.time()
    if len(args.seeds) == 1:
        work_dir = args.work_dir or 'work_dirs/demo'
        table = run_demo(work_dir, args.data_root, args.epochs,
                         args.teacher_epochs, seed=args.seeds[0])
        print('\n' + table)
        print(f'\ncurves: {work_dir}/demo_curves.png')
    else:
        work_dir = args.work_dir or 'work_dirs/demo_seeds'
        table = run_seeds(args.seeds, work_dir, args.data_root, args.epochs,
                          args.teacher_epochs)
        print('\n' + table)
        print(f'\nper run: {work_dir}/runs.csv')
    print(f'total wall time: {time.time() - start:.0f} s')


if __name__ == '__main__':
    main()
