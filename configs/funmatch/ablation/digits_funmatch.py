# Paper ablation (figure 3, docs/method.md) on the digits demo, 'funmatch':
# same/ic plus one uniform mixup shared by teacher and student: function
# matching, identical to the demo config, restated so the ablation table is
# complete. The demo is configs/funmatch/demo/digits_funmatch_student.py.
_base_ = ['../demo/digits_funmatch_student.py']

img_size = {{_base_.img_size}}
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ConsistentView', mode='funmatch', student_size=img_size,
         teacher_sizes=[img_size], scale=(0.35, 1.0), flip_prob=0.0),
    dict(type='PackFunMatchInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
