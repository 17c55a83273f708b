# Out-of-domain function matching (paper section 3.8): the pets teacher and
# student of r50_bit152x2_pets_128px_30k_ep.py, but the distillation images
# are Food-101's, without labels. Evaluation stays on the pets test split.
# The number of steps is the in-domain run's (215,625 at batch 512).
# Paper: pets from food images reaches about 30 % top-1; related images
# (ImageNet for pets or sun397) can match in-domain data with longer
# schedules: point data_root/data_prefix at any image folder to try.
#
# Data: every image file under data_root/data_prefix (sub-folders included);
# `with_label=False`, so folder names are ignored and no label is read.
_base_ = ['./r50_bit152x2_pets_128px_30k_ep.py']

train_dataloader = dict(dataset=dict(
    _delete_=True,
    type='CustomDataset',
    data_root='data/food-101',
    data_prefix='images',
    with_label=False,
    pipeline={{_base_.train_pipeline}}))
