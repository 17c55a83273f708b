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

The harder split (students see 10 images per class, the teacher the rest):

    python tools/ablation_study.py --config-dir configs/funmatch/fewshot \
        --settings funmatch same/ic fix/rs label --epochs 20 60 200 \
        --seed-major --work-dir work_dirs/fewshot

trains its teacher with configs/funmatch/fewshot/digits_teacher.py and
writes the split's folders first.
Code: projects/funmatch_paper/ablation.py.
"""
import os.path as osp
import sys

# projects/ is used from the checkout (it is not installed): the repository
# root, the folder above tools/, goes first on the import path.
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from projects.funmatch_paper.ablation import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
