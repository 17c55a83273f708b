# MobileNetV3-Large student with GroupNorm (8 groups) in place of BatchNorm,
# the paper's MobileNet student. mmpretrain's MobileNetV3 takes the norm by
# config: every normalised width of the 'large' arch (16 ... 960) divides by
# 8, and the squeeze-excite layers have no norm, so no new class is needed.
# 5.48 M parameters with 1000 classes (the BatchNorm model has the same count;
# GN keeps no running statistics). Head as in mmpretrain's
# mobilenet_v3_large_imagenet.py, initialisation included: N(0, 0.01) on both
# of its Linear layers, not the zero head of the BiT student. The zero head
# comes from big_vision's BiT student (models/bit_paper.py); big_vision has
# no MobileNetV3, and this project has no source for the paper's MobileNet
# head init. Zeroing this whole head would stall it: a zero hidden layer
# feeds the classifier zeros, and a zero classifier passes the hidden layer
# no gradient. To zero only the classifier (big_vision's convention), the
# last of head.layers would need its own init; StackedLinearClsHead takes
# no per-layer init_cfg.
#
# A named variable, not `model`, so that a distiller config can take it as
# its student beside a base that defines `model`.
mobilenet_v3_large_gn_model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='MobileNetV3',
        arch='large',
        norm_cfg=dict(type='GN', num_groups=8, requires_grad=True)),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='StackedLinearClsHead',
        num_classes=1000,
        in_channels=960,
        mid_channels=[1280],
        dropout_rate=0.2,
        act_cfg=dict(type='HSwish'),
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        init_cfg=dict(
            type='Normal', layer='Linear', mean=0., std=0.01, bias=0.),
        topk=(1, 5)),
)
