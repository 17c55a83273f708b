"""Report on a teacher before distilling from it.

    python tools/teacher_report.py CONFIG [--checkpoint PATH] [--out DIR]

CONFIG is a plain mmpretrain classifier config (then --checkpoint is its
weights), e.g. configs/funmatch/demo/digits_teacher.py, or a
FunMatchDistiller config whose teachers[0] is reported. On the val split:
accuracy, NLL and ECE before and after a fitted temperature, the
label-smoothing fingerprint, the teacher on mixed images and at the
student's resolution, and a one-line verdict with the recommended tau.
Writes DIR/PREFIX.md, .json and PREFIX_*.png (PREFIX: teacher_report)
(code: projects/funmatch_paper/teacher_report.py; the measures:
mmfunmatch/evaluation/calibration.py).
"""
import os.path as osp
import sys

# projects/ is used from the checkout (it is not installed): the repository
# root, the folder above tools/, goes first on the import path.
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from projects.funmatch_paper.teacher_report import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
