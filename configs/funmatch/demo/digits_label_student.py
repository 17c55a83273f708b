# Baseline: the demo student trained from the labels of `train_small` alone,
# with the same crops, optimizer and number of steps as the FunMatch student.
_base_ = [
    '../../_base_/datasets/digits.py',
    '../../_base_/schedules/adamw_bigvision.py',
    '../../_base_/default_runtime.py',
    './_base_.py',
]
model = {{_base_.student_model}}

train_dataloader = dict(
    batch_size={{_base_.student_batch}},
    dataset=dict(data_prefix='train_small'))
optim_wrapper = dict(
    optimizer=dict(lr={{_base_.student_lr}},
                   weight_decay=1e-4 / {{_base_.student_lr}}))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=False, begin=100),
]
train_cfg = dict(by_epoch=True, max_epochs={{_base_.student_epochs}},
                 val_interval=25)
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(interval=100, max_keep_ckpts=1))
