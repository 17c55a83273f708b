# Stage 2, student MobileNetV3-Large (GroupNorm; paper: 76.31 at 1200
# epochs) from the same store as the BiT-R50x1 students.
_base_ = ['../mobilenet_v3_large_gn_bit152x2_imagenet.py']

replay_store = 'data/replay/r152x2_i1k_224'
model = dict(type='ReplayDistiller', store=replay_store)
custom_hooks = [dict(type='ReplayStoreHook')]
