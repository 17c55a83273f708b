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
Rerunning skips finished runs. Code: projects/funmatch_paper/shampoo_epochs.py.
"""
import os.path as osp
import sys

# projects/ is used from the checkout (it is not installed): the repository
# root, the folder above tools/, goes first on the import path.
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from projects.funmatch_paper.shampoo_epochs import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
