# Paper ablation (figure 3, docs/method.md) on the digits demo, 'fix/cc':
# the teacher sees a fixed central crop, the student a random crop: a fixed
# target for a changing view.
# Everything else, no mixup included, is the 'same/ic' row (digits_same_ic.py).
_base_ = ['./digits_same_ic.py']

_base_.train_pipeline[1].mode = 'fix/cc'
train_dataloader = dict(dataset=dict(pipeline=_base_.train_pipeline))
