# A temperature sweep on a small data set from one store (the paper picks T
# per data set from sweeps over T x lr x wd; docs/method.md). Stage 1 labels
# the 300-epoch pets run once, with full fp32 logits (37 classes: 193 bytes
# per view, 3680 x 300 views = 213 MB), so every temperature is exact:
#   python tools/label_teacher.py \
#       configs/funmatch/replay/r50_bit152x2_pets_128px_300_ep_label.py \
#       data/replay/r152x2_pets_128
# Stage 2: r50_bit152x2_pets_128px_300_ep_replay.py, once per T.
#
# A store holds epochs, so this is the pets run as an epoch loop: batch 512,
# 7 steps per epoch (drop_last), 2100 steps instead of the step loop's 2156.
_base_ = ['../r50_bit152x2_pets_128px_300_ep.py']

num_epochs = 300
train_dataloader = dict(
    sampler=dict(_delete_=True, type='DefaultSampler', shuffle=True),
    drop_last=True)
train_cfg = dict(_delete_=True, by_epoch=True, max_epochs=num_epochs,
                 val_interval=15)
default_hooks = dict(checkpoint=dict(by_epoch=True, interval=15))
log_processor = dict(by_epoch=True)
replay_label = dict(epochs=num_epochs, precision='fp32')
