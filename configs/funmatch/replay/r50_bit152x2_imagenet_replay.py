# Stage 2, student BiT-R50x1 at 224 px (paper: 81.54 top-1 at 1200 epochs)
# from the store of r50_bit152x2_imagenet_label.py: no teacher runs. The
# store must come from the same teacher file, views, data, seed, batch and
# number of processes (checked before the first step).
_base_ = ['../r50_bit152x2_imagenet.py']

replay_store = 'data/replay/r152x2_i1k_224'
model = dict(type='ReplayDistiller', store=replay_store)
custom_hooks = [dict(type='ReplayStoreHook')]
