# ImageNet-1k for function matching (docs/method.md): every model sees the same
# crop of the decoded image, each at its own input size.
#
# Layout: mmpretrain's ImageNet (`type='ImageNet'`), edit `data_root` only:
#     data/imagenet/train/n01440764/n01440764_10026.JPEG ...
#     data/imagenet/val/n01440764/ILSVRC2012_val_00000293.JPEG ...
#     data/imagenet/meta/train.txt, meta/val.txt   (optional, "path label")
# mmpretrain reads meta/<split>.txt when it exists, else the class folders
# (sorted wnids = the standard class order that the timm/big_vision
# teachers use). A flat val folder needs meta/val.txt.
#
# Train: inception crop (5-100 % of the area, aspect 3/4-4/3) and a flip,
# drawn ONCE per image and rendered at `student_size` for the student and at
# each of `teacher_sizes` for the teachers (decode once, crop once). A
# teacher of the student's size reads the student's rendering (one array,
# packed and transferred once; each model still gets its own mean/std).
#
# Val: "resize the short side to 256, centre crop 224" for every model.
# ConsistentView(mode='eval', crop_frac=0.875) cuts the central square of
# side 0.875 x short side from the original image and resizes it to each
# model's size. For the 224 px model this is the same region at the same
# scale as resize-256/crop-224 (224 / 256 = 0.875), up to the rounding of
# the box (about one source pixel): square images give identical pixels,
# others differ by a sub-pixel offset, 3-4 grey levels on average on a
# textured photograph (tests/test_configs.py). A 160 or 384 px model sees
# that same region at its own size, rendered from the original image, unless
# `teacher_crop_fracs` gives a teacher its own centre crop (the 384 px
# teacher configs use 1.0, its published whole-image evaluation).
dataset_type = 'ImageNet'
data_root = 'data/imagenet'
student_size = 224
teacher_sizes = [224]
eval_crop_frac = 224 / 256

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='ConsistentView',
        mode='same/ic',
        student_size=student_size,
        teacher_sizes=teacher_sizes,
        scale=(0.05, 1.0),
        ratio=(3. / 4., 4. / 3.),
        flip_prob=0.5),
    dict(type='PackFunMatchInputs'),
]
val_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='ConsistentView',
        mode='eval',
        student_size=student_size,
        teacher_sizes=teacher_sizes,
        crop_frac=eval_crop_frac),
    dict(type='PackFunMatchInputs'),
]

# Per-GPU batch: 128 x 32 GPUs = 4096, the paper's batch (see the main
# config for fewer GPUs).
train_dataloader = dict(
    batch_size=128,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    # Mixup pairs neighbours: a batch of one cannot be mixed.
    drop_last=True,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='train',
        pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=128,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='val',
        pipeline=val_pipeline),
)
# Top-1/5 of the student, and its agreement with the teacher(s): what
# function matching optimises (big_vision's distance evaluator).
val_evaluator = [
    dict(type='Accuracy', topk=(1, 5)),
    dict(type='TeacherAgreement'),
]
test_dataloader = val_dataloader
test_evaluator = val_evaluator
