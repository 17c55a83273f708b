# ResNet-50 student with GroupNorm (32 groups) and weight-standardised convs
# instead of BatchNorm, built from mmpretrain's ResNet by config alone:
# mmpretrain builds every conv (stem, units, projections) through
# `conv_cfg`, and mmcv registers `ConvWS` (conv2d_ws: per-output-channel
# mean/std standardisation). 25.56 M parameters with 1000 classes, the same
# as the BatchNorm ResNet-50. The head starts at zero, as the paper's
# students do (uniform predictions on step 0).
# Note: this is the post-activation ResNet-v1 layout; the paper's BiT-R50x1
# student (pre-activation ResNet-v2) is `bit_r50x1_student.py`.
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ResNet',
        depth=50,
        num_stages=4,
        out_indices=(3, ),
        style='pytorch',
        conv_cfg=dict(type='ConvWS'),
        norm_cfg=dict(type='GN', num_groups=32, requires_grad=True)),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=2048,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        init_cfg=dict(type='Constant', layer='Linear', val=0.),
        topk=(1, 5)),
)
