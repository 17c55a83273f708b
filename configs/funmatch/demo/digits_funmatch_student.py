# Function matching on the demo: the student sees only `train_small`'s
# images (labels unused) and matches the teacher on consistent inception
# crops with shared uniform mixup.
_base_ = ['./digits_label_student.py']

teacher_checkpoint = 'work_dirs/demo/teacher/epoch_20.pth'
img_size = {{_base_.img_size}}

model = dict(
    _delete_=True,
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
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=val_pipeline))
test_dataloader = val_dataloader
val_evaluator = [
    dict(type='Accuracy', topk=(1, )),
    dict(type='TeacherAgreement'),
]
test_evaluator = val_evaluator
