# Function matching on a small data set of your own at 128 px (the paper's
# small-data recipe, docs/method.md; big_vision bigsweep_flowers_pet.py and
# bigsweep_food_sun.py): a BiT-M-R152x2 teacher fine-tuned on your classes at
# 128 px -> BiT-R50x1 from scratch, consistent inception crops + flips,
# shared uniform mixup, batch 512, Adam with clipping 1.0, warm-up 1500 steps
# then cosine. The published data sets inherit this file:
# r50_bit152x2_{flowers102,pets,food101,sun397}_128px_*.py.
#
# Set for your data: data_root (configs/_base_/datasets/funmatch_128px.py
# layout), `num_classes`, `num_train_images`, `teacher_checkpoint`.
# T, lr, wd and epochs below are a starting point: the paper's best 100-epoch
# setting for food101 and sun397 (T 10, lr 1e-2, wd 1e-3); the paper swept
# them per data set and schedule length.
#
# Steps, not epochs: big_vision trains for epochs x images / batch steps with
# batches running across epoch boundaries. A small set has fewer images than
# a few batches (flowers102: 1020 images, 1.99 batches of 512), so an epoch
# loop with drop_last would skip up to half the steps. Hence an infinite
# sampler and an iteration loop of exactly that many steps.
_base_ = [
    '../_base_/datasets/funmatch_128px.py',
    '../_base_/schedules/adamw_bigvision.py',
    '../_base_/default_runtime.py',
    '../_base_/models/funmatch_bit_r152x2_r50x1.py',
]

num_classes = 10
num_train_images = 10000
teacher_checkpoint = 'checkpoints/R152x2_T_my_dataset128.npz'

# The paper's pair (the student with its zero head, as on ImageNet); a
# per-dataset config sets the class count and the weight file by name.
model = dict(
    student=dict(num_classes=num_classes),
    teachers=dict(bit=dict(model=dict(num_classes=num_classes),
                           checkpoint=teacher_checkpoint,
                           size=128)),
    distill_loss=dict(tau=10.0))

batch_size = 512
num_epochs = 100
max_iters = num_epochs * num_train_images // batch_size
lr = 1e-2
wd = 1e-3  # big_vision's decoupled decay; torch AdamW takes wd / lr
warmup_iters = 1500

train_dataloader = dict(sampler=dict(type='InfiniteSampler', shuffle=True))
optim_wrapper = dict(
    optimizer=dict(lr=lr, weight_decay=wd / lr),
    clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=False, begin=0,
         end=warmup_iters),
    dict(type='CosineAnnealingLR', eta_min=0.0, by_epoch=False,
         begin=warmup_iters),
]
train_cfg = dict(
    _delete_=True, by_epoch=False, max_iters=max_iters,
    val_interval=max(1, max_iters // 20))
default_hooks = dict(
    logger=dict(interval=100),
    checkpoint=dict(by_epoch=False, interval=5000))
log_processor = dict(by_epoch=False)

auto_scale_lr = dict(base_batch_size=batch_size)
