# The paper's student: BiT-R50x1 (pre-activation ResNet-v2, GroupNorm 32,
# weight-standardised convs; 25.5 M parameters, 4.2 GMACs at 224 px) from
# timm through mmpretrain's TimmClassifier. Nothing is downloaded
# (pretrained=False); to start from weights set FunMatchDistiller's
# `student_checkpoint` (.safetensors, .pth, or a big_vision .npz such as
# R50x1_224.npz).
# Caveats: timm initialises the head with N(0, 0.01), not zeros as
# big_vision does; TimmClassifier's init_weights re-runs timm's own init
# after any init_cfg, so a zero head cannot be set from here.
# timm's published student (resnetv2_50x1_bit.goog_distilled_in1k) expects
# inputs scaled to [-1, 1], i.e. mean = std = 127.5 on 0-255 RGB, bicubic.
bit_student_mean = [127.5, 127.5, 127.5]
bit_student_std = [127.5, 127.5, 127.5]

model = dict(
    type='TimmClassifier',
    model_name='resnetv2_50x1_bit',
    pretrained=False,
    num_classes=1000,
    loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
)
