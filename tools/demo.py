"""The digits demo: `python tools/demo.py [--work-dir DIR] [--data-root DIR]`.

Writes the digits image folder, trains a teacher from labels, a FunMatch
student and a label-only student (same architecture, steps, crops) with
tools/train.py, then prints the result table and writes
WORK_DIR/results.md and WORK_DIR/demo_curves.png.
"""
import argparse
import time

from mmfunmatch.apis.demo import run_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--data-root', default='data/digits')
    parser.add_argument('--epochs', type=int,
                        help='student epochs (default: the configs)')
    parser.add_argument('--teacher-epochs', type=int)
    args = parser.parse_args()
    start = time.time()
    table = run_demo(args.work_dir, args.data_root, args.epochs,
                     args.teacher_epochs)
    print('\n' + table)
    print(f'\ntotal wall time: {time.time() - start:.0f} s; curves: '
          f'{args.work_dir}/demo_curves.png')


if __name__ == '__main__':
    main()
