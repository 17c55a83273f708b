# Paper ablation (figure 3, docs/method.md) on the digits demo, 'funmatch':
# same/ic plus one uniform mixup shared by teacher and student. This is the
# demo's function-matching student (configs/funmatch/demo/
# digits_funmatch_student.py) with the view mode named as the table names it
# ('funmatch' is ConsistentView's alias of 'same/ic').
_base_ = ['../demo/digits_funmatch_student.py']

_base_.train_pipeline[1].mode = 'funmatch'
train_dataloader = dict(dataset=dict(pipeline=_base_.train_pipeline))
