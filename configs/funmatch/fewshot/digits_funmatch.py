# The ablation's 'funmatch' setting (../ablation/digits_funmatch.py) on the harder split.
_base_ = ['../ablation/digits_funmatch.py', './_base_.py']

_base_.model.teachers[0].checkpoint = _base_.fewshot_teacher
model = dict(teachers=_base_.model.teachers)
train_dataloader = dict(dataset=dict(data_prefix=_base_.few_prefix))
