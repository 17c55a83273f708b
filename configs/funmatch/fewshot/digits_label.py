# The label-only baseline (../demo/digits_label_student.py: cross-entropy on
# the students' images, same crops, optimizer and steps) on the harder split.
_base_ = ['../demo/digits_label_student.py', './_base_.py']

_base_.model.teachers[0].checkpoint = _base_.fewshot_teacher
model = dict(teachers=_base_.model.teachers)
train_dataloader = dict(dataset=dict(data_prefix=_base_.few_prefix))
