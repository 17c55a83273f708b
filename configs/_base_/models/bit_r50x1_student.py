# The paper's student: BiT-R50x1 (pre-activation ResNet-v2, GroupNorm 32,
# weight-standardised convs; 25.5 M parameters, 4.2 GMACs at 224 px) from
# timm through mmpretrain's TimmClassifier. Nothing is downloaded
# (pretrained=False); to start from weights set FunMatchDistiller's
# `student_checkpoint` (.safetensors, .pth, or a big_vision .npz such as
# R50x1_224.npz).
# Initialisation: the head starts at zero, as big_vision's student
# (models/bit_paper.py: zero head kernel and bias), so the first predictions
# are uniform; every other layer keeps timm's creation-time init.
# FunMatchTimmClassifier (mmfunmatch/models/bit.py) is TimmClassifier with
# init_cfg applied after timm's init instead of before it (TimmClassifier's
# init_weights would re-draw the head as N(0, 0.01) and zero each unit's last
# conv); the `TimmHead` init addresses timm's classifier layer.
# timm's published student (resnetv2_50x1_bit.goog_distilled_in1k) expects
# inputs scaled to [-1, 1], i.e. mean = std = 127.5 on 0-255 RGB, bicubic.
bit_student_mean = [127.5, 127.5, 127.5]
bit_student_std = [127.5, 127.5, 127.5]

model = dict(
    type='FunMatchTimmClassifier',
    model_name='resnetv2_50x1_bit',
    pretrained=False,
    num_classes=1000,
    loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
    init_cfg=dict(type='TimmHead', val=0., bias=0.),
)
