# Baseline: the demo student trained from the labels of `train_small` alone
# (cross-entropy), with the same crops, optimizer and number of steps as the
# FunMatch student. LabelOnlyStudent keeps the teacher only so that
# validation also reports the student's agreement with it; the teacher never
# runs in its training steps.
_base_ = ['./digits_funmatch_student.py']

model = dict(
    type='LabelOnlyStudent',
    label_loss=dict(type='CrossEntropyLoss', use_soft=True, loss_weight=1.0),
    data_preprocessor=dict(batch_augments=None, num_classes=10),
)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ConsistentView', mode='same/ic',
         student_size={{_base_.img_size}}, scale=(0.35, 1.0), flip_prob=0.0),
    dict(type='PackFunMatchInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
