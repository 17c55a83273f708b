# MMRazor's own BYOT config (SelfDistill + BYOTDistiller + BYOTConnector,
# ResNet-18 of width 64, three auxiliary heads), run as an MMRazor user would
# run it, adapted to the digits image folder: only the data and the class
# count differ from the file it inherits. The compatibility layer lets it
# load: its `mmcls::` bases are read from mmpretrain (mmcls 1.x was renamed
# mmpretrain) and `mmcls.X` types resolve to mmpretrain's
# (mmfunmatch/compat.py, _mmcls_scope_alias).
#     python tools/train.py \
#         configs/funmatch/byot/mmrazor_byot_resnet18_digits.py
# Our BYOT on the demo's width-8 network: byot_resnet18_w8_digits.py.
_base_ = ['mmrazor::distill/mmcls/byot/byot_resnet18_8xb16_cifar100.py']
custom_imports = dict(imports=['mmfunmatch'], allow_failed_imports=False)

num_classes = 10
model = dict(
    # mmpretrain's ImageClassifier names its default preprocessor without a
    # scope ('ClsDataPreprocessor'; mmcls 1.x wrote 'mmcls.'), and under this
    # model's mmrazor scope that name is not found: name it in full. The
    # algorithm's own preprocessor normalises; this one only stacks.
    architecture=dict(
        data_preprocessor=dict(type='mmpretrain.ClsDataPreprocessor'),
        head=dict(num_classes=num_classes)),
    distiller=dict(connectors=dict(
        loss_s1_sfeat=dict(num_classes=num_classes),
        loss_s2_sfeat=dict(num_classes=num_classes),
        loss_s3_sfeat=dict(num_classes=num_classes))))

# The digits folder (projects/funmatch_paper/digits.py) at its 32 px, the
# size of CIFAR images; CIFAR's pad-and-crop training augmentation.
data_root = 'data/digits'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomCrop', crop_size=32, padding=4),
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
train_dataloader = dict(
    dataset=dict(_delete_=True, type='CustomDataset', data_root=data_root,
                 data_prefix='train', pipeline=train_pipeline))
# MMRazor's SelfDistillValLoop builds the val set under the mmrazor scope,
# which holds no data sets or metrics: name the scope that does.
val_dataloader = dict(
    dataset=dict(_delete_=True, _scope_='mmpretrain', type='CustomDataset',
                 data_root=data_root, data_prefix='val',
                 pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='mmpretrain.Accuracy', topk=(1, ))
test_evaluator = val_evaluator
