# Paper ablation (figure 3, docs/method.md) on the digits demo, 'fix/ic_ens':
# the teacher's target for an image is its mean prediction over 1024
# inception crops, computed once before training, while the student trains on
# random crops; no mixup. A fixed "ensemble" target for a changing view:
# inconsistent on purpose, which StoredTeacherDataset makes the config say
# (baseline='fix/ic_ens'; anywhere else stored targets are refused).
# The student's side is the 'fix/cc' row (digits_fix_cc.py); the teacher's
# view is not rendered, its target comes from the file.
#
#   python tools/precompute_teacher.py \
#       configs/funmatch/ablation/digits_fix_ic_ens.py \
#       work_dirs/demo/digits_teacher_ic_ens.npz
#   python tools/train.py configs/funmatch/ablation/digits_fix_ic_ens.py
_base_ = ['./digits_fix_cc.py']

teacher_file = 'work_dirs/demo/digits_teacher_ic_ens.npz'

# Read by tools/precompute_teacher.py: the teacher's crops are the demo's
# inception crops (35-100 % of the area; no flip, digits are not
# mirror-symmetric), 1024 per image as in the paper.
precompute_teacher = dict(
    num_crops=1024, scale=(0.35, 1.0), ratio=(3. / 4., 4. / 3.),
    flip_prob=0.0, seed=0)

_base_.train_pipeline[1].teacher_sizes = []
_base_.train_pipeline[2].algorithm_keys = ['teacher_logits']
_base_.train_dataloader.dataset.update(
    with_label=True, pipeline=_base_.train_pipeline)
train_dataloader = dict(dataset=dict(
    _delete_=True,
    type='StoredTeacherDataset',
    teacher_file=teacher_file,
    baseline='fix/ic_ens',
    dataset=_base_.train_dataloader.dataset))
# Targets from the file (StoredTargetDistiller); the teacher still runs on
# the val views for the agreement numbers.
model = dict(type='StoredTargetDistiller')
