# BYOT self-distillation (mmfunmatch's BYOTClassifier) on the demo student's
# network, the width-8 ResNet-18 (CIFAR stem): auxiliary bottleneck +
# classifier heads after stages 1-3, each trained on the labels (weight 0.7),
# the deepest head's distribution at tau 3 (KL, weight 0.3) and its pooled
# features (L2, weight 0.03), MMRazor's BYOT settings. The same 200 labelled
# images, crops, optimizer and steps as ../demo/digits_label_student.py (the
# same network from labels alone). Validation reports the deepest head
# (accuracy/top1) and each auxiliary head (aux/head1_top1 ...); the
# auxiliary heads are not exported (tools/export_student.py).
_base_ = ['../demo/digits_label_student.py']

model = dict(
    _delete_=True,
    type='BYOTClassifier',
    student={{_base_.student_model}},
    tau=3.0,
    alpha=0.3,
    feature_weight=0.03,
    probe_size={{_base_.img_size}},
    data_preprocessor=dict(
        type='FunMatchDataPreprocessor',
        mean={{_base_.bit_mean}}, std={{_base_.bit_std}},
        batch_augments=None, num_classes=10),
)
# No teacher: the val view is the student's only.
val_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ConsistentView', mode='eval',
         student_size={{_base_.img_size}}, crop_frac=1.0),
    dict(type='PackFunMatchInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=val_pipeline))
test_dataloader = val_dataloader
val_evaluator = [
    dict(type='Accuracy', topk=(1, )),
    dict(type='AuxHeadAccuracy'),
]
test_evaluator = val_evaluator
