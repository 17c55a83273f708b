# The demo's teacher: trained from labels on all 1,297 `train` images.
_base_ = [
    '../../_base_/datasets/digits.py',
    '../../_base_/schedules/adamw_bigvision.py',
    '../../_base_/default_runtime.py',
    './_base_.py',
]
model = {{_base_.teacher_model}}

lr = 3e-3
optim_wrapper = dict(optimizer=dict(lr=lr, weight_decay=1e-4 / lr))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=2,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=True, begin=2,
         end=20, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=20, val_interval=10)
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=20, max_keep_ckpts=1))
