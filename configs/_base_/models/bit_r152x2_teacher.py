# The paper's teacher: BiT-M-R152x2 (pre-activation ResNet-v2, GroupNorm 32,
# weight-standardised convs; 236 M parameters), ImageNet-21k pretrained and
# fine-tuned, from timm through mmpretrain's TimmClassifier.
#
# Use in a distillation config (teachers are entries of FunMatchDistiller):
#     _base_ = [..., '../_base_/models/bit_r152x2_teacher.py']
#     model = dict(..., teachers=dict(bit={{_base_.bit_r152x2_teacher}}))
# or build your own entry from `bit_r152x2_teacher_model`,
# `bit_teacher_mean` and `bit_teacher_std`.
#
# Normalisation: the published checkpoints expect RGB in [-1, 1], i.e.
# mean = std = 127.5 on 0-255 pixels (timm: mean = std = 0.5), bicubic
# resizing. The distiller applies a teacher's own mean/std to its own copy of
# the shared crop, so the student may be normalised differently.
#
# Weights (download them yourself; nothing is fetched at run time). Either:
# - timm: resnetv2_152x2_bit.goog_teacher_in21k_ft_in1k (224 px, 82.92 top-1)
#   and ..._in1k_384 (384 px, 83.86), saved as .safetensors;
# - big_vision: R152x2_T_224.npz and the per-dataset R152x2_T_<data>128.npz
#   (both .npz layouts load; see mmfunmatch/models/bit.py).
# The paths below are placeholders: a missing file stops the build with a
# FileNotFoundError instead of distilling from a random teacher.
bit_teacher_mean = [127.5, 127.5, 127.5]
bit_teacher_std = [127.5, 127.5, 127.5]

bit_r152x2_teacher_model = dict(
    type='TimmClassifier',
    model_name='resnetv2_152x2_bit',
    pretrained=False,
    num_classes=1000,
)

bit_r152x2_teacher = dict(
    model=bit_r152x2_teacher_model,
    checkpoint='checkpoints/resnetv2_152x2_bit.goog_teacher_in21k_ft_in1k'
    '.safetensors',
    mean=bit_teacher_mean,
    std=bit_teacher_std,
    size=224,
)
bit_r152x2_teacher_384 = dict(
    model=bit_r152x2_teacher_model,
    checkpoint='checkpoints/resnetv2_152x2_bit.goog_teacher_in21k_ft_in1k_384'
    '.safetensors',
    mean=bit_teacher_mean,
    std=bit_teacher_std,
    size=384,
)
