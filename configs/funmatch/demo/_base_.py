# Models and the student schedule shared by the digits demo configs.
# Teacher: a ResNet-18 (CIFAR stem) of width 16 trained from labels on all of
# `train`. Student: a ResNet-18 (CIFAR stem) of width 8, about 4x cheaper,
# trained on the 200-image `train_small` only.
bit_mean = [127.5, 127.5, 127.5]
bit_std = [127.5, 127.5, 127.5]

teacher_model = dict(
    type='ImageClassifier',
    backbone=dict(type='ResNet_CIFAR', depth=18, base_channels=16),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=10, in_channels=128,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0)),
    data_preprocessor=dict(type='ClsDataPreprocessor', mean=bit_mean,
                           std=bit_std, to_rgb=True),
)
student_model = dict(
    type='ImageClassifier',
    backbone=dict(type='ResNet_CIFAR', depth=18, base_channels=8),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=10, in_channels=64,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0)),
    data_preprocessor=dict(type='ClsDataPreprocessor', mean=bit_mean,
                           std=bit_std, to_rgb=True),
)
# Students: same optimizer, schedule and number of steps for both
# (torch AdamW weight_decay = big_vision wd / lr, see adamw_bigvision.py).
student_epochs = 250
student_batch = 32
student_lr = 3e-3
student_wd = 1e-4
student_optimizer = dict(
    type='AdamW', lr=student_lr, betas=(0.9, 0.999), eps=1e-8,
    weight_decay=student_wd / student_lr)
# Linear warm-up for a tenth of the schedule, then cosine to 0 (in epochs,
# stepped every iteration).
student_param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0,
         end=student_epochs // 10, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True,
         begin=student_epochs // 10, end=student_epochs,
         convert_to_iter_based=True),
]
