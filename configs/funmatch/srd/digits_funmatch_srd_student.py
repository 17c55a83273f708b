# The demo's FunMatch student with SRD's feature term beside the KL term
# (SRDLoss, mmfunmatch/models/losses/srd_loss.py): the width-8 student's 64
# penultimate features go through a trainable linear projector to the
# width-16 teacher's 128, which are batch-normalised (no affine); distance
# log(sum |p(s) - bn(t)|), weight 2 beside KL of weight 1 (torchdistill's
# SRDLoss). Same teacher, images, views, mixup, optimizer and steps as
# ../demo/digits_funmatch_student.py; `python tools/distillers_study.py`
# compares the two (docs/distillers.md).
_base_ = ['../demo/digits_funmatch_student.py']

model = dict(
    feature_loss=dict(type='SRDLoss', student_channels=64,
                      teacher_channels=128, exponent=1.0, loss_weight=2.0))
