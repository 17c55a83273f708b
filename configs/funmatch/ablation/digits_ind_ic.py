# Paper ablation (figure 3, docs/method.md) on the digits demo, 'ind/ic':
# teacher and student draw independent inception crops of the same image.
# Everything else, no mixup included, is the 'same/ic' row (digits_same_ic.py).
_base_ = ['./digits_same_ic.py']

_base_.train_pipeline[1].mode = 'ind/ic'
train_dataloader = dict(dataset=dict(pipeline=_base_.train_pipeline))
