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
optim_wrapper = dict(optimizer={{_base_.student_optimizer}})
param_scheduler = {{_base_.student_param_scheduler}}
train_cfg = dict(by_epoch=True, max_epochs={{_base_.student_epochs}},
                 val_interval=25)
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(interval=100, max_keep_ckpts=1))
