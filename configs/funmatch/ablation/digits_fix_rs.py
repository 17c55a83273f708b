# Paper ablation (figure 3, docs/method.md) on the digits demo, 'fix/rs':
# teacher and student both see the whole image resized to the input size (no
# crop, no flip), so the teacher's target for an image never changes.
# Everything else, no mixup included, is the 'same/ic' row (digits_same_ic.py).
_base_ = ['./digits_same_ic.py']

_base_.train_pipeline[1].mode = 'fix/rs'
train_dataloader = dict(dataset=dict(pipeline=_base_.train_pipeline))
