# Function matching on the demo: the student sees only the 200 images of
# `train_small` (labels unused except for monitoring) and matches the
# teacher on consistent inception crops with shared uniform mixup.
_base_ = [
    '../../_base_/datasets/digits.py',
    '../../_base_/schedules/adamw_bigvision.py',
    '../../_base_/default_runtime.py',
    './_base_.py',
]

teacher_checkpoint = 'work_dirs/demo/teacher/epoch_20.pth'
img_size = {{_base_.img_size}}

model = dict(
    type='FunMatchDistiller',
    student={{_base_.student_model}},
    teachers=[
        dict(model={{_base_.teacher_model}},
             checkpoint=teacher_checkpoint,
             mean={{_base_.bit_mean}}, std={{_base_.bit_std}},
             size=img_size),
    ],
    distill_loss=dict(type='KLDivergenceT', tau=1.0),
    data_preprocessor=dict(
        type='FunMatchDataPreprocessor',
        mean={{_base_.bit_mean}}, std={{_base_.bit_std}},
        batch_augments=dict(type='UniformMixup')),
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ConsistentView', mode='same/ic', student_size=img_size,
         teacher_sizes=[img_size], scale=(0.35, 1.0), flip_prob=0.0),
    dict(type='PackFunMatchInputs'),
]
val_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ConsistentView', mode='eval', student_size=img_size,
         teacher_sizes=[img_size], crop_frac=1.0),
    dict(type='PackFunMatchInputs'),
]
train_dataloader = dict(
    batch_size={{_base_.student_batch}},
    dataset=dict(data_prefix='train_small', pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=val_pipeline))
test_dataloader = val_dataloader
val_evaluator = [
    dict(type='Accuracy', topk=(1, )),
    dict(type='TeacherAgreement'),
]
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer={{_base_.student_optimizer}})
param_scheduler = {{_base_.student_param_scheduler}}
train_cfg = dict(by_epoch=True, max_epochs={{_base_.student_epochs}},
                 val_interval=25)
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(interval=100, max_keep_ckpts=1))
