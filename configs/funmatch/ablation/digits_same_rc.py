# Paper ablation (figure 3, docs/method.md) on the digits demo, 'same/rc':
# the teacher sees the student's random crop.
# Everything else, no mixup included, is the 'same/ic' row (digits_same_ic.py).
_base_ = ['./digits_same_ic.py']

_base_.train_pipeline[1].mode = 'same/rc'
train_dataloader = dict(dataset=dict(pipeline=_base_.train_pipeline))
