# Paper ablation (figure 3, docs/method.md) on the digits demo, 'same/ic': the
# teacher sees the student's inception crop (consistent teaching), without
# mixup. The demo's function-matching student
# (configs/funmatch/demo/digits_funmatch_student.py) minus its mixup; the
# other no-mixup rows inherit this file and change only the view mode.
_base_ = ['../demo/digits_funmatch_student.py']

model = dict(data_preprocessor=dict(batch_augments=None))
