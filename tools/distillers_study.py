"""SRD beside KL and BYOT self-distillation on the digits demo, over seeds:
`python tools/distillers_study.py [--seeds 0 1 2] [--jobs 2]`.

Trains, per seed, the demo's FunMatch student with KL alone and with SRD's
feature term, the demo network from labels alone, BYOT on it and the same
auxiliary heads from labels alone (tools/train.py each), reusing the demo's
teachers (--teachers-from, default work_dirs/demo_seeds); writes
WORK_DIR/runs.csv, distillers.md and distillers.png (docs/distillers.md).
Code: projects/funmatch_paper/distillers_study.py.
"""
import os.path as osp
import sys

# projects/ is used from the checkout (it is not installed): the repository
# root, the folder above tools/, goes first on the import path.
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from projects.funmatch_paper.distillers_study import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
