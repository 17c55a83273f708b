# Paper ablation (figure 3, docs/method.md) on the digits demo, 'fix/cc': the
# teacher sees a fixed central crop, the student a random crop: a fixed target
# for a changing view. No mixup (only the 'funmatch' row mixes). Everything
# else is the demo's function-matching student
# (configs/funmatch/demo/digits_funmatch_student.py).
_base_ = ['../demo/digits_funmatch_student.py']

img_size = {{_base_.img_size}}
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ConsistentView', mode='fix/cc', student_size=img_size,
         teacher_sizes=[img_size], scale=(0.35, 1.0), flip_prob=0.0),
    dict(type='PackFunMatchInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
model = dict(data_preprocessor=dict(batch_augments=None))
