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
import os.path as osp
import sys

# projects/ is used from the checkout (it is not installed): the repository
# root, the folder above tools/, goes first on the import path.
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from projects.funmatch_paper.demo import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
