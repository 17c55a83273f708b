# scikit-learn's digits as an image folder (projects/funmatch_paper/digits.py;
# written by `python tools/prepare_digits.py data/digits`): 32 px RGB PNG
# files, seen by the models at 16 px (the source digits are 8 x 8) to keep
# the demo within minutes on two CPU cores.
dataset_type = 'CustomDataset'
data_root = 'data/digits'
img_size = 16
num_classes = 10

train_pipeline = [
    dict(type='LoadImageFromFile'),
    # Digits are not mirror-symmetric: no flips anywhere in the demo.
    dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.35, 1.),
         backend='cv2'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=img_size, backend='cv2', interpolation='bilinear'),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=64,
    num_workers=2,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    drop_last=True,
    dataset=dict(
        type=dataset_type, data_root=data_root, data_prefix='train',
        with_label=True, pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=100,
    num_workers=2,
    persistent_workers=True,
    pin_memory=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type=dataset_type, data_root=data_root, data_prefix='val',
        with_label=True, pipeline=test_pipeline),
)
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
