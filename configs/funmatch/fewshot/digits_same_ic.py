# The ablation's 'same/ic' setting (../ablation/digits_same_ic.py) on the harder split.
_base_ = ['../ablation/digits_same_ic.py', './_base_.py']

_base_.model.teachers[0].checkpoint = _base_.fewshot_teacher
model = dict(teachers=_base_.model.teachers)
train_dataloader = dict(dataset=dict(data_prefix=_base_.few_prefix))
