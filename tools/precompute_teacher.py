"""Store the teacher's mean prediction over many inception crops per image.

    python tools/precompute_teacher.py CONFIG OUT [--num-crops 1024] [--seed S]
        [--batch-size 256] [--save-every 1000] [--max-images N]
        [--device cuda] [--cfg-options k=v ...]

The target of the paper's ``fix/ic_ens`` ablation baseline, written to OUT
for ``StoredTeacherDataset``; resumable (rerun the same command). Crop
settings, cost and format: projects/funmatch_paper/precompute_teacher.py.
"""
import os.path as osp
import sys

# projects/ is used from the checkout (it is not installed): the repository
# root, the folder above tools/, goes first on the import path.
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from projects.funmatch_paper.precompute_teacher import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
