# Small data sets at 128 px for function matching (flowers102, pets, food101,
# sun397 in the paper; docs/method.md): the ImageNet base
# (imagenet_funmatch.py) with 128 px views, a folder data set and the
# small-data batch; everything else, crops and flips included, is inherited.
# Evaluation is "resize the short side to 160, centre crop 128" (crop_frac
# 128 / 160 = 0.8), done as one centre crop
# rendered at every model's size (at equal sizes: one rendering, shared; a
# teacher with another evaluation crop takes `teacher_crop_fracs`).
#
# Layout: mmpretrain's CustomDataset, one sub-folder per class:
#     data/my_dataset/train/<class>/<image>   (distillation images)
#     data/my_dataset/test/<class>/<image>    (evaluation)
# Class indices are the sorted folder names; they must be the teacher's class
# order. Or give `ann_file` lines "relative/path.jpg <label>" (mmpretrain's
# annotation-file layout) to set the order and the split yourself.
# The published sets use mmpretrain's own dataset classes instead (they read
# the official downloads); see configs/funmatch/r50_bit152x2_*_128px_*.py.
_base_ = ['./imagenet_funmatch.py']

dataset_type = 'CustomDataset'
data_root = 'data/my_dataset'
student_size = 128
teacher_sizes = [128]
eval_crop_frac = 128 / 160

train_pipeline = _base_.train_pipeline
train_pipeline[1].update(student_size=student_size,
                         teacher_sizes=teacher_sizes)
val_pipeline = _base_.val_pipeline
val_pipeline[1].update(student_size=student_size, teacher_sizes=teacher_sizes,
                       crop_frac=eval_crop_frac)

# Per-GPU batch: 64 x 8 GPUs = 512, the paper's batch for small data sets.
train_dataloader = dict(
    batch_size=64,
    dataset=dict(_delete_=True, type=dataset_type, data_root=data_root,
                 data_prefix='train', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=64,
    dataset=dict(_delete_=True, type=dataset_type, data_root=data_root,
                 data_prefix='test', pipeline=val_pipeline))
test_dataloader = val_dataloader
