# The harder split, in the manner of the paper's flowers102
# setting (teacher strong, student data tiny): students see the 100 images of
# `train_few10` (10 per class), the teacher is trained from the labels of the
# other 1,197 `train` images (`train_rest10`); both are disjoint from the 500
# `val` images (projects/funmatch_paper/digits.py, write_fewshot; written by
# `python tools/prepare_digits.py data/digits --few-per-class 10`).
few_prefix = 'train_few10'
teacher_prefix = 'train_rest10'
fewshot_teacher = 'work_dirs/fewshot/teacher/epoch_20.pth'
