# Stage 2, student BiT-R50x1 at 160 px (paper: 79.61 at 1200 epochs) from
# the same store as the 224 px student: the student re-renders each stored
# crop at its own size (one store serves any student size and architecture).
_base_ = ['../r50_160_bit152x2_224_imagenet.py']

replay_store = 'data/replay/r152x2_i1k_224'
model = dict(type='ReplayDistiller', store=replay_store)
custom_hooks = [dict(type='ReplayStoreHook')]
