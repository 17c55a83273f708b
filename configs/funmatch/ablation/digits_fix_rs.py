# Ablation (docs/method.md, fig. 3) on the digits demo, 'fix/rs': teacher
# and student both see the whole image resized to the input size (no crop, no
# flip), so the teacher's target for an image never changes. No mixup (only the
# 'funmatch' row mixes). Everything else is the demo's function-matching
# student (configs/funmatch/demo/digits_funmatch_student.py).
_base_ = ['../demo/digits_funmatch_student.py']

img_size = {{_base_.img_size}}
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ConsistentView', mode='fix/rs', student_size=img_size,
         teacher_sizes=[img_size], scale=(0.35, 1.0), flip_prob=0.0),
    dict(type='PackFunMatchInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
model = dict(data_preprocessor=dict(batch_augments=None))
