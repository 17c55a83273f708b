# The paper's distillation pair: a frozen BiT-M-R152x2 teacher ('bit', 224
# px, ImageNet-1k classes) -> a BiT-R50x1 student from scratch (zero head),
# KL at T = 1 on consistent views with one shared uniform mixup. A derived
# config changes the teacher's file, size or class count by name
# (model.teachers.bit) and the student's class count (model.student).
_base_ = ['./bit_r152x2_teacher.py', './bit_r50x1_student.py']

model = dict(
    _delete_=True,
    type='FunMatchDistiller',
    student={{_base_.model}},
    # Named teachers (a dict): a derived config changes or adds one by name.
    teachers=dict(bit={{_base_.bit_r152x2_teacher}}),
    distill_loss=dict(type='KLDivergenceT', tau=1.0),
    teacher_combine='mean_logits',
    data_preprocessor=dict(
        type='FunMatchDataPreprocessor',
        mean={{_base_.bit_student_mean}},
        std={{_base_.bit_student_std}},
        batch_augments=dict(type='UniformMixup')),
)
