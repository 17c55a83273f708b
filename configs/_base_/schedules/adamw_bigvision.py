# big_vision's distillation optimizer in torch terms (docs/method.md):
# global-norm clipping at 1.0, Adam(0.9, 0.999, eps 1e-8), weight decay on
# conv/linear weights only, decoupled and NOT multiplied by the lr. torch's
# AdamW multiplies its weight_decay by the lr, so weight_decay = wd / lr
# (ImageNet: 3e-4 / 0.03 = 0.01). Norm scales and biases are not decayed
# (FunMatchOptimWrapperConstructor). Linear warm-up, then cosine to 0.
#
# The warm-up is in steps, the loop in epochs, so a short run (a smoke test,
# a small data set) can end before the warm-up does. tools/train.py stops
# such a run before its first step, naming the warm-up, the run length and
# param_scheduler.0.end / param_scheduler.1.begin; `fit_warmup = 0.1` (or
# `--cfg-options fit_warmup=0.1`) shortens a warm-up that does not fit to
# that fraction of the run instead (mmfunmatch/apis/validate.py).
lr = 0.03
wd = 3e-4
warmup_iters = 5000

optim_wrapper = dict(
    type='OptimWrapper',
    constructor='FunMatchOptimWrapperConstructor',
    optimizer=dict(
        type='AdamW', lr=lr, betas=(0.9, 0.999), eps=1e-8,
        weight_decay=wd / lr),
    clip_grad=dict(max_norm=1.0),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=False, begin=0,
         end=warmup_iters),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=False,
         begin=warmup_iters),
]
train_cfg = dict(by_epoch=True, max_epochs=1200, val_interval=10)
val_cfg = dict()
test_cfg = dict()
