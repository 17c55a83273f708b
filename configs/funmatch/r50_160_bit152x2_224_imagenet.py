# Cross-resolution function matching on ImageNet: teacher BiT-M-R152x2 at
# 224 px, student BiT-R50x1 at 160 px. One crop per image, rendered at 224 for
# the teacher and 160 for the student (never a crop of a resized image).
# Everything else is the main config (r50_bit152x2_imagenet.py).
#
# Paper, student top-1 (%): 300 ep 78.17 | 1200 ep 79.61 | 9600 ep 80.49
# (this file: 1200 epochs; set train_cfg.max_epochs for the others).
# Evaluation: the 224/256 centre crop, seen at 160 px by the student and at
# 224 px by the teacher.
_base_ = ['./r50_bit152x2_imagenet.py']

student_size = 160
_base_.train_pipeline[1].student_size = student_size
_base_.val_pipeline[1].student_size = student_size
train_dataloader = dict(dataset=dict(pipeline=_base_.train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=_base_.val_pipeline))
test_dataloader = val_dataloader
