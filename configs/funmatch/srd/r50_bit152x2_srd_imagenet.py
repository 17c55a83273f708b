# The paper's main pair (BiT-R152x2 teacher at 224 px -> BiT-R50x1 student,
# ../r50_bit152x2_imagenet.py) with SRD's feature term beside the KL term
# (Miles & Mikolajczyk, AAAI 2024): a trainable linear projector from the
# student's 2048 penultimate features to the teacher's 4096, the teacher's
# features batch-normalised without affine parameters, distance
# log(sum |p(s) - bn(t)|^exponent), weight 2 beside KL of weight 1
# (torchdistill's SRDLoss). Features are read at the input of each model's
# classifier (timm's head.fc) in the forward passes that give the logits,
# on the same crop and mixup. No published number for this pair: SRD's own
# ImageNet results use other students (e.g. DeiT-Ti 77.2 %).
# With several teachers (e.g. ../r50_bit152x2_ens224_384_imagenet.py plus
# this feature_loss) SRDLoss keeps one projector per teacher and averages
# the per-teacher terms.
_base_ = ['../r50_bit152x2_imagenet.py']

model = dict(
    feature_loss=dict(type='SRDLoss', student_channels=2048,
                      teacher_channels=4096, exponent=1.0, loss_weight=2.0))
