# Stage 1 of the ImageNet recipe from a replay store (docs/replay.md): the
# main recipe (r50_bit152x2_imagenet.py: BiT-R152x2 teacher at 224 px,
# consistent inception crops, mixup, batch 4096) with its teachers run once
# on every view of every epoch:
#   torchrun --nproc-per-node 8 tools/label_teacher.py \
#       configs/funmatch/replay/r50_bit152x2_imagenet_label.py \
#       data/replay/r152x2_i1k_224 --launcher pytorch
# (resumable: rerun the same command). Stage 2 trains any of the students
# from it on the same number of processes and per-process batch:
# r50_bit152x2_imagenet_replay.py (S224), r50_160_bit152x2_224_imagenet_
# replay.py (S160), mobilenet_v3_large_gn_bit152x2_imagenet_replay.py.
#
# Size at 1,281,167 images x 1200 epochs = 1.54e9 views (bytes per view at
# 1000 classes, view fields included): fp32 4045 B -> 6.2 TB; fp16 2045 B
# -> 3.1 TB; top-10 87 B -> 134 GB (top-k keeps the 10 most probable
# classes exactly and spreads the rest evenly: an approximation of the
# teacher's tail, see docs/replay.md).
_base_ = ['../r50_bit152x2_imagenet.py']

replay_label = dict(epochs=1200, precision='fp16')
