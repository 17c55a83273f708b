# Function matching on ImageNet from an ensemble teacher: the mean of the
# logits of BiT-M-R152x2 at 224 px and at 384 px (the paper's ensemble) ->
# BiT-R50x1 at 224 px. Both teachers see the student's crop, each at its own
# size. Everything else is the main config (r50_bit152x2_imagenet.py).
#
# Paper, student top-1 (%):
#     1200 ep 82.12 | 4800 ep 82.71 | 9600 ep 82.82
# (this file: 1200 epochs; set train_cfg.max_epochs for the others).
# Evaluation: the student gets the 224/256 centre crop at 224 px, as in the
# paper; each teacher its own published view: the 224 px one the same
# 224/256 crop (timm crop_pct 0.875), the 384 px one the whole-image centre
# square (crop 1.0) at 384 px (teacher_crop_fracs below). So val top-1 is
# the student's on its 224/0.875 view, and the teacher agreement / KL
# compare the student's prediction on that view with the ensemble of each
# teacher's prediction on its own view.
# teacher_combine: 'mean_logits' is the paper's ensemble; 'mean_probs'
# averages the probabilities; 'sum_kl' sums one KL per teacher (big_vision's
# multi-teacher loss).
_base_ = ['./r50_bit152x2_imagenet.py']

teacher_checkpoint_384 = ('checkpoints/resnetv2_152x2_bit.goog_teacher_in21k_'
                          'ft_in1k_384.safetensors')
teacher_sizes = [224, 384]

# The base's 224 px teacher ('bit') stays; the 384 px one is added after it
# (teacher order = teacher_sizes order).
model = dict(
    teachers=dict(bit384=dict(
        model={{_base_.bit_r152x2_teacher_model}},
        checkpoint=teacher_checkpoint_384,
        mean={{_base_.bit_teacher_mean}},
        std={{_base_.bit_teacher_std}},
        size=384)),
    teacher_combine='mean_logits')

_base_.train_pipeline[1].teacher_sizes = teacher_sizes
_base_.val_pipeline[1].update(teacher_sizes=teacher_sizes,
                              teacher_crop_fracs=[224 / 256, 1.0])
train_dataloader = dict(dataset=dict(pipeline=_base_.train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=_base_.val_pipeline))
test_dataloader = val_dataloader
