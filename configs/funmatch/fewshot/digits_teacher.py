# The demo teacher trained on `train_rest10` only (never on a student image).
_base_ = ['../demo/digits_teacher.py', './_base_.py']

train_dataloader = dict(dataset=dict(data_prefix=_base_.teacher_prefix))
